//! Camera picture conversion cost (`docs/calls.md` §Camera): one 640×360 picture from each
//! format a camera delivers to the encoder's I420. Motion-JPEG is what USB cameras send at
//! higher resolutions, so its decoding is the cost that matters.
//! `cargo bench -p tessera-calls --bench picture`.

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tessera_calls::picture::{PixelFormat, to_i420};

const W: u32 = 640;
const H: u32 = 360;

/// A picture with detail (gradients and a checkerboard), so the JPEG is camera-sized.
fn rgb() -> Vec<u8> {
    let mut out = Vec::with_capacity((W * H * 3) as usize);
    for y in 0..H {
        for x in 0..W {
            let check = if (x / 8 + y / 8) % 2 == 0 { 40 } else { 0 };
            out.extend_from_slice(&[
                (x * 255 / W) as u8,
                (y * 255 / H) as u8 + check,
                ((x + y) % 256) as u8,
            ]);
        }
    }
    out
}

fn pictures(c: &mut Criterion) {
    let rgb = rgb();
    let yuyv: Vec<u8> = (0..W * H * 2).map(|i| (i % 251) as u8).collect();
    let nv12: Vec<u8> = (0..W * H * 3 / 2).map(|i| (i % 251) as u8).collect();
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 85)
        .encode(&rgb, W as u16, H as u16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    println!(
        "640x360 Motion-JPEG picture at quality 85: {} bytes",
        jpeg.len()
    );
    let mut group = c.benchmark_group("picture_640x360");
    for (name, format, data) in [
        ("yuyv", PixelFormat::Yuyv, &yuyv),
        ("nv12", PixelFormat::Nv12, &nv12),
        ("rgb", PixelFormat::Rgb, &rgb),
        ("mjpeg", PixelFormat::Mjpeg, &jpeg),
    ] {
        group.bench_function(BenchmarkId::new("to_i420", name), |b| {
            b.iter(|| to_i420(format, W, H, data).unwrap().data.len());
        });
    }
    group.finish();
}

criterion_group!(benches, pictures);
criterion_main!(benches);
