//! Unmask throughput per implementation (GB/s): scalar reference, portable
//! word-at-a-time, AVX2, and what `apply_mask` picks at run time.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgews::protocol::mask::apply_mask_named;

fn mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in [16usize, 125, 1024, 64 << 10, 1 << 20] {
        let mut buf = vec![0xA5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        for name in ["scalar", "portable", "avx2", "auto"] {
            if !apply_mask_named(name, &mut buf, [1, 2, 3, 4]) {
                continue; // the CPU lacks this one
            }
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| {
                    apply_mask_named(
                        name,
                        std::hint::black_box(&mut buf),
                        [0x37, 0xFA, 0x21, 0x3D],
                    )
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_millis(800)).warm_up_time(std::time::Duration::from_millis(200));
    targets = mask
}
criterion_main!(benches);
