//! The app's call devices (`docs/calls.md` §Media): microphone and speaker through cpal, the
//! camera (`crate::camera`), the peer's video and the local preview to the page, and the
//! ringtone. A missing or failing device is reported, not
//! fatal: the call goes on with silence in its place.
//!
//! cpal streams are not `Send` on every platform, so each lives on its own thread and talks
//! to the call through a short buffer (at most 200 ms, so a stalled device cannot add delay).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use tessera_calls::codec::VideoFormat;
use tessera_calls::media::{
    AudioSink, AudioSource, Discard, SAMPLE_RATE, Silence, Tone, VideoFrame, VideoSink, VideoSource,
};
use tessera_calls::session::Media;
use tessera_core::phone::MediaProvider;

use crate::app::App;
use crate::camera::{Camera, CameraChoice, PatternCamera, Preview};

/// The most audio held between a device and the call.
const MAX_BUFFERED: usize = SAMPLE_RATE as usize / 5;

type Shared = Arc<Mutex<VecDeque<i16>>>;

fn lock(b: &Shared) -> std::sync::MutexGuard<'_, VecDeque<i16>> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps a cpal stream alive on its own thread until dropped.
struct StreamThread {
    stop: Arc<AtomicBool>,
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Builds a stream on a new thread and keeps it playing; the error if it could not start.
fn run_stream(
    build: impl FnOnce() -> Result<cpal::Stream, String> + Send + 'static,
) -> Result<StreamThread, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("tessera-audio".into())
        .spawn(move || {
            let stream = match build().and_then(|s| s.play().map(|()| s).map_err(|e| e.to_string()))
            {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(stream);
        })
        .map_err(|e| e.to_string())?;
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => Ok(StreamThread { stop }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the audio device did not start".into()),
    }
}

/// Linear resampling between a device's rate and 48 kHz.
struct Resampler {
    step: f64,
    pos: f64,
    prev: f32,
}

impl Resampler {
    fn new(from: u32, to: u32) -> Self {
        Self {
            step: f64::from(from) / f64::from(to.max(1)),
            pos: 0.0,
            prev: 0.0,
        }
    }

    /// Feeds mono samples; calls `out` with each resampled one.
    fn feed(&mut self, input: impl Iterator<Item = f32>, mut out: impl FnMut(f32)) {
        for x in input {
            while self.pos <= 1.0 {
                out(self.prev + (x - self.prev) * self.pos as f32);
                self.pos += self.step;
            }
            self.pos -= 1.0;
            self.prev = x;
        }
    }
}

fn push_capped(buf: &Shared, samples: impl Iterator<Item = i16>) {
    let mut b = lock(buf);
    b.extend(samples);
    while b.len() > MAX_BUFFERED {
        b.pop_front();
    }
}

fn to_i16(x: f32) -> i16 {
    (x.clamp(-1.0, 1.0) * 32767.0) as i16
}

/// The default microphone.
pub struct Microphone {
    buf: Shared,
    _thread: StreamThread,
}

impl Microphone {
    /// Opens the system's default input.
    pub fn open() -> Result<Self, String> {
        let buf: Shared = Arc::default();
        let sink = buf.clone();
        let thread = run_stream(move || {
            let device = cpal::default_host()
                .default_input_device()
                .ok_or("no microphone")?;
            let config = device.default_input_config().map_err(|e| e.to_string())?;
            let format = config.sample_format();
            let config: cpal::StreamConfig = config.into();
            let channels = usize::from(config.channels.max(1));
            let mut resampler = Resampler::new(config.sample_rate.0, SAMPLE_RATE);
            let mut take = move |mono: &mut dyn Iterator<Item = f32>| {
                let mut out = Vec::new();
                resampler.feed(mono, |x| out.push(to_i16(x)));
                push_capped(&sink, out.into_iter());
            };
            let err = |e: cpal::StreamError| tracing::warn!(error = %e, "microphone");
            match format {
                cpal::SampleFormat::F32 => device.build_input_stream(
                    &config,
                    move |data: &[f32], _: &_| take(&mut data.iter().step_by(channels).copied()),
                    err,
                    None,
                ),
                cpal::SampleFormat::I16 => device.build_input_stream(
                    &config,
                    move |data: &[i16], _: &_| {
                        take(
                            &mut data
                                .iter()
                                .step_by(channels)
                                .map(|&s| f32::from(s) / 32768.0),
                        )
                    },
                    err,
                    None,
                ),
                other => return Err(format!("microphone sample format {other} is not supported")),
            }
            .map_err(|e| e.to_string())
        })?;
        Ok(Self {
            buf,
            _thread: thread,
        })
    }
}

impl AudioSource for Microphone {
    fn read(&mut self, out: &mut [i16]) -> usize {
        let mut b = lock(&self.buf);
        for s in out.iter_mut() {
            *s = b.pop_front().unwrap_or(0);
        }
        out.len()
    }
}

/// The default speaker.
pub struct Speaker {
    buf: Shared,
    _thread: StreamThread,
}

impl Speaker {
    /// Opens the system's default output.
    pub fn open() -> Result<Self, String> {
        let buf: Shared = Arc::default();
        let source = buf.clone();
        let thread = run_stream(move || {
            let device = cpal::default_host()
                .default_output_device()
                .ok_or("no speaker")?;
            let config = device.default_output_config().map_err(|e| e.to_string())?;
            let format = config.sample_format();
            let config: cpal::StreamConfig = config.into();
            let channels = usize::from(config.channels.max(1));
            let mut resampler = Resampler::new(SAMPLE_RATE, config.sample_rate.0);
            let mut pending: VecDeque<f32> = VecDeque::new();
            let mut next = move |frames: usize| -> Vec<f32> {
                while pending.len() < frames {
                    let chunk: Vec<f32> = {
                        let mut b = lock(&source);
                        let n = b.len().min(480);
                        if n == 0 {
                            break;
                        }
                        b.drain(..n).map(|s| f32::from(s) / 32768.0).collect()
                    };
                    resampler.feed(chunk.into_iter(), |x| pending.push_back(x));
                }
                (0..frames)
                    .map(|_| pending.pop_front().unwrap_or(0.0))
                    .collect()
            };
            let err = |e: cpal::StreamError| tracing::warn!(error = %e, "speaker");
            match format {
                cpal::SampleFormat::F32 => device.build_output_stream(
                    &config,
                    move |data: &mut [f32], _: &_| {
                        let mono = next(data.len() / channels);
                        for (frame, x) in data.chunks_mut(channels).zip(mono) {
                            frame.fill(x);
                        }
                    },
                    err,
                    None,
                ),
                cpal::SampleFormat::I16 => device.build_output_stream(
                    &config,
                    move |data: &mut [i16], _: &_| {
                        let mono = next(data.len() / channels);
                        for (frame, x) in data.chunks_mut(channels).zip(mono) {
                            frame.fill(to_i16(x));
                        }
                    },
                    err,
                    None,
                ),
                other => return Err(format!("speaker sample format {other} is not supported")),
            }
            .map_err(|e| e.to_string())
        })?;
        Ok(Self {
            buf,
            _thread: thread,
        })
    }
}

impl AudioSink for Speaker {
    fn write(&mut self, samples: &[i16]) {
        push_capped(&self.buf, samples.iter().copied());
    }
}

/// What the devices could and could not do for the last call.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceReport {
    /// Why there is no microphone, if there is none.
    pub microphone: Option<String>,
    /// Why there is no speaker, if there is none.
    pub speaker: Option<String>,
    /// Why there is no camera, if there is none.
    pub camera: Option<String>,
}

