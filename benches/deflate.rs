//! permessage-deflate throughput (MB/s) for 100 B, 1 KiB and 64 KiB
//! JSON-like messages: shared mode (no context takeover) and dedicated mode
//! (context takeover, windows of 15 and 11 bits).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgews::protocol::deflate::{Deflater, Inflater};

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

fn modes() -> [(&'static str, u8, bool); 3] {
    [
        ("shared", 15, true),
        ("dedicated-w15", 15, false),
        ("dedicated-w11", 11, false),
    ]
}

fn compress(c: &mut Criterion) {
    let mut group = c.benchmark_group("compress");
    for size in [100usize, 1024, 64 << 10] {
        let data = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        for (mode, bits, no_takeover) in modes() {
            let mut d = Deflater::new(bits, no_takeover);
            let mut out = Vec::with_capacity(size + 64);
            group.bench_with_input(BenchmarkId::new(mode, size), &size, |b, _| {
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
        for (mode, bits, no_takeover) in modes() {
            // A stream of compressed messages as the peer would send them; the
            // inflater must see them in order when context is kept.
            let mut d = Deflater::new(bits, no_takeover);
            let messages: Vec<Vec<u8>> = (0..64)
                .map(|_| {
                    let mut z = Vec::new();
                    d.compress(&data, &mut z);
                    z
                })
                .collect();
            let mut out = Vec::with_capacity(size + 64);
            group.bench_with_input(BenchmarkId::new(mode, size), &size, |b, _| {
                b.iter_batched_ref(
                    || Inflater::new(bits, no_takeover),
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
