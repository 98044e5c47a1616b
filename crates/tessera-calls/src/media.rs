//! Capture and playback behind traits (`docs/calls.md` §Media): real devices in the app,
//! synthetic sources and analysing sinks in tests. Audio is 48 kHz mono 16-bit PCM in 20 ms
//! frames (what Opus takes); video is I420.

/// Audio sample rate, Hz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms audio frame.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE / 50) as usize;

/// Something that produces audio (a microphone, a tone).
pub trait AudioSource: Send {
    /// Fills `out` with the next samples; returns how many were written (0: the source ended).
    fn read(&mut self, out: &mut [i16]) -> usize;
}

/// Something that consumes audio (a speaker, an analyser).
pub trait AudioSink: Send {
    /// Plays (or keeps) `samples`.
    fn write(&mut self, samples: &[i16]);
}

/// One I420 picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Y plane (width × height), then U and V (each width/2 × height/2).
    pub data: Vec<u8>,
}

impl VideoFrame {
    /// A frame of one colour (Y, U, V).
    pub fn filled(width: u32, height: u32, y: u8, u: u8, v: u8) -> Self {
        let luma = (width * height) as usize;
        let chroma = luma / 4;
        let mut data = vec![y; luma];
        data.extend(std::iter::repeat_n(u, chroma));
        data.extend(std::iter::repeat_n(v, chroma));
        Self {
            width,
            height,
            data,
        }
    }

    /// The luma (Y) plane.
    pub fn luma(&self) -> &[u8] {
        let n = (self.width * self.height) as usize;
        &self.data[..n.min(self.data.len())]
    }
}

/// Something that produces pictures (a camera, a test pattern).
pub trait VideoSource: Send {
    /// The next picture (`None`: the source ended).
    fn next_frame(&mut self) -> Option<VideoFrame>;
}

/// Something that consumes pictures (the call window, an analyser).
pub trait VideoSink: Send {
    /// Shows (or keeps) `frame`.
    fn show(&mut self, frame: &VideoFrame);
}

/// A sine tone at `freq` Hz, amplitude about −6 dBFS.
#[derive(Debug, Clone)]
pub struct Tone {
    freq: f64,
    n: u64,
}

impl Tone {
    /// A tone at `freq` Hz.
    pub fn new(freq: f64) -> Self {
        Self { freq, n: 0 }
    }
}

impl AudioSource for Tone {
    fn read(&mut self, out: &mut [i16]) -> usize {
        for s in out.iter_mut() {
            let t = self.n as f64 / f64::from(SAMPLE_RATE);
            *s = (16_384.0 * (2.0 * std::f64::consts::PI * self.freq * t).sin()) as i16;
            self.n += 1;
        }
        out.len()
    }
}

/// The frequency (Hz, to 1 Hz) with the most energy between 50 Hz and 4 kHz, by a Goertzel
/// scan; `None` for silence.
pub fn dominant_frequency(samples: &[i16]) -> Option<f64> {
    if samples.is_empty() || samples.iter().all(|&s| s == 0) {
        return None;
    }
    let rate = f64::from(SAMPLE_RATE);
    let power = |freq: f64| {
        let w = 2.0 * std::f64::consts::PI * freq / rate;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in samples {
            let s0 = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - coeff * s1 * s2
    };
    // Coarse scan every 10 Hz, then 1 Hz around the best.
    let best = |from: u32, to: u32, step: u32| {
        (from..=to)
            .step_by(step as usize)
            .map(|f| (f, power(f64::from(f))))
            .fold((from, f64::MIN), |a, b| if b.1 > a.1 { b } else { a })
            .0
    };
    let coarse = best(50, 4000, 10);
    Some(f64::from(best(
        coarse.saturating_sub(10).max(50),
        coarse + 10,
        1,
    )))
}

/// A moving test pattern: mid-grey with a white vertical bar 16 pixels wide that moves 8
/// pixels to the right every frame (wrapping), so a receiver can tell frames apart and in order.
#[derive(Debug, Clone)]
pub struct TestPattern {
    width: u32,
    height: u32,
    n: u32,
}

/// Width of the pattern's bar in pixels.
pub const BAR_WIDTH: u32 = 16;
/// How far the bar moves per frame in pixels.
pub const BAR_STEP: u32 = 8;

impl TestPattern {
    /// A pattern of `width` × `height` (both even, width ≥ 2 × [`BAR_WIDTH`]).
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            n: 0,
        }
    }

    /// Where the bar's left edge is in frame `n`.
    pub fn bar_x(&self, n: u32) -> u32 {
        (n.wrapping_mul(BAR_STEP)) % (self.width - BAR_WIDTH)
    }
}

impl VideoSource for TestPattern {
    fn next_frame(&mut self) -> Option<VideoFrame> {
        let mut f = VideoFrame::filled(self.width, self.height, 96, 128, 128);
        let x0 = self.bar_x(self.n);
        let w = self.width as usize;
        for row in f.data[..(self.width * self.height) as usize].chunks_mut(w) {
            for px in &mut row[x0 as usize..(x0 + BAR_WIDTH) as usize] {
                *px = 235;
            }
        }
        self.n = self.n.wrapping_add(1);
        Some(f)
    }
}

