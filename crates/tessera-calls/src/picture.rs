//! Camera pictures to I420 (`docs/calls.md` §Camera). Cameras deliver YUYV, NV12, grey, RGB
//! or Motion-JPEG; the encoder takes I420. Every conversion checks the buffer against the
//! size it claims and crops odd dimensions to even ones: a camera driver is outside input.

use crate::media::VideoFrame;

/// The largest picture a camera may hand us (either side), in pixels.
pub const MAX_SIDE: u32 = 4096;

/// What a camera buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 4:2:2, `Y0 U Y1 V` per two pixels.
    Yuyv,
    /// Y plane, then interleaved `U V` at half resolution.
    Nv12,
    /// One byte of luma per pixel.
    Gray,
    /// Three bytes per pixel, red first.
    Rgb,
    /// Three bytes per pixel, blue first.
    Bgr,
    /// One JPEG picture (what USB cameras send at higher resolutions).
    Mjpeg,
}

/// Why a camera buffer could not be turned into a picture.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PictureError {
    /// Width or height is below 2 or above [`MAX_SIDE`].
    #[error("a {width}×{height} picture is outside 2…{MAX_SIDE} pixels a side")]
    Size {
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
    },
    /// The buffer is shorter than the format and size need.
    #[error("the camera buffer holds {got} bytes; {needed} are needed")]
    Short {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The JPEG did not decode.
    #[error("the camera's JPEG did not decode: {0}")]
    Jpeg(String),
}

/// Converts one camera buffer of `width`×`height` pixels to I420 (odd sides cropped by one).
pub fn to_i420(
    format: PixelFormat,
    width: u32,
    height: u32,
    data: &[u8],
) -> Result<VideoFrame, PictureError> {
    if format == PixelFormat::Mjpeg {
        return jpeg(data);
    }
    check_size(width, height)?;
    let (w, h) = (width as usize, height as usize);
    let needed = match format {
        PixelFormat::Yuyv => w * h * 2,
        PixelFormat::Nv12 => w * h + 2 * w.div_ceil(2) * h.div_ceil(2),
        PixelFormat::Gray => w * h,
        PixelFormat::Rgb | PixelFormat::Bgr | PixelFormat::Mjpeg => w * h * 3,
    };
    if data.len() < needed {
        return Err(PictureError::Short {
            needed,
            got: data.len(),
        });
    }
    let (ew, eh) = (w & !1, h & !1);
    let mut out = Planes::new(ew, eh);
    match format {
        PixelFormat::Yuyv => {
            let rows = data.chunks_exact(w * 2);
            for (dst, row) in out.y.chunks_exact_mut(ew).zip(rows) {
                for (d, px) in dst.iter_mut().zip(row.chunks_exact(2)) {
                    *d = px[0];
                }
            }
            let pairs = data.chunks_exact(w * 4);
            let chroma = out
                .u
                .chunks_exact_mut(ew / 2)
                .zip(out.v.chunks_exact_mut(ew / 2));
            for ((u, v), rows) in chroma.zip(pairs) {
                let (a, b) = rows.split_at(w * 2);
                let macro_pixels = a.chunks_exact(4).zip(b.chunks_exact(4));
                for ((u, v), (a, b)) in u.iter_mut().zip(v.iter_mut()).zip(macro_pixels) {
                    *u = avg2(a[1], b[1]);
                    *v = avg2(a[3], b[3]);
                }
            }
        }
        PixelFormat::Nv12 => {
            for y in 0..eh {
                out.y[y * ew..(y + 1) * ew].copy_from_slice(&data[y * w..y * w + ew]);
            }
            let uv = &data[w * h..];
            let stride = 2 * w.div_ceil(2);
            for cy in 0..eh / 2 {
                for cx in 0..ew / 2 {
                    out.u[cy * ew / 2 + cx] = uv[cy * stride + 2 * cx];
                    out.v[cy * ew / 2 + cx] = uv[cy * stride + 2 * cx + 1];
                }
            }
        }
        PixelFormat::Gray => {
            for y in 0..eh {
                for x in 0..ew {
                    // Full-range grey to video-range luma.
                    out.y[y * ew + x] = (16 + u32::from(data[y * w + x]) * 219 / 255) as u8;
                }
            }
            out.u.fill(128);
            out.v.fill(128);
        }
        PixelFormat::Rgb | PixelFormat::Bgr | PixelFormat::Mjpeg => {
            rgb(&mut out, data, w, format == PixelFormat::Bgr);
        }
    }
    Ok(out.into_frame())
}

/// One way a camera can deliver pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pictures a second.
    pub fps: u32,
    /// What each buffer holds.
    pub format: PixelFormat,
}