/// The peer's pictures, to the page: RGBA, at most 640 pixels wide and 15 a second.
struct RemoteVideo {
    app: Weak<App>,
    last: Option<Instant>,
}

impl VideoSink for RemoteVideo {
    fn show(&mut self, frame: &VideoFrame) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_millis(66))
        {
            return;
        }
        self.last = Some(Instant::now());
        if let Some(app) = self.app.upgrade() {
            app.send_video(VIDEO_REMOTE, &rgba(frame, 640));
        }
    }
}

/// `width u16 LE, height u16 LE, RGBA…`: the picture scaled down by a whole factor until it
/// is at most `max_width` wide.
pub fn rgba(frame: &VideoFrame, max_width: u32) -> Vec<u8> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let step = (frame.width.div_ceil(max_width.max(1))).max(1) as usize;
    let (ow, oh) = (w / step, h / step);
    let mut out = Vec::with_capacity(4 + ow * oh * 4);
    out.extend_from_slice(&(ow as u16).to_le_bytes());
    out.extend_from_slice(&(oh as u16).to_le_bytes());
    let (y_plane, rest) = frame.data.split_at((w * h).min(frame.data.len()));
    let (u_plane, v_plane) = rest.split_at((w / 2 * h / 2).min(rest.len()));
    for oy in 0..oh {
        for ox in 0..ow {
            let (x, y) = (ox * step, oy * step);
            let yv = f32::from(y_plane.get(y * w + x).copied().unwrap_or(16)) - 16.0;
            let ci = (y / 2) * (w / 2) + x / 2;
            let u = f32::from(u_plane.get(ci).copied().unwrap_or(128)) - 128.0;
            let v = f32::from(v_plane.get(ci).copied().unwrap_or(128)) - 128.0;
            let c = 1.164 * yv;
            let px = |x: f32| x.clamp(0.0, 255.0) as u8;
            out.extend_from_slice(&[
                px(c + 1.596 * v),
                px(c - 0.392 * u - 0.813 * v),
                px(c + 2.017 * u),
                255,
            ]);
        }
    }
    out
}

/// [`App::send_video`] kinds.
const VIDEO_REMOTE: u8 = 0;
const VIDEO_PREVIEW: u8 = 1;

/// The app's devices for calls.
pub struct Devices {
    app: Weak<App>,
    report: Mutex<DeviceReport>,
    camera_on: Arc<AtomicBool>,
    camera_choice: CameraChoice,
}

