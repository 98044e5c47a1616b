//! The camera for video calls (`docs/calls.md` §Camera): nokhwa (V4L2, Media Foundation,
//! AVFoundation) on a thread of its own, pictures converted to I420 by
//! `tessera_calls::picture`. The call's encoder takes the newest picture at its own pace; the
//! page gets a small preview. Turning the camera off closes the device (its light goes out).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nokhwa::utils::{ApiBackend, FrameFormat, RequestedFormat, RequestedFormatType};
use tessera_calls::codec::VideoFormat;
use tessera_calls::media::{TestPattern, VideoFrame, VideoSource};
use tessera_calls::picture::{Mode, PixelFormat, choose_mode, to_i420};

/// How long opening a camera may take before the call goes on without it.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Consecutive capture errors after which the camera counts as gone.
const MAX_FAILURES: u32 = 30;
/// At most 15 preview pictures a second.
const PREVIEW_PERIOD: Duration = Duration::from_millis(66);

/// What video calls film.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CameraChoice {
    /// The first camera the system has.
    #[default]
    Device,
    /// A moving test pattern, for demonstrations and tests on machines without a camera.
    TestPattern,
}

/// Where preview pictures go (the page), and that the preview stopped (`None`).
pub type Preview = Box<dyn FnMut(Option<&VideoFrame>) + Send>;

/// A camera as a call's video source. Dropping it closes the device.
pub struct Camera {
    latest: Arc<Mutex<Option<VideoFrame>>>,
    stop: Arc<AtomicBool>,
    blank: VideoFrame,
}

