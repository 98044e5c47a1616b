//! Call benchmark (issue 9): setup time (dial to media flowing), one-way audio latency, CPU
//! and bandwidth of a 720p30 video call, between two phones in this process through the real
//! relay and its TURN service on loopback. Prints numbers; asserts none.
//!
//!   cargo build -p tessera-relay
//!   ./scripts/with-keyring cargo test -p tessera-e2e --bench call
//!
//! Frame-encryption cost per frame is `cargo bench -p tessera-calls --bench frame`.

#![allow(clippy::unwrap_used, missing_docs)] // a benchmark set-up step that fails should stop it loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tessera_calls::call::State;
use tessera_calls::codec::VideoFormat;
use tessera_calls::media::{
    AudioSource, AudioTap, TestPattern, Tone, VideoFrame, VideoSource, VideoTap,
};
use tessera_calls::session::Media;
use tessera_core::phone::{MediaProvider, Phone, PhoneOptions};
use tessera_e2e::calls::{ended, incoming, pair, reaches};

/// A microphone that is silent until the gate opens, then plays a tone.
struct Gated {
    open: Arc<AtomicBool>,
    tone: Tone,
}

impl AudioSource for Gated {
    fn read(&mut self, out: &mut [i16]) -> usize {
        if self.open.load(Ordering::Relaxed) {
            self.tone.read(out)
        } else {
            out.fill(0);
            out.len()
        }
    }
}

/// The test pattern with sensor-like noise (±12 levels), closer to a camera's work for VP8.
struct Noisy {
    pattern: TestPattern,
    seed: u64,
}

impl VideoSource for Noisy {
    fn next_frame(&mut self) -> Option<VideoFrame> {
        let mut f = self.pattern.next_frame()?;
        for p in &mut f.data {
            self.seed = self
                .seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = ((self.seed >> 33) % 25) as i16 - 12;
            *p = (i16::from(*p) + n).clamp(0, 255) as u8;
        }
        Some(f)
    }
}

struct Device {
    gate: Arc<AtomicBool>,
    heard: AudioTap,
    format: VideoFormat,
    noisy: bool,
}

impl MediaProvider for Device {
    fn media(&self, video: bool) -> Media {
        let (w, h) = (self.format.width, self.format.height);
        Media {
            audio_in: Box::new(Gated {
                open: self.gate.clone(),
                tone: Tone::new(1000.0),
            }),
            audio_out: Box::new(self.heard.clone()),
            video_in: video.then(|| {
                let pattern = TestPattern::new(w, h);
                if self.noisy {
                    Box::new(Noisy { pattern, seed: 1 }) as Box<dyn VideoSource>
                } else {
                    Box::new(pattern) as Box<dyn VideoSource>
                }
            }),
            video_out: Some(Box::new(VideoTap::new())),
        }
    }
}

fn device(format: VideoFormat, noisy: bool) -> Arc<Device> {
    Arc::new(Device {
        gate: Arc::new(AtomicBool::new(false)),
        heard: AudioTap::new(4_800),
        format,
        noisy,
    })
}

