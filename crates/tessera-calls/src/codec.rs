//! Opus and VP8 through the system's libopus and libvpx (`docs/calls.md` §Codecs): 48 kHz mono
//! PCM in 20 ms frames to Opus packets and back, I420 pictures to VP8 frames and back.

use std::num::NonZero;

use crate::media::{FRAME_SAMPLES, SAMPLE_RATE, VideoFrame};

/// A codec failed. Carries no media.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The encoder or decoder could not be set up.
    #[error("{codec} could not be set up: {detail}")]
    Setup {
        /// "opus" or "vp8".
        codec: &'static str,
        /// The library's words.
        detail: String,
    },
    /// A frame could not be encoded.
    #[error("{codec} could not encode a frame: {detail}")]
    Encode {
        /// "opus" or "vp8".
        codec: &'static str,
        /// The library's words.
        detail: String,
    },
    /// A received frame could not be decoded (a damaged or foreign bitstream).
    #[error("{codec} could not decode a frame")]
    Decode {
        /// "opus" or "vp8".
        codec: &'static str,
    },
    /// The picture does not match the encoder's size or is not I420.
    #[error("a {got_w}×{got_h} picture for a {want_w}×{want_h} encoder")]
    PictureSize {
        /// Picture width.
        got_w: u32,
        /// Picture height.
        got_h: u32,
        /// Encoder width.
        want_w: u32,
        /// Encoder height.
        want_h: u32,
    },
}

/// The largest Opus packet this side produces or accepts (RFC 6716 allows 1275 per frame).
pub const MAX_OPUS_PACKET: usize = 1275;

/// Opus encoder for 20 ms mono frames.
pub struct OpusEncoder {
    inner: opus::Encoder,
    out: Vec<u8>,
}

impl OpusEncoder {
    /// A VoIP encoder at `bitrate` bits per second, with in-band FEC for lossy paths.
    pub fn new(bitrate: i32) -> Result<Self, CodecError> {
        let setup = |e: opus::Error| CodecError::Setup {
            codec: "opus",
            detail: e.to_string(),
        };
        let mut inner =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)
                .map_err(setup)?;
        inner
            .set_bitrate(opus::Bitrate::Bits(bitrate))
            .map_err(setup)?;
        inner.set_inband_fec(true).map_err(setup)?;
        inner.set_packet_loss_perc(5).map_err(setup)?;
        Ok(Self {
            inner,
            out: vec![0; MAX_OPUS_PACKET],
        })
    }

    /// Encodes one 20 ms frame ([`FRAME_SAMPLES`] samples; a shorter one is padded with silence).
    pub fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], CodecError> {
        let mut frame = [0i16; FRAME_SAMPLES];
        let n = pcm.len().min(FRAME_SAMPLES);
        frame[..n].copy_from_slice(&pcm[..n]);
        let len = self
            .inner
            .encode(&frame, &mut self.out)
            .map_err(|e| CodecError::Encode {
                codec: "opus",
                detail: e.to_string(),
            })?;
        Ok(&self.out[..len])
    }
}

/// Opus decoder to 48 kHz mono.
pub struct OpusDecoder {
    inner: opus::Decoder,
    pcm: Vec<i16>,
}

impl OpusDecoder {
    /// A decoder.
    pub fn new() -> Result<Self, CodecError> {
        let inner = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).map_err(|e| {
            CodecError::Setup {
                codec: "opus",
                detail: e.to_string(),
            }
        })?;
        // Opus frames are at most 120 ms.
        Ok(Self {
            inner,
            pcm: vec![0; FRAME_SAMPLES * 6],
        })
    }

    /// Decodes one packet to PCM.
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[i16], CodecError> {
        if packet.len() > MAX_OPUS_PACKET {
            return Err(CodecError::Decode { codec: "opus" });
        }
        let n = self
            .inner
            .decode(packet, &mut self.pcm, false)
            .map_err(|_| CodecError::Decode { codec: "opus" })?;
        Ok(&self.pcm[..n])
    }

    /// Conceals one lost 20 ms frame.
    pub fn conceal(&mut self) -> Result<&[i16], CodecError> {
        let n = self
            .inner
            .decode(&[], &mut self.pcm[..FRAME_SAMPLES], false)
            .map_err(|_| CodecError::Decode { codec: "opus" })?;
        Ok(&self.pcm[..n])
    }
}

