//! What room settings and moderation add to the request paths: the check
//! before every `message` (`check_post`) and every `join` (`check_join`),
//! with no room state on the server (the default: one atomic load) and with
//! 10,000 created rooms (a sharded lookup), and a password join (PBKDF2).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgews::rooms::auth::Keys;
use edgews::rooms::moderation::{self as m, Actor, RoomOptions};
use edgews::rooms::server::RoomServer;
use edgews::rooms::RoomServerConfig;
use std::hint::black_box;

fn moderation(c: &mut Criterion) {
    let mut cfg = RoomServerConfig::default();
    cfg.listen = "127.0.0.1:0".parse().expect("address");
    cfg.workers = 1;
    let keys = Keys::hs256(b"bench secret", &cfg.auth);
    let server = RoomServer::bind(cfg, keys).expect("bind");
    let shared = server.shared().clone();
    let mut group = c.benchmark_group("moderation");
    group.throughput(Throughput::Elements(1));
    group.bench_function("check_post, no room state on the server", |b| {
        b.iter(|| m::check_post(&shared, black_box("room-17"), black_box("load-17"), 0))
    });
    group.bench_function("check_join, no room state on the server", |b| {
        b.iter(|| m::check_join(&shared, black_box("room-17"), black_box("load-17"), 0, None))
    });
    for i in 0..10_000 {
        let opts = RoomOptions::default();
        m::create(&shared, Actor::AdminApi, &format!("room-{i}"), &opts).expect("create");
    }
    group.bench_function("check_post, 10,000 created rooms, one of them", |b| {
        b.iter(|| m::check_post(&shared, black_box("room-17"), black_box("load-17"), 0))
    });
    group.bench_function("check_post, 10,000 created rooms, another room", |b| {
        b.iter(|| m::check_post(&shared, black_box("auto-17"), black_box("load-17"), 0))
    });
    group.bench_function("check_join, 10,000 created rooms, one of them", |b| {
        b.iter(|| m::check_join(&shared, black_box("room-17"), black_box("load-17"), 0, None))
    });
    let opts = RoomOptions {
        password: Some("hunter2".into()),
        ..RoomOptions::default()
    };
    m::create(&shared, Actor::AdminApi, "locked", &opts).expect("create");
    group.bench_function("check_join, password room (PBKDF2 verify)", |b| {
        b.iter(|| {
            m::check_join(&shared, "locked", "load-17", 0, Some(black_box("hunter2")))
                .expect("right password")
        })
    });
    group.finish();
}

criterion_group!(benches, moderation);
criterion_main!(benches);
