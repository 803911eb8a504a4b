//! Room history: the cost of appending one message to each store, reading a
//! page, and recovering 10,000 missed messages over a real socket (from
//! sending `join {since}` to receiving the last missed message). Before the
//! timed runs it prints what each store holds per message (memory: resident
//! bytes; file: bytes on disk).
//!
//! `cargo bench --bench history`

use std::net::TcpStream;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgews::rooms::auth::{Claims, Keys};
use edgews::rooms::directory::Directory;
use edgews::rooms::history::file::FileStore;
use edgews::rooms::history::memory::MemoryStore;
use edgews::rooms::history::{publish_message, Data, HistoryLimits, Origin, Store};
use edgews::rooms::server::RoomServer;
use edgews::rooms::RoomServerConfig;
use tungstenite::Message;

/// A `message` event of a typical chat message (about 190 bytes).
fn event(pos: &edgews::rooms::history::Position, buf: &mut Vec<u8>) {
    buf.extend_from_slice(
        br#"{"type":"message","room":"bench","from":{"id":"user-1234","name":"User 1234"},"data":{"text":"hello, this is a chat message of a typical length"},"ts":1764748801002,"offset":"#,
    );
    buf.extend_from_slice(pos.offset.to_string().as_bytes());
    buf.extend_from_slice(br#","epoch":""#);
    buf.extend_from_slice(pos.epoch.as_bytes());
    buf.extend_from_slice(br#""}"#);
}

fn append_one(store: &dyn Store, room: &str, buf: &mut Vec<u8>) {
    store.append(room, 0, &mut event, buf).expect("append");
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn tmp(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("edgews-bench-{name}-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Prints bytes per stored message: 1,000 rooms x 100 messages.
fn footprint() {
    const ROOMS: usize = 1_000;
    const PER_ROOM: usize = 100;
    let mut buf = Vec::new();
    let mut sample = Vec::new();
    event(
        &edgews::rooms::history::Position {
            epoch: "0123456789abcdef".into(),
            offset: 50,
        },
        &mut sample,
    );
    let before = rss_bytes();
    let mem = MemoryStore::new(HistoryLimits::new(PER_ROOM, 0), 1 << 30);
    for i in 0..ROOMS * PER_ROOM {
        append_one(&mem, &format!("room-{}", i % ROOMS), &mut buf);
    }
    let after = rss_bytes();
    let n = (ROOMS * PER_ROOM) as f64;
    println!(
        "memory store: {} messages of ~{} B in {} rooms: {:.0} B resident per message, {:.0} B counted per message (budget accounting)",
        ROOMS * PER_ROOM,
        sample.len(),
        ROOMS,
        (after.saturating_sub(before)) as f64 / n,
        mem.bytes() as f64 / n
    );
    drop(mem);
    let path = tmp("footprint");
    let file = FileStore::open(&path, HistoryLimits::new(PER_ROOM, 0)).expect("open");
    for i in 0..ROOMS * PER_ROOM {
        append_one(&file, &format!("room-{}", i % ROOMS), &mut buf);
    }
    file.close().expect("close");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "file store: {} messages: {} bytes on disk, {:.0} B per message",
        ROOMS * PER_ROOM,
        size,
        size as f64 / n
    );
    drop(file);
    let _ = std::fs::remove_file(&path);
}

fn append(c: &mut Criterion) {
    footprint();
    let mut group = c.benchmark_group("history_append");
    group.throughput(Throughput::Elements(1));
    let mut buf = Vec::new();
    let mem = MemoryStore::new(HistoryLimits::new(100, 0), 64 << 20);
    group.bench_function("memory", |b| b.iter(|| append_one(&mem, "bench", &mut buf)));
    let path = tmp("append");
    let file = FileStore::open(&path, HistoryLimits::new(100, 0)).expect("open");
    group.bench_function("file", |b| b.iter(|| append_one(&file, "bench", &mut buf)));
    group.finish();
    let mut group = c.benchmark_group("history_read_100");
    group.throughput(Throughput::Elements(100));
    group.bench_function("memory", |b| {
        b.iter(|| mem.read("bench", 0, 100, 0).expect("read").entries.len())
    });
    group.bench_function("file", |b| {
        b.iter(|| file.read("bench", 0, 100, 0).expect("read").entries.len())
    });
    group.finish();
    drop(file);
    let _ = std::fs::remove_file(&path);
}

/// Recovery of 10,000 missed messages: one room server (memory store, 2
/// workers), 10,000 messages published, then per iteration a new client
/// joins with `since` offset 0 and reads all 10,000.
fn recovery(c: &mut Criterion) {
    const MISSED: u64 = 10_000;
    let mut cfg = RoomServerConfig::default();
    cfg.listen = "127.0.0.1:0".parse().expect("address");
    cfg.workers = 2;
    cfg.auth.hs256_secret = Some("history bench secret, long enough".into());
    cfg.rate_limit.messages_per_sec = 0;
    cfg.history.size = MISSED as usize;
    let keys = Keys::hs256(b"history bench secret, long enough", &cfg.auth);
    let server = RoomServer::bind(
        cfg.clone(),
        Keys::hs256(b"history bench secret, long enough", &cfg.auth),
    )
    .expect("bind");
    let shared = server.shared().clone();
    let addr = server.local_addr();
    let handle = server.handle();
    let running = server.start().expect("start");
    let from = Directory::detached("bench", "Bench");
    let data = r#"{"text":"hello, this is a chat message of a typical length"}"#;
    let mut epoch = String::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    for _ in 0..MISSED {
        let pos = publish_message(
            &shared.history,
            Origin::Handle(&handle),
            "bench",
            &from,
            Data::Raw(data),
            now_ms,
        )
        .expect("publish");
        epoch = pos.epoch.to_string();
    }
    let token = keys
        .mint(&Claims {
            sub: "reader".into(),
            exp: Some(edgews::rooms::auth::unix_now() + 3600),
            ..Claims::default()
        })
        .expect("mint");
    let join = serde_json::json!({"type": "join", "room": "bench", "since": {"epoch": epoch, "offset": 0}})
        .to_string();
    let mut group = c.benchmark_group("history_recovery");
    group.sample_size(10);
    group.throughput(Throughput::Elements(MISSED));
    group.bench_function("10000_missed", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let stream = TcpStream::connect(addr).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let (mut ws, _) =
                    tungstenite::client(format!("ws://{addr}/ws?token={token}"), stream)
                        .expect("upgrade");
                let _welcome = ws.read().expect("welcome");
                let start = Instant::now();
                ws.send(Message::text(join.clone())).expect("send");
                let mut got = 0;
                loop {
                    let m = ws.read().expect("read");
                    if let Message::Text(t) = m {
                        if t.as_str().starts_with(r#"{"type":"message""#) {
                            got += 1;
                            if got == MISSED {
                                break;
                            }
                        } else {
                            assert!(t.as_str().contains(r#""recovered":true"#), "{t}");
                        }
                    }
                }
                total += start.elapsed();
                let _ = ws.close(None);
            }
            total
        })
    });
    group.finish();
    running.shutdown().expect("shutdown");
}

criterion_group!(benches, append, recovery);
criterion_main!(benches);
