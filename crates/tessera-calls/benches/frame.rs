//! Frame-encryption cost per frame (issue 9 benchmark): sealing and opening a typical Opus
//! frame (~160 B at 64 kb/s, 20 ms) and a 720p VP8 frame (~12 KB at 2.5 Mb/s, 30 fps).
//! `cargo bench -p tessera-calls --bench frame`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tessera_calls::frame::{FrameOpener, FrameSealer, FrameSecret};

fn frames(c: &mut Criterion) {
    let secret = FrameSecret::from_bytes([7; 32]);
    let mut group = c.benchmark_group("frame");
    for (name, size) in [("opus_160B", 160usize), ("vp8_720p_12KB", 12_000)] {
        let payload = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        let mut sealer = FrameSealer::new(&secret).unwrap();
        group.bench_function(BenchmarkId::new("seal", name), |b| {
            b.iter(|| sealer.seal(Duration::ZERO, &payload).unwrap().len());
        });
        // Open a fresh frame each time (the replay window refuses repeats).
        let mut sealer = FrameSealer::new(&secret).unwrap();
        let mut opener = FrameOpener::new(&secret).unwrap();
        group.bench_function(BenchmarkId::new("seal+open", name), |b| {
            b.iter(|| {
                let sealed = sealer.seal(Duration::ZERO, &payload).unwrap().to_vec();
                opener.open(&sealed).unwrap().len()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
