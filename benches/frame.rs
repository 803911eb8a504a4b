//! Frame decoding and encoding: many small masked frames, one 64 KiB frame
//! in one read and spread over 1500-byte reads, and server-side encoding.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgews::protocol::{
    server_frame, Client, Decoder, DecoderConfig, Encoder, Input, OpCode, Server,
};

/// `count` masked client frames of `size` bytes, back to back.
fn stream(opcode: OpCode, size: usize, count: usize) -> Vec<u8> {
    let mut enc = Encoder::<Client>::new();
    let payload = vec![b'a'; size];
    let mut out = Vec::new();
    for _ in 0..count {
        enc.frame(&mut out, opcode, &payload);
    }
    out
}

/// Decodes `data` (a fresh copy, since unmasking is in place) in `chunk`-byte reads.
fn decode_all(data: &[u8], work: &mut Vec<u8>, chunk: usize) -> usize {
    work.clear();
    work.extend_from_slice(data);
    let mut dec = Decoder::<Server>::new();
    let cfg = DecoderConfig::default();
    let mut events = 0;
    for piece in work.chunks_mut(chunk) {
        let mut input = Input::new(piece);
        while let Some(_ev) = dec.decode(&mut input, &cfg).expect("valid frames") {
            events += 1;
        }
    }
    events
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, opcode) in [("text", OpCode::Text), ("binary", OpCode::Binary)] {
        let data = stream(opcode, 16, 1000);
        let mut work = Vec::with_capacity(data.len());
        group.throughput(Throughput::Elements(1000));
        group.bench_function(BenchmarkId::new("1000 frames of 16 B", name), |b| {
            b.iter(|| decode_all(&data, &mut work, data.len()))
        });
    }
    let big = stream(OpCode::Binary, 64 << 10, 1);
    let mut work = Vec::with_capacity(big.len());
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("64 KiB frame, one read", |b| {
        b.iter(|| decode_all(&big, &mut work, big.len()))
    });
    group.bench_function("64 KiB frame, 1500-byte reads", |b| {
        b.iter(|| decode_all(&big, &mut work, 1500))
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for size in [16usize, 64 << 10] {
        let payload = vec![b'z'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("server_frame", size), &size, |b, _| {
            b.iter(|| server_frame(OpCode::Binary, std::hint::black_box(&payload)))
        });
        let mut out = Vec::with_capacity(size + 16);
        let mut enc = Encoder::<Server>::new();
        group.bench_with_input(
            BenchmarkId::new("into reused buffer", size),
            &size,
            |b, _| {
                b.iter(|| {
                    out.clear();
                    enc.frame(&mut out, OpCode::Binary, std::hint::black_box(&payload));
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(1)).warm_up_time(std::time::Duration::from_millis(300));
    targets = decode, encode
}
criterion_main!(benches);