/// Video settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoFormat {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target bitrate, kbit/s.
    pub kbps: u32,
}

impl VideoFormat {
    /// 640×360 at 30 fps, 800 kbit/s: what a call starts with.
    pub const CALL: Self = Self {
        width: 640,
        height: 360,
        fps: 30,
        kbps: 800,
    };
    /// 1280×720 at 30 fps, 2000 kbit/s.
    pub const HD: Self = Self {
        width: 1280,
        height: 720,
        fps: 30,
        kbps: 2000,
    };
}

/// VP8 encoder for I420 pictures, tuned for real time (no look-ahead, error resilient).
pub struct Vp8Encoder {
    inner: vpx_rs::Encoder<u8>,
    format: VideoFormat,
    pts: i64,
    force_key: bool,
}

fn vpx_setup(e: vpx_rs::Error) -> CodecError {
    CodecError::Setup {
        codec: "vp8",
        detail: e.to_string(),
    }
}

impl Vp8Encoder {
    /// An encoder for `format`.
    pub fn new(format: VideoFormat) -> Result<Self, CodecError> {
        let fps = NonZero::new(format.fps.max(1)).unwrap_or(NonZero::<u32>::MIN);
        let mut config = vpx_rs::EncoderConfig::<u8>::new(
            vpx_rs::enc::CodecId::VP8,
            format.width,
            format.height,
            vpx_rs::Timebase {
                num: NonZero::<u32>::MIN,
                den: fps,
            },
            vpx_rs::RateControl::ConstantBitRate(format.kbps),
        )
        .map_err(vpx_setup)?;
        config.lag_in_frames = 0;
        config.threads = 1;
        config.error_resilient = vpx_rs::enc::ErrorResilient::DEFAULT;
        // A key frame at least every 3 s, so a receiver that lost one recovers.
        config.kf_mode = vpx_rs::enc::KeyFrameMode::Auto {
            min_dist: 0,
            max_dist: format.fps * 3,
        };
        let inner = vpx_rs::Encoder::new(config).map_err(vpx_setup)?;
        Ok(Self {
            inner,
            format,
            pts: 0,
            force_key: true,
        })
    }

    /// The format this encoder was made for.
    pub fn format(&self) -> VideoFormat {
        self.format
    }

    /// Asks for a key frame next (a receiver joined or lost frames).
    pub fn request_key_frame(&mut self) {
        self.force_key = true;
    }

    /// Encodes one picture; returns the compressed frames it produced (usually one).
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<Vec<Vec<u8>>, CodecError> {
        if frame.width != self.format.width
            || frame.height != self.format.height
            || frame.data.len() != (frame.width * frame.height * 3 / 2) as usize
        {
            return Err(CodecError::PictureSize {
                got_w: frame.width,
                got_h: frame.height,
                want_w: self.format.width,
                want_h: self.format.height,
            });
        }
        let image = vpx_rs::YUVImageData::<u8>::from_raw_data(
            vpx_rs::ImageFormat::I420,
            frame.width as usize,
            frame.height as usize,
            &frame.data,
        )
        .map_err(|e| CodecError::Encode {
            codec: "vp8",
            detail: e.to_string(),
        })?;
        let flags = if std::mem::take(&mut self.force_key) {
            vpx_rs::EncoderFrameFlags::FORCE_KF
        } else {
            vpx_rs::EncoderFrameFlags::empty()
        };
        let pts = self.pts;
        self.pts += 1;
        let packets = self
            .inner
            .encode(pts, 1, image, vpx_rs::EncodingDeadline::Realtime, flags)
            .map_err(|e| CodecError::Encode {
                codec: "vp8",
                detail: e.to_string(),
            })?;
        Ok(packets
            .filter_map(|p| match p {
                vpx_rs::Packet::CompressedFrame(f) => Some(f.data),
                _ => None,
            })
            .collect())
    }
}

/// VP8 decoder to packed I420 pictures.
pub struct Vp8Decoder {
    inner: vpx_rs::Decoder,
}

impl Vp8Decoder {
    /// A decoder (the size comes from the bitstream).
    pub fn new() -> Result<Self, CodecError> {
        let config = vpx_rs::DecoderConfig::new(vpx_rs::dec::CodecId::VP8, 0, 0);
        Ok(Self {
            inner: vpx_rs::Decoder::new(config).map_err(vpx_setup)?,
        })
    }