/// The camera mode closest to `want`: at least 15 pictures a second if any mode has them, then
/// the nearest size, then the nearest rate, then uncompressed over Motion-JPEG (no decoding).
pub fn choose_mode(modes: &[Mode], want: Mode) -> Option<Mode> {
    modes
        .iter()
        .filter(|m| check_size(m.width, m.height).is_ok() && m.fps > 0)
        .min_by_key(|m| {
            (
                m.fps < 15,
                m.width.abs_diff(want.width) + m.height.abs_diff(want.height),
                m.fps.abs_diff(want.fps),
                match m.format {
                    PixelFormat::Yuyv | PixelFormat::Nv12 => 0,
                    PixelFormat::Mjpeg => 1,
                    PixelFormat::Rgb | PixelFormat::Bgr => 2,
                    PixelFormat::Gray => 3,
                },
            )
        })
        .copied()
}

fn check_size(width: u32, height: u32) -> Result<(), PictureError> {
    if !(2..=MAX_SIDE).contains(&width) || !(2..=MAX_SIDE).contains(&height) {
        return Err(PictureError::Size { width, height });
    }
    Ok(())
}

fn jpeg(data: &[u8]) -> Result<VideoFrame, PictureError> {
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(data, options);
    let pixels = decoder
        .decode()
        .map_err(|e| PictureError::Jpeg(e.to_string()))?;
    let info = decoder
        .info()
        .ok_or_else(|| PictureError::Jpeg("no picture header".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    to_i420(PixelFormat::Rgb, width, height, &pixels)
}

/// BT.601 video range, chroma averaged over each 2×2 block.
fn rgb(out: &mut Planes, data: &[u8], w: usize, bgr: bool) {
    let (ew, eh) = (out.width, out.height);
    let pixel = |x: usize, y: usize| -> (i32, i32, i32) {
        let i = (y * w + x) * 3;
        let (a, g, b) = (
            i32::from(data[i]),
            i32::from(data[i + 1]),
            i32::from(data[i + 2]),
        );
        if bgr { (b, g, a) } else { (a, g, b) }
    };
    for y in 0..eh {
        for x in 0..ew {
            let (r, g, b) = pixel(x, y);
            out.y[y * ew + x] = clamp(16 + ((66 * r + 129 * g + 25 * b + 128) >> 8));
        }
    }
    for cy in 0..eh / 2 {
        for cx in 0..ew / 2 {
            let (mut r, mut g, mut b) = (0, 0, 0);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = pixel(2 * cx + dx, 2 * cy + dy);
                r += p.0;
                g += p.1;
                b += p.2;
            }
            let (r, g, b) = ((r + 2) / 4, (g + 2) / 4, (b + 2) / 4);
            out.u[cy * ew / 2 + cx] = clamp(128 + ((-38 * r - 74 * g + 112 * b + 128) >> 8));
            out.v[cy * ew / 2 + cx] = clamp(128 + ((112 * r - 94 * g - 18 * b + 128) >> 8));
        }
    }
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

fn avg2(a: u8, b: u8) -> u8 {
    u8::try_from((u16::from(a) + u16::from(b)).div_ceil(2)).unwrap_or(u8::MAX)
}

struct Planes {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl Planes {
    fn new(width: usize, height: usize) -> Self {
        let chroma = width / 2 * (height / 2);
        Self {
            width,
            height,
            y: vec![0; width * height],
            u: vec![0; chroma],
            v: vec![0; chroma],
        }
    }

    fn into_frame(self) -> VideoFrame {
        let mut data = self.y;
        data.extend_from_slice(&self.u);
        data.extend_from_slice(&self.v);
        VideoFrame {
            width: self.width as u32,
            height: self.height as u32,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Four quadrants: red, green / blue, white.
    fn quadrants(w: usize, h: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                out.extend_from_slice(match (x < w / 2, y < h / 2) {
                    (true, true) => &[255, 0, 0],
                    (false, true) => &[0, 255, 0],
                    (true, false) => &[0, 0, 255],
                    (false, false) => &[255, 255, 255],
                });
            }
        }
        out
    }

    fn yuv_at(f: &VideoFrame, x: usize, y: usize) -> (u8, u8, u8) {
        let w = f.width as usize;
        let h = f.height as usize;
        let c = (y / 2) * (w / 2) + x / 2;
        (
            f.data[y * w + x],
            f.data[w * h + c],
            f.data[w * h + w / 2 * (h / 2) + c],
        )
    }

    fn near(got: (u8, u8, u8), want: (u8, u8, u8), tolerance: i16) -> bool {
        let d = |a: u8, b: u8| (i16::from(a) - i16::from(b)).abs() <= tolerance;
        d(got.0, want.0) && d(got.1, want.1) && d(got.2, want.2)
    }

    // BT.601 video range: red, green, blue, white.
    const RED: (u8, u8, u8) = (82, 90, 240);
    const GREEN: (u8, u8, u8) = (145, 54, 34);
    const BLUE: (u8, u8, u8) = (41, 240, 110);
    const WHITE: (u8, u8, u8) = (235, 128, 128);

    fn check_quadrants(f: &VideoFrame, tolerance: i16) {
        let (w, h) = (f.width as usize, f.height as usize);
        for (x, y, want) in [
            (w / 4, h / 4, RED),
            (3 * w / 4, h / 4, GREEN),
            (w / 4, 3 * h / 4, BLUE),
            (3 * w / 4, 3 * h / 4, WHITE),
        ] {
            let got = yuv_at(f, x, y);
            assert!(
                near(got, want, tolerance),
                "at {x},{y}: {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn rgb_and_bgr_give_the_bt601_colours() {
        let rgb = quadrants(64, 48);
        let f = to_i420(PixelFormat::Rgb, 64, 48, &rgb).unwrap();
        assert_eq!((f.width, f.height, f.data.len()), (64, 48, 64 * 48 * 3 / 2));
        check_quadrants(&f, 1);
        let bgr: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
        assert_eq!(to_i420(PixelFormat::Bgr, 64, 48, &bgr).unwrap(), f);
    }

    #[test]
    fn yuyv_nv12_and_grey_keep_their_samples() {
        // YUYV 4×2: Y = 10,20,30,40 / 50,60,70,80; U/V per pair, averaged over the two rows.
        let yuyv = [
            10, 100, 20, 200, 30, 110, 40, 210, //
            50, 102, 60, 202, 70, 112, 80, 212,
        ];
        let f = to_i420(PixelFormat::Yuyv, 4, 2, &yuyv).unwrap();
        assert_eq!(f.data, [10, 20, 30, 40, 50, 60, 70, 80, 101, 111, 201, 211]);

        let nv12 = [1, 2, 3, 4, 5, 6, 7, 8, 100, 200, 110, 210];
        let f = to_i420(PixelFormat::Nv12, 4, 2, &nv12).unwrap();
        assert_eq!(f.data, [1, 2, 3, 4, 5, 6, 7, 8, 100, 110, 200, 210]);

        let f = to_i420(PixelFormat::Gray, 2, 2, &[0, 255, 0, 255]).unwrap();
        assert_eq!(f.data, [16, 235, 16, 235, 128, 128]);
    }

    #[test]
    fn odd_sizes_are_cropped_and_short_or_absurd_buffers_refused() {
        let f = to_i420(PixelFormat::Rgb, 5, 3, &quadrants(5, 3)).unwrap();
        assert_eq!((f.width, f.height, f.data.len()), (4, 2, 12));
        assert_eq!(
            to_i420(PixelFormat::Yuyv, 640, 360, &[0; 100]),
            Err(PictureError::Short {
                needed: 640 * 360 * 2,
                got: 100
            })
        );
        assert!(matches!(
            to_i420(PixelFormat::Gray, 0, 10, &[]),
            Err(PictureError::Size { .. })
        ));
        assert!(matches!(
            to_i420(PixelFormat::Gray, MAX_SIDE + 1, 2, &[]),
            Err(PictureError::Size { .. })
        ));
    }

    #[test]
    fn the_mode_nearest_the_call_format_wins() {
        let m = |width, height, fps, format| Mode {
            width,
            height,
            fps,
            format,
        };
        let want = m(640, 360, 30, PixelFormat::Yuyv);
        let modes = [
            m(1920, 1080, 30, PixelFormat::Mjpeg),
            m(640, 360, 5, PixelFormat::Yuyv),
            m(640, 360, 30, PixelFormat::Mjpeg),
            m(640, 480, 30, PixelFormat::Yuyv),
            m(640, 360, 30, PixelFormat::Yuyv),
            m(640, 360, 15, PixelFormat::Yuyv),
        ];
        assert_eq!(choose_mode(&modes, want), Some(modes[4]));
        assert_eq!(choose_mode(&modes[..4], want), Some(modes[2]));
        assert_eq!(choose_mode(&modes[..2], want), Some(modes[0]));
        assert_eq!(choose_mode(&modes[1..2], want), Some(modes[1]));
        assert_eq!(choose_mode(&[m(0, 0, 30, PixelFormat::Yuyv)], want), None);
        assert_eq!(choose_mode(&[], want), None);
    }

    #[test]
    fn motion_jpeg_decodes_to_the_same_colours_and_damage_is_an_error() {
        let (w, h) = (96u16, 64u16);
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 95)
            .encode(&quadrants(96, 64), w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let f = to_i420(PixelFormat::Mjpeg, 0, 0, &jpeg).unwrap();
        assert_eq!((f.width, f.height), (96, 64));
        check_quadrants(&f, 6);

        assert!(matches!(
            to_i420(PixelFormat::Mjpeg, 96, 64, &jpeg[..jpeg.len() / 3]),
            Err(PictureError::Jpeg(_))
        ));
        assert!(matches!(
            to_i420(PixelFormat::Mjpeg, 96, 64, b"not a jpeg"),
            Err(PictureError::Jpeg(_))
        ));
    }
}
