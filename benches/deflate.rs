//! permessage-deflate throughput (MB/s) for 100 B, 1 KiB and 64 KiB
//! JSON-like messages: shared mode (no context takeover, zlib-rs), context
//! takeover on zlib-rs with a 15-bit window (what dedicated mode used before
//! the presets), and dedicated mode's presets on stock zlib (256, 16 and
//! 3 KiB compressors, each with the inflater of the same window).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgews::protocol::deflate::{CompressorPreset, DecompressorPreset, Deflater, Inflater};

/// Chat-like JSON, cut to `size` bytes.
fn payload(size: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0u64;
    while s.len() < size {
        s.push_str(&format!(
            "{{\"type\":\"message\",\"room\":\"lobby-{}\",\"user\":\"u{}\",\"text\":\"hello number {i}\",\"ts\":{}}},",
            i % 7,
            i % 13,
            1_700_000_000_000u64 + i * 37
        ));
        i += 1;
    }
    s.truncate(size);
    s.into_bytes()
}

/// How a benchmark's compressor and inflater are made.
#[derive(Clone, Copy)]
enum Mode {
    /// zlib-rs with this window, context takeover or not.
    ZlibRs { window_bits: u8, takeover: bool },
    /// Stock zlib, context takeover, sized by a preset.
    Preset(CompressorPreset),
}

impl Mode {
    fn deflater(self) -> Deflater {
        match self {
            Mode::ZlibRs {
                window_bits,
                takeover,
            } => Deflater::new(window_bits, !takeover),
            Mode::Preset(p) => Deflater::with_preset(p, false),
        }
    }

    fn inflater(self) -> Inflater {
        match self {
            Mode::ZlibRs {
                window_bits,
                takeover,
            } => Inflater::new(window_bits, !takeover),
            Mode::Preset(p) => Inflater::with_preset(DecompressorPreset::new(p.window_bits), false),
        }
    }
}

fn modes() -> [(&'static str, Mode); 5] {
    let rs = |window_bits, takeover| Mode::ZlibRs {
        window_bits,
        takeover,
    };
    [
        ("shared", rs(15, false)),
        ("zlib-rs-w15", rs(15, true)),
        (
            "dedicated-256kb",
            Mode::Preset(CompressorPreset::SIZE_256KB),
        ),
        ("dedicated-16kb", Mode::Preset(CompressorPreset::SIZE_16KB)),
        ("dedicated-3kb", Mode::Preset(CompressorPreset::SIZE_3KB)),
    ]
}

fn compress(c: &mut Criterion) {
    let mut group = c.benchmark_group("compress");
    for size in [100usize, 1024, 64 << 10] {
        let data = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        for (name, mode) in modes() {
            let mut d = mode.deflater();
            let mut out = Vec::with_capacity(size + 64);
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| {
                    out.clear();
                    d.compress(std::hint::black_box(&data), &mut out);
                })
            });
        }
    }
    group.finish();
}

fn inflate(c: &mut Criterion) {
    let mut group = c.benchmark_group("inflate");
    for size in [100usize, 1024, 64 << 10] {
        let data = payload(size);
        // Each iteration inflates the 64 messages of a stream.
        group.throughput(Throughput::Bytes(64 * size as u64));
        for (name, mode) in modes() {
            // A stream of compressed messages as the peer would send them; the
            // inflater must see them in order when context is kept.
            let mut d = mode.deflater();
            let messages: Vec<Vec<u8>> = (0..64)
                .map(|_| {
                    let mut z = Vec::new();
                    d.compress(&data, &mut z);
                    z
                })
                .collect();
            let mut out = Vec::with_capacity(size + 64);
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter_batched_ref(
                    || mode.inflater(),
                    |inflater| {
                        for m in &messages {
                            out.clear();
                            inflater.inflate(m, &mut out, 1 << 20).expect("valid data");
                        }
                    },
                    criterion::BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(1)).warm_up_time(std::time::Duration::from_millis(300));
    targets = compress, inflate
}
criterion_main!(benches);