/// CPU time (user + system) of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // CLK_TCK = 100 on Linux
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let p = pair().await;
    let options = PhoneOptions {
        loopback: true,
        video_format: Some(VideoFormat::HD),
    };

    // 1. Setup time, relay-only, audio: dial → the caller's call is active (first authentic
    //    frame from the callee). The callee answers as soon as it rings.
    let (a, b) = (
        device(VideoFormat::HD, false),
        device(VideoFormat::HD, false),
    );
    let alice = Phone::new(p.alice.clone(), a.clone(), options);
    let bob = Phone::new(p.bob.clone(), b.clone(), options);
    let (mut a_ev, mut b_ev) = (alice.subscribe(), bob.subscribe());
    let mut setups = Vec::new();
    let mut latencies = Vec::new();
    for round in 0..5 {
        let t0 = Instant::now();
        alice.dial(&p.b_id, false).await.unwrap();
        incoming(&mut b_ev).await;
        bob.accept().await.unwrap();
        reaches(&mut a_ev, 30, State::Active).await;
        setups.push(t0.elapsed().as_secs_f64() * 1000.0);

        // 2. One-way audio latency: the gate opens at t; Bob's speaker gets the first loud
        //    frame at t + latency (capture frame, Opus, seal, RTP, TURN, reassembly, open,
        //    decode). Ten tone bursts per call.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for _ in 0..10 {
            b.heard.clear();
            let t = Instant::now();
            a.gate.store(true, Ordering::Relaxed);
            let deadline = t + Duration::from_secs(5);
            let heard = loop {
                if let Some(h) = b.heard.first_sound() {
                    break h;
                }
                assert!(Instant::now() < deadline, "no sound in 5 s");
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            latencies.push(heard.duration_since(t).as_secs_f64() * 1000.0);
            a.gate.store(false, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        alice.hang_up().await.unwrap();
        ended(&mut b_ev, 20).await;
        ended(&mut a_ev, 20).await;
        println!("round {round}: setup {:.0} ms", setups[round]);
    }
    println!(
        "call setup (dial → media flowing at the caller, relay-only via TURN, audio): median {:.0} ms, min {:.0}, max {:.0} over {}",
        median(setups.clone()),
        setups.iter().copied().fold(f64::MAX, f64::min),
        setups.iter().copied().fold(0.0, f64::max),
        setups.len()
    );
    println!(
        "one-way audio latency (tone onset → speaker, relay-only via TURN on loopback): median {:.1} ms, min {:.1}, max {:.1} over {}",
        median(latencies.clone()),
        latencies.iter().copied().fold(f64::MAX, f64::min),
        latencies.iter().copied().fold(0.0, f64::max),
        latencies.len()
    );
    drop((alice, bob));

    // 3. A 720p30 video call both ways for 10 s: CPU of this process (two encoders, two
    //    decoders, both WebRTC stacks) and bytes on the wire per direction.
    for noisy in [false, true] {
        let (a, b) = (
            device(VideoFormat::HD, noisy),
            device(VideoFormat::HD, noisy),
        );
        a.gate.store(true, Ordering::Relaxed);
        b.gate.store(true, Ordering::Relaxed);
        let alice = Phone::new(p.alice.clone(), a.clone(), options);
        let bob = Phone::new(p.bob.clone(), b.clone(), options);
        let (mut a_ev, mut b_ev) = (alice.subscribe(), bob.subscribe());
        alice.dial(&p.b_id, true).await.unwrap();
        incoming(&mut b_ev).await;
        bob.accept().await.unwrap();
        reaches(&mut a_ev, 30, State::Active).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let session = alice.session().await.unwrap();
        let (s0, c0, t0) = (session.stats(), cpu_time(), Instant::now());
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (s1, c1, secs) = (session.stats(), cpu_time(), t0.elapsed().as_secs_f64());
        let cpu = (c1 - c0).as_secs_f64() / secs * 100.0;
        let kbps = (s1.bytes_sent - s0.bytes_sent) as f64 * 8.0 / secs / 1000.0;
        let fps_in = (s1.video_received - s0.video_received) as f64 / secs;
        let fps_out = (s1.video_sent - s0.video_sent) as f64 / secs;
        println!(
            "720p30 video + Opus both ways ({}): CPU {cpu:.0}% of one core for both ends ({:.0}% per end); \
             sent {kbps:.0} kbit/s per direction (frame payloads, before RTP/SRTP/UDP headers); \
             {fps_out:.1} pictures/s sent, {fps_in:.1} received",
            if noisy {
                "test pattern with sensor-like noise"
            } else {
                "plain test pattern"
            },
            cpu / 2.0,
        );
        alice.hang_up().await.unwrap();
        ended(&mut a_ev, 20).await;
    }
    drop(p);
}