/// Where a received frame's bar is: the left edge of the brightest [`BAR_WIDTH`]-wide band of
/// columns, if it stands out from the background (`None`: not the pattern).
pub fn find_bar(frame: &VideoFrame) -> Option<u32> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let luma = frame.luma();
    if w < BAR_WIDTH as usize || luma.len() < w * h || h == 0 {
        return None;
    }
    let mut cols = vec![0u64; w];
    for row in luma.chunks(w) {
        for (c, &p) in cols.iter_mut().zip(row) {
            *c += u64::from(p);
        }
    }
    let bw = BAR_WIDTH as usize;
    let band = |x: usize| cols[x..x + bw].iter().sum::<u64>();
    let (best_x, best) = (0..=w - bw).map(|x| (x, band(x))).max_by_key(|b| b.1)?;
    let mean_band = cols.iter().sum::<u64>() * bw as u64 / w as u64;
    // The bar is far brighter than the grey; codec noise is not.
    (best > mean_band + (bw * h) as u64 * 40).then_some(best_x as u32)
}

/// An audio sink that keeps the last `keep` samples it was given, with the time the first
/// non-silent frame arrived, readable from another thread (tests, benchmarks, the level meter).
#[derive(Debug, Clone)]
pub struct AudioTap {
    inner: std::sync::Arc<std::sync::Mutex<TapState>>,
    keep: usize,
}

#[derive(Debug, Default)]
struct TapState {
    samples: std::collections::VecDeque<i16>,
    frames: u64,
    first_sound: Option<std::time::Instant>,
}

impl AudioTap {
    /// A tap that keeps `keep` samples.
    pub fn new(keep: usize) -> Self {
        Self {
            inner: Default::default(),
            keep,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<i16> {
        self.state().samples.iter().copied().collect()
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.state().frames
    }

    /// When the first frame louder than −30 dBFS arrived.
    pub fn first_sound(&self) -> Option<std::time::Instant> {
        self.state().first_sound
    }

    /// Forgets what was kept (the next check starts fresh).
    pub fn clear(&self) {
        let mut s = self.state();
        s.samples.clear();
        s.first_sound = None;
    }
}

impl AudioSink for AudioTap {
    fn write(&mut self, samples: &[i16]) {
        let keep = self.keep;
        let mut s = self.state();
        s.frames += 1;
        if s.first_sound.is_none() && samples.iter().any(|&x| x.unsigned_abs() > 1_000) {
            s.first_sound = Some(std::time::Instant::now());
        }
        s.samples.extend(samples);
        while s.samples.len() > keep {
            s.samples.pop_front();
        }
    }
}

/// A video sink that keeps the last picture and where the test pattern's bar was in each
/// picture, readable from another thread.
#[derive(Debug, Clone, Default)]
pub struct VideoTap {
    inner: std::sync::Arc<std::sync::Mutex<VideoTapState>>,
}

#[derive(Debug, Default)]
struct VideoTapState {
    last: Option<VideoFrame>,
    bars: Vec<Option<u32>>,
}

impl VideoTap {
    /// An empty tap.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, VideoTapState> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The newest picture.
    pub fn last(&self) -> Option<VideoFrame> {
        self.state().last.clone()
    }

    /// For each picture so far: where [`find_bar`] saw the bar.
    pub fn bars(&self) -> Vec<Option<u32>> {
        self.state().bars.clone()
    }
}

impl VideoSink for VideoTap {
    fn show(&mut self, frame: &VideoFrame) {
        let bar = find_bar(frame);
        let mut s = self.state();
        s.bars.push(bar);
        s.last = Some(frame.clone());
    }
}

/// Silence forever (a muted or missing microphone).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silence;

impl AudioSource for Silence {
    fn read(&mut self, out: &mut [i16]) -> usize {
        out.fill(0);
        out.len()
    }
}

/// Discards what it is given (no speaker, no video view).
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl AudioSink for Discard {
    fn write(&mut self, _samples: &[i16]) {}
}

impl VideoSink for Discard {
    fn show(&mut self, _frame: &VideoFrame) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: &mut u64) -> i32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) % 2001) as i32 - 1000
    }

    #[test]
    fn a_tone_is_found_as_the_dominant_frequency_even_with_noise() {
        for freq in [440.0, 880.0, 1000.0, 3000.0] {
            let mut tone = Tone::new(freq);
            let mut buf = vec![0i16; FRAME_SAMPLES * 10];
            assert_eq!(tone.read(&mut buf), buf.len());
            let mut seed = 7;
            for s in &mut buf {
                *s = (i32::from(*s) + noise(&mut seed)) as i16;
            }
            let found = dominant_frequency(&buf).unwrap();
            assert!((found - freq).abs() <= 2.0, "{freq} Hz found as {found}");
        }
        assert_eq!(dominant_frequency(&[0; 960]), None);
        // 440 and 880 are told apart (the reverse-direction check uses another tone).
        let mut a = vec![0i16; 4800];
        Tone::new(880.0).read(&mut a);
        assert!((dominant_frequency(&a).unwrap() - 880.0).abs() <= 2.0);
    }

    #[test]
    fn the_pattern_bar_is_found_where_it_was_drawn_and_moves_each_frame() {
        let mut p = TestPattern::new(320, 240);
        let reference = p.clone();
        let mut seed = 3u64;
        for n in 0..100 {
            let mut f = p.next_frame().unwrap();
            // Compression noise of ±15 luma levels.
            for px in &mut f.data {
                *px = (i32::from(*px) + noise(&mut seed) / 66).clamp(0, 255) as u8;
            }
            assert_eq!(find_bar(&f), Some(reference.bar_x(n)), "frame {n}");
        }
        assert_eq!(find_bar(&VideoFrame::filled(320, 240, 96, 128, 128)), None);
        assert_ne!(reference.bar_x(0), reference.bar_x(1));
    }
}