impl Camera {
    /// Opens the first camera in the mode nearest `want`. `on` switches capture (off: the
    /// device is closed and the call sends black). Errors are sentences for the call screen.
    pub fn open(want: VideoFormat, on: Arc<AtomicBool>, preview: Preview) -> Result<Self, String> {
        let latest = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (opened_tx, opened_rx) = sync_channel(1);
        let (slot, flag) = (latest.clone(), stop.clone());
        std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || match open_device(want) {
                Ok(device) => {
                    let _ = opened_tx.send(Ok(()));
                    capture(device, &slot, &flag, &on, preview);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .map_err(|e| format!("the camera thread did not start: {e}"))?;
        match opened_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(())) => Ok(Self {
                latest,
                stop,
                blank: VideoFrame::filled(want.width, want.height, 16, 128, 128),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                Err("the camera did not answer".into())
            }
        }
    }
}

impl VideoSource for Camera {
    fn next_frame(&mut self) -> Option<VideoFrame> {
        let latest = self.latest.lock().ok().and_then(|l| l.clone());
        Some(latest.unwrap_or_else(|| self.blank.clone()))
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The moving test pattern in place of a camera ([`CameraChoice::TestPattern`]), with the
/// same preview and on/off behaviour as a device.
pub struct PatternCamera {
    pattern: TestPattern,
    on: Arc<AtomicBool>,
    was_on: bool,
    preview: Preview,
    last_preview: Option<Instant>,
    blank: VideoFrame,
}

impl PatternCamera {
    /// A pattern of `want`'s size.
    pub fn new(want: VideoFormat, on: Arc<AtomicBool>, preview: Preview) -> Self {
        Self {
            pattern: TestPattern::new(want.width, want.height),
            on,
            was_on: false,
            preview,
            last_preview: None,
            blank: VideoFrame::filled(want.width, want.height, 16, 128, 128),
        }
    }
}

impl VideoSource for PatternCamera {
    fn next_frame(&mut self) -> Option<VideoFrame> {
        let on = self.on.load(Ordering::Relaxed);
        if !on {
            if self.was_on {
                self.was_on = false;
                (self.preview)(None);
            }
            return Some(self.blank.clone());
        }
        self.was_on = true;
        let picture = self.pattern.next_frame()?;
        if self
            .last_preview
            .is_none_or(|t| t.elapsed() >= PREVIEW_PERIOD)
        {
            self.last_preview = Some(Instant::now());
            (self.preview)(Some(&picture));
        }
        Some(picture)
    }
}

impl Drop for PatternCamera {
    fn drop(&mut self) {
        (self.preview)(None);
    }
}

fn pixel_format(f: FrameFormat) -> PixelFormat {
    match f {
        FrameFormat::MJPEG => PixelFormat::Mjpeg,
        FrameFormat::YUYV => PixelFormat::Yuyv,
        FrameFormat::NV12 => PixelFormat::Nv12,
        FrameFormat::GRAY => PixelFormat::Gray,
        FrameFormat::RAWRGB => PixelFormat::Rgb,
        FrameFormat::RAWBGR => PixelFormat::Bgr,
    }
}

const ALL_FORMATS: [FrameFormat; 6] = [
    FrameFormat::YUYV,
    FrameFormat::NV12,
    FrameFormat::MJPEG,
    FrameFormat::RAWRGB,
    FrameFormat::RAWBGR,
    FrameFormat::GRAY,
];

fn open_device(want: VideoFormat) -> Result<nokhwa::Camera, String> {
    #[cfg(target_os = "macos")]
    nokhwa::nokhwa_initialize(|_| {});
    let cameras = nokhwa::query(ApiBackend::Auto)
        .map_err(|e| format!("cameras could not be listed ({e})"))?;
    let info = cameras.first().ok_or("no camera was found")?;
    let mut device = nokhwa::Camera::new(
        info.index().clone(),
        RequestedFormat::with_formats(RequestedFormatType::None, &ALL_FORMATS),
    )
    .map_err(|e| format!("the camera could not be opened ({e})"))?;
    let formats = device.compatible_camera_formats().unwrap_or_default();
    let modes: Vec<Mode> = formats
        .iter()
        .map(|f| Mode {
            width: f.width(),
            height: f.height(),
            fps: f.frame_rate(),
            format: pixel_format(f.format()),
        })
        .collect();
    let wanted = Mode {
        width: want.width,
        height: want.height,
        fps: want.fps,
        format: PixelFormat::Yuyv,
    };
    let chosen = choose_mode(&modes, wanted)
        .and_then(|mode| modes.iter().position(|m| *m == mode))
        .and_then(|i| formats.get(i).copied());
    if let Some(format) = chosen
        && let Err(e) = device.set_camera_requset(RequestedFormat::with_formats(
            RequestedFormatType::Exact(format),
            &ALL_FORMATS,
        ))
    {
        tracing::info!(error = %e, "camera mode refused; using the camera's own");
    }
    Ok(device)
}

fn capture(
    mut device: nokhwa::Camera,
    latest: &Mutex<Option<VideoFrame>>,
    stop: &AtomicBool,
    on: &AtomicBool,
    mut preview: Preview,
) {
    let mut failures = 0;
    let mut last_preview: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if !on.load(Ordering::Relaxed) {
            if device.is_stream_open() {
                let _ = device.stop_stream();
                if let Ok(mut l) = latest.lock() {
                    *l = None;
                }
                preview(None);
            }
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if !device.is_stream_open()
            && let Err(e) = device.open_stream()
        {
            tracing::warn!(error = %e, "camera stream did not open");
            break;
        }
        let picture = device.frame().map_err(|e| e.to_string()).and_then(|b| {
            let size = b.resolution();
            to_i420(
                pixel_format(b.source_frame_format()),
                size.width(),
                size.height(),
                b.buffer(),
            )
            .map_err(|e| e.to_string())
        });
        match picture {
            Ok(p) => {
                failures = 0;
                if last_preview.is_none_or(|t| t.elapsed() >= PREVIEW_PERIOD) {
                    last_preview = Some(Instant::now());
                    preview(Some(&p));
                }
                if let Ok(mut l) = latest.lock() {
                    *l = Some(p);
                }
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(error = %e, "camera picture dropped");
                if failures >= MAX_FAILURES {
                    tracing::warn!(error = %e, "the camera stopped delivering pictures");
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let _ = device.stop_stream();
    if let Ok(mut l) = latest.lock() {
        *l = None;
    }
    preview(None);
}
