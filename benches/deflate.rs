//! permessage-deflate throughput (MB/s) for 100 B, 1 KiB and 64 KiB
//! JSON-like messages: shared mode (no context takeover, zlib-rs), context
//! takeover on zlib-rs with a 15-bit window (the `256kb` preset), and
//! dedicated mode's smaller presets on stock zlib (16 and 3 KiB
//! compressors, each with the inflater of the same window).
//!
//! Group `chat`: the CPU cost of each dedicated preset on a stream of
//! varied chat-like JSON messages (150-400 bytes), each compressed by the
//! connection's compressor and inflated by an inflater of the same window,
//! as one connection's traffic both ways; beside them zlib-rs at a 14-bit
//! window, the `128kb` preset's window on stock zlib, to show what the
//! backend costs.

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

fn modes() -> [(&'static str, Mode); 4] {
    let rs = |window_bits, takeover| Mode::ZlibRs {
        window_bits,
        takeover,
    };
    [
        ("shared", rs(15, false)),
        ("dedicated-256kb-zlib-rs", rs(15, true)),
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

/// A small deterministic generator (xorshift64*), so every run sees the same text.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Varied chat-like JSON messages: a few rooms and users, free text, ids.
fn chat_messages(count: usize) -> Vec<Vec<u8>> {
    const WORDS: &[&str] = &[
        "hello", "there", "anyone", "seen", "the", "new", "release", "notes", "yes", "no", "maybe",
        "tomorrow", "meeting", "at", "noon", "lunch", "coffee", "deploy", "failed", "again",
        "works", "for", "me", "thanks", "please", "review", "my", "pull", "request", "ok", "great",
        "idea", "weekend", "game", "tonight", "who", "is", "in", "server", "down",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ts = 1_733_200_000_000u64;
    (0..count)
        .map(|i| {
            ts += 1 + rng.below(5000);
            let text: Vec<&str> = (0..5 + rng.below(40))
                .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                .collect();
            let user = rng.below(50);
            format!(
                "{{\"type\":\"message\",\"id\":\"m{:08x}\",\"room\":\"room-{}\",\"user\":{{\"id\":{user},\"name\":\"user{user}\"}},\"text\":\"{}\",\"ts\":{ts},\"seq\":{i}}}",
                rng.below(1 << 32),
                rng.below(8),
                text.join(" "),
            )
            .into_bytes()
        })
        .collect()
}

fn chat(c: &mut Criterion) {
    let messages = chat_messages(256);
    let plain: usize = messages.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("chat");
    // One iteration: every message compressed, then inflated.
    group.throughput(Throughput::Bytes(plain as u64));
    let mut modes: Vec<(String, Mode)> = CompressorPreset::ALL
        .iter()
        .map(|&(name, p)| (name.to_owned(), Mode::Preset(p)))
        .collect();
    modes.push((
        "zlib-rs-w14".to_owned(),
        Mode::ZlibRs {
            window_bits: 14,
            takeover: true,
        },
    ));
    modes.push((
        "shared".to_owned(),
        Mode::ZlibRs {
            window_bits: 15,
            takeover: false,
        },
    ));
    for (name, mode) in modes {
        let (mut d, mut i) = (mode.deflater(), mode.inflater());
        let (mut z, mut out) = (Vec::with_capacity(1024), Vec::with_capacity(1024));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                for m in &messages {
                    z.clear();
                    out.clear();
                    d.compress(std::hint::black_box(m), &mut z);
                    i.inflate(&z, &mut out, 1 << 20).expect("valid data");
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(1)).warm_up_time(std::time::Duration::from_millis(300));
    targets = compress, inflate, chat
}
criterion_main!(benches);