impl Devices {
    /// Devices that send the peer's video to `app`'s page.
    pub fn new(app: &Arc<App>, camera_choice: CameraChoice) -> Arc<Self> {
        Arc::new(Self {
            app: Arc::downgrade(app),
            report: Mutex::default(),
            camera_on: Arc::new(AtomicBool::new(true)),
            camera_choice,
        })
    }

    /// Switches the camera of the current call (off closes the device).
    pub fn set_camera(&self, on: bool) {
        self.camera_on.store(on, Ordering::Relaxed);
    }

    fn camera(&self) -> Result<Box<dyn VideoSource>, String> {
        self.camera_on.store(true, Ordering::Relaxed);
        let app = self.app.clone();
        let preview: Preview = Box::new(move |frame| {
            if let Some(app) = app.upgrade() {
                match frame {
                    Some(f) => app.send_video(VIDEO_PREVIEW, &rgba(f, 320)),
                    None => app.send_video(VIDEO_PREVIEW, &[]),
                }
            }
        });
        let on = self.camera_on.clone();
        Ok(match self.camera_choice {
            CameraChoice::Device => Box::new(Camera::open(VideoFormat::CALL, on, preview)?),
            CameraChoice::TestPattern => {
                Box::new(PatternCamera::new(VideoFormat::CALL, on, preview))
            }
        })
    }

    /// What the last call could use.
    pub fn report(&self) -> DeviceReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl MediaProvider for Devices {
    fn media(&self, video: bool) -> Media {
        let mut report = DeviceReport::default();
        let audio_in: Box<dyn AudioSource> = match Microphone::open() {
            Ok(m) => Box::new(m),
            Err(e) => {
                tracing::info!(error = %e, "no microphone: sending silence");
                report.microphone = Some(e);
                Box::new(Silence)
            }
        };
        let audio_out: Box<dyn AudioSink> = match Speaker::open() {
            Ok(s) => Box::new(s),
            Err(e) => {
                tracing::info!(error = %e, "no speaker");
                report.speaker = Some(e);
                Box::new(Discard)
            }
        };
        let video_in: Option<Box<dyn VideoSource>> = if video {
            match self.camera() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::info!(error = %e, "no camera: sending no video");
                    report.camera = Some(e);
                    None
                }
            }
        } else {
            None
        };
        if let Ok(mut r) = self.report.lock() {
            *r = report;
        }
        Media {
            audio_in,
            audio_out,
            video_in,
            video_out: Some(Box::new(RemoteVideo {
                app: self.app.clone(),
                last: None,
            })),
        }
    }
}

/// Plays the ringtone (two tones, 1 s on, 2 s off) on the speaker until dropped.
pub struct Ringtone {
    stop: Arc<AtomicBool>,
}

impl Ringtone {
    /// Starts ringing; `None` when there is no speaker (the screen still shows the call).
    pub fn start() -> Option<Self> {
        let mut speaker = Speaker::open()
            .map_err(|e| tracing::info!(error = %e, "no speaker for the ringtone"))
            .ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let (mut a, mut b) = (Tone::new(440.0), Tone::new(480.0));
            let mut frame = [0i16; tessera_calls::media::FRAME_SAMPLES];
            let mut other = [0i16; tessera_calls::media::FRAME_SAMPLES];
            let mut n = 0u32;
            while !flag.load(Ordering::Relaxed) {
                if n % 150 < 50 {
                    a.read(&mut frame);
                    b.read(&mut other);
                    for (x, y) in frame.iter_mut().zip(other) {
                        *x = x.saturating_add(y) / 2;
                    }
                } else {
                    frame.fill(0);
                }
                speaker.write(&frame);
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Some(Self { stop })
    }
}

impl Drop for Ringtone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn resampling_keeps_the_tone() {
        // 44.1 kHz → 48 kHz: a 440 Hz tone stays 440 Hz.
        let mut r = Resampler::new(44_100, 48_000);
        let input = (0..44_100)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 44_100.0).sin() * 0.5);
        let mut out = Vec::new();
        r.feed(input, |x| out.push(to_i16(x)));
        assert!((out.len() as i64 - 48_000).abs() < 10, "{}", out.len());
        let f = tessera_calls::media::dominant_frequency(&out[..24_000]).unwrap();
        assert!((f - 440.0).abs() <= 2.0, "{f}");
    }

    #[test]
    fn pictures_reach_the_page_as_scaled_rgba() {
        let f = VideoFrame::filled(1280, 720, 235, 128, 128);
        let px = rgba(&f, 640);
        assert_eq!(&px[..4], &[128, 2, 104, 1]); // 640 × 360
        assert_eq!(px.len(), 4 + 640 * 360 * 4);
        assert!(
            px[4..8].iter().take(3).all(|&c| c > 250),
            "white stays white"
        );
        let small = rgba(&VideoFrame::filled(320, 180, 16, 128, 128), 640);
        assert_eq!(&small[..4], &[64, 1, 180, 0]);
        assert!(small[4..7].iter().all(|&c| c < 3), "black stays black");
    }
}