    /// Decodes one compressed frame; returns the pictures it produced (usually one).
    pub fn decode(&mut self, data: &[u8]) -> Result<Vec<VideoFrame>, CodecError> {
        let images = self
            .inner
            .decode(data)
            .map_err(|_| CodecError::Decode { codec: "vp8" })?;
        let mut out = Vec::new();
        for image in images {
            let (w, h) = (image.width() as usize, image.height() as usize);
            let vpx_rs::dec::DecodedImageData::Data8b(yuv) = image.data() else {
                return Err(CodecError::Decode { codec: "vp8" });
            };
            if yuv.format() != vpx_rs::ImageFormat::I420 || w % 2 != 0 || h % 2 != 0 {
                return Err(CodecError::Decode { codec: "vp8" });
            }
            let planes = yuv.planes();
            let mut data = Vec::with_capacity(w * h * 3 / 2);
            copy_plane(&mut data, planes.y, planes.y_stride(), w, h)?;
            match planes.uv {
                vpx_rs::image::UVImagePlanes::Separate(uv) => {
                    copy_plane(&mut data, uv.u, uv.u_stride(), w / 2, h / 2)?;
                    copy_plane(&mut data, uv.v, uv.v_stride(), w / 2, h / 2)?;
                }
                _ => return Err(CodecError::Decode { codec: "vp8" }),
            }
            out.push(VideoFrame {
                width: w as u32,
                height: h as u32,
                data,
            });
        }
        Ok(out)
    }
}

fn copy_plane(
    out: &mut Vec<u8>,
    plane: &[u8],
    stride: usize,
    w: usize,
    h: usize,
) -> Result<(), CodecError> {
    for row in 0..h {
        let start = row * stride;
        let line = plane
            .get(start..start + w)
            .ok_or(CodecError::Decode { codec: "vp8" })?;
        out.extend_from_slice(line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::media::VideoSource;
    use crate::media::{AudioSource, TestPattern, Tone, dominant_frequency, find_bar};

    #[test]
    fn a_tone_survives_opus() {
        let mut tone = Tone::new(440.0);
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut heard = Vec::new();
        let mut pcm = [0i16; FRAME_SAMPLES];
        for _ in 0..50 {
            tone.read(&mut pcm);
            let packet = enc.encode(&pcm).unwrap().to_vec();
            assert!(packet.len() < 400, "{} bytes", packet.len());
            heard.extend_from_slice(dec.decode(&packet).unwrap());
        }
        let f = dominant_frequency(&heard[heard.len() / 2..]).unwrap();
        assert!((f - 440.0).abs() < 3.0, "{f}");
        assert!(dec.decode(&[0xff; 2000]).is_err());
        assert_eq!(dec.conceal().unwrap().len(), FRAME_SAMPLES);
    }

    #[test]
    fn the_test_pattern_survives_vp8() {
        let format = VideoFormat {
            width: 320,
            height: 180,
            fps: 30,
            kbps: 400,
        };
        let mut pattern = TestPattern::new(format.width, format.height);
        let mut enc = Vp8Encoder::new(format).unwrap();
        let mut dec = Vp8Decoder::new().unwrap();
        let mut seen = Vec::new();
        for n in 0..30 {
            let frame = pattern.next_frame().unwrap();
            for data in enc.encode(&frame).unwrap() {
                for picture in dec.decode(&data).unwrap() {
                    assert_eq!((picture.width, picture.height), (320, 180));
                    seen.push((n, find_bar(&picture)));
                }
            }
        }
        assert!(seen.len() >= 28, "{} pictures", seen.len());
        let mut pattern = TestPattern::new(format.width, format.height);
        let mut hits = 0;
        for (n, bar) in &seen {
            let want = pattern.bar_x(*n);
            if let Some(x) = bar
                && x.abs_diff(want) <= 2
            {
                hits += 1;
            }
        }
        assert!(
            hits >= seen.len() - 2,
            "{hits} of {} at the right place",
            seen.len()
        );
        let wrong = VideoFrame::filled(64, 64, 0, 128, 128);
        assert!(matches!(
            enc.encode(&wrong),
            Err(CodecError::PictureSize { .. })
        ));
        assert!(dec.decode(&[0x55; 100]).is_err());
        pattern.next_frame();
    }
}
