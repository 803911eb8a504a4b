//! Room history and recovery over real sockets, on 2 workers
//! (docs/protocol.md, "History and recovery"): offsets and epochs on
//! messages, `history` paging, `join {since}` recovering exactly what was
//! missed under concurrent publishing on both workers, and the refusals
//! (`epoch_changed`, `too_old`, `history_disabled`), and recovery across a
//! restart with the file store.

mod common;
mod rooms_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgews::rooms::auth::Keys;
use edgews::rooms::history::StoreKind;
use edgews::rooms::server::RoomServer;
use edgews::rooms::RoomServerConfig;
use rooms_common::{config, Client, Rooms, SECRET};
use serde_json::{json, Value};

fn join_since(c: &mut Client, room: &str, epoch: &Value, offset: u64) -> Value {
    c.ack(json!({"type": "join", "room": room, "since": {"epoch": epoch, "offset": offset}}))
}

/// Sends `n` messages (with ids) and reads their acks; returns the offsets.
fn say_n(c: &mut Client, room: &str, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let a = c.ack(json!({"type": "message", "room": room, "data": {"i": i}}));
            a["offset"].as_u64().expect("ack offset")
        })
        .collect()
}

#[test]
fn messages_carry_offset_and_epoch_and_history_pages_in_order() {
    let rooms = Rooms::start(config());
    let mut a = rooms.user("alice");
    let j = a.ack(json!({"type": "join", "room": "r"}));
    let epoch = j["epoch"].clone();
    assert!(epoch.is_string(), "{j}");
    assert_eq!(j["offset"], 0, "a new room: {j}");
    let offsets = say_n(&mut a, "r", 5);
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
    for want in 1..=5u64 {
        let m = a.recv_type("message");
        assert_eq!(
            (m["offset"].as_u64(), &m["epoch"]),
            (Some(want), &epoch),
            "{m}"
        );
    }
    // Pages of 2 from the start, then from a cursor.
    let mut seen = Vec::new();
    let mut since = Value::Null;
    for _ in 0..10 {
        let p = a.ack(json!({"type": "history", "room": "r", "since": since, "limit": 2}));
        assert_eq!(p["epoch"], epoch, "{p}");
        assert_eq!(p["offset"], 5, "{p}");
        for m in p["messages"].as_array().expect("messages") {
            assert_eq!(m["type"], "message", "{m}");
            seen.push(m["offset"].as_u64().unwrap());
        }
        if p["next"].is_null() {
            break;
        }
        since = p["next"].clone();
    }
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    // Members only.
    let mut b = rooms.user("bob");
    b.error(json!({"type": "history", "room": "r"}), "not_in_room");
    // Strict parsing of the new fields.
    a.error(
        json!({"type": "history", "room": "r", "since": -1}),
        "bad_request",
    );
    a.error(
        json!({"type": "join", "room": "x", "since": {"epoch": "e", "offset": 1, "x": 1}}),
        "bad_request",
    );
    a.error(
        json!({"type": "join", "room": "x", "since": {"offset": 1}}),
        "bad_request",
    );
}

#[test]
fn refusals_say_why_and_never_leave_a_silent_gap() {
    let mut cfg = config();
    cfg.history.size = 3;
    let rooms = Rooms::start(cfg);
    let mut a = rooms.user("alice");
    let j = a.ack(json!({"type": "join", "room": "r"}));
    let epoch = j["epoch"].clone();
    say_n(&mut a, "r", 10);
    let mut b = rooms.user("bob");
    // Missed 2..10, only 8..10 kept: too old.
    let r = join_since(&mut b, "r", &epoch, 1);
    assert_eq!(
        (r["recovered"].as_bool(), r["reason"].as_str()),
        (Some(false), Some("too_old")),
        "{r}"
    );
    assert_eq!(r["offset"], 10, "the ack still gives the position: {r}");
    b.ack(json!({"type": "leave", "room": "r"}));
    // Missed 8..10: all kept.
    let r = join_since(&mut b, "r", &epoch, 7);
    assert_eq!(r["recovered"], true, "{r}");
    for want in 8..=10u64 {
        let m = b.recv();
        assert_eq!(
            (m["type"].as_str(), m["offset"].as_u64()),
            (Some("message"), Some(want)),
            "{m}"
        );
    }
    b.ack(json!({"type": "leave", "room": "r"}));
    // Another epoch (a restart of the memory store, another server).
    let r = join_since(&mut b, "r", &json!("not-this-epoch"), 9);
    assert_eq!(r["reason"], "epoch_changed", "{r}");
    b.ack(json!({"type": "leave", "room": "r"}));
    // An offset ahead of the room cannot be from this history either.
    let r = join_since(&mut b, "r", &epoch, 99);
    assert_eq!(r["reason"], "epoch_changed", "{r}");
    b.ack(json!({"type": "leave", "room": "r"}));
    // Nothing missed: recovered, nothing follows.
    let r = join_since(&mut b, "r", &epoch, 10);
    assert_eq!(
        (r["recovered"].as_bool(), r["missed"].as_u64()),
        (Some(true), Some(0)),
        "{r}"
    );
    b.assert_quiet();
    drop(rooms);

    // History disabled: offsets still count, recovery is refused.
    let mut cfg = config();
    cfg.history.size = 0;
    let rooms = Rooms::start(cfg);
    let mut a = rooms.user("alice");
    let epoch = a.ack(json!({"type": "join", "room": "r"}))["epoch"].clone();
    assert_eq!(say_n(&mut a, "r", 2), [1, 2]);
    let mut b = rooms.user("bob");
    let r = join_since(&mut b, "r", &epoch, 1);
    assert_eq!(r["reason"], "history_disabled", "{r}");
    let p = a.ack(json!({"type": "history", "room": "r"}));
    assert_eq!(p["messages"], json!([]), "{p}");
}

#[test]
fn a_restarted_memory_store_changes_the_epoch() {
    let rooms = Rooms::start(config());
    let mut a = rooms.user("alice");
    let epoch = a.ack(json!({"type": "join", "room": "r"}))["epoch"].clone();
    say_n(&mut a, "r", 3);
    drop(a);
    drop(rooms);
    let rooms = Rooms::start(config());
    let mut a = rooms.user("alice");
    let r = join_since(&mut a, "r", &epoch, 3);
    assert_eq!(
        (r["recovered"].as_bool(), r["reason"].as_str()),
        (Some(false), Some("epoch_changed")),
        "{r}"
    );
    assert_ne!(r["epoch"], epoch);
}

/// A room server with the file store, started in this process; closed
/// (store included) by `stop`.
fn file_server(path: &std::path::Path) -> (RoomServer, RoomServerConfig) {
    let mut cfg = config();
    cfg.history.store = StoreKind::File;
    cfg.history.path = path.to_owned();
    let server =
        RoomServer::bind(cfg.clone(), Keys::hs256(SECRET.as_bytes(), &cfg.auth)).expect("bind");
    (server, cfg)
}

#[test]
fn the_file_store_recovers_across_a_restart() {
    let path =
        std::env::temp_dir().join(format!("edgews-rooms-history-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (server, _) = file_server(&path);
    let shared = server.shared().clone();
    let addr = server.local_addr();
    let running = server.start().expect("start");
    let keys = Keys::hs256(SECRET.as_bytes(), &config().auth);
    let rooms = Rooms::attach(addr, keys);
    let mut a = rooms.user("alice");
    let epoch = a.ack(json!({"type": "join", "room": "r"}))["epoch"].clone();
    say_n(&mut a, "r", 5);
    drop(a);
    running.shutdown().expect("shutdown");
    shared.history.close().expect("close the store");
    drop(shared);

    let (server, _) = file_server(&path);
    let shared = server.shared().clone();
    let rooms = Rooms::attach(
        server.local_addr(),
        Keys::hs256(SECRET.as_bytes(), &config().auth),
    );
    let running = server.start().expect("start");
    let mut b = rooms.user("bob");
    let r = join_since(&mut b, "r", &epoch, 2);
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(r["epoch"], epoch, "a clean restart keeps the epoch");
    for want in 3..=5u64 {
        let m = b.recv();
        assert_eq!(m["offset"].as_u64(), Some(want), "{m}");
    }
    assert_eq!(
        say_n(&mut b, "r", 1),
        [6],
        "offsets go on after the restart"
    );
    drop(b);
    running.shutdown().expect("shutdown");
    shared.history.close().expect("close the store");
    let _ = std::fs::remove_file(&path);
}

/// Publishers on both workers; a subscriber drops mid-stream 20 times
/// and rejoins with `since` (on whichever worker it lands); the union of
/// what it got must be every offset exactly once, in order.
#[test]
fn recovery_is_exact_under_concurrent_publishing_on_both_workers() {
    const PER_PUBLISHER: usize = 5_000;
    const DROPS: usize = 20;
    let mut cfg = config();
    cfg.history.size = 2 * PER_PUBLISHER;
    let rooms = Rooms::start(cfg);
    let mut sub = rooms.user("sub");
    let j = sub.ack(json!({"type": "join", "room": "live"}));
    let epoch = j["epoch"].clone();
    let start = j["offset"].as_u64().unwrap();
    let mut publishers = rooms.user_on_both_workers("pub");
    // One connection per worker publishes (the others are dropped).
    let on1 = publishers
        .iter()
        .position(|c| c.1 == 1)
        .expect("one on worker 1");
    let p1 = publishers.swap_remove(on1);
    let on0 = publishers
        .iter()
        .position(|c| c.1 == 0)
        .expect("one on worker 0");
    let p0 = publishers.swap_remove(on0);
    drop(publishers);
    let go = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (mut p, _) in [p0, p1] {
        let go = go.clone();
        threads.push(std::thread::spawn(move || {
            p.join("live");
            while !go.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            for batch in 0..PER_PUBLISHER / 250 {
                for i in 0..250 {
                    p.send(json!({"type": "message", "room": "live", "data": batch * 250 + i, "exclude_self": true}));
                }
                p.fence();
            }
        }));
    }
    let total = (threads.len() * PER_PUBLISHER) as u64;
    let last = start + total;
    go.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got: Vec<u64> = Vec::new();
    let mut sessions = 0;
    let mut per_session = 100;
    loop {
        // Read up to `per_session` messages, or to the end.
        let mut n = 0;
        while n < per_session && got.last().copied().unwrap_or(start) < last {
            assert!(
                Instant::now() < deadline,
                "stuck after {} messages",
                got.len()
            );
            let m = sub.recv();
            if m["type"] != "message" {
                continue;
            }
            assert_eq!(m["epoch"], epoch, "{m}");
            got.push(m["offset"].as_u64().expect("offset"));
            n += 1;
        }
        if got.last().copied().unwrap_or(start) >= last || sessions == DROPS {
            break;
        }
        // Drop mid-stream (no close handshake) and come back with `since`.
        drop(sub);
        sessions += 1;
        sub = rooms.user("sub");
        let seen = got.last().copied().unwrap_or(start);
        let r = join_since(&mut sub, "live", &epoch, seen);
        assert_eq!(r["recovered"], true, "rejoin {sessions}: {r}");
        per_session = 100 + 20 * sessions;
    }
    // The last session reads to the end.
    while got.last().copied().unwrap_or(start) < last {
        assert!(
            Instant::now() < deadline,
            "stuck after {} messages",
            got.len()
        );
        let m = sub.recv();
        if m["type"] == "message" {
            got.push(m["offset"].as_u64().expect("offset"));
        }
    }
    for t in threads {
        t.join().expect("publisher");
    }
    assert_eq!(
        sessions, DROPS,
        "the stream ended before the last drop: make it longer"
    );
    let expected: Vec<u64> = (start + 1..=last).collect();
    if got != expected {
        let unique: std::collections::BTreeSet<u64> = got.iter().copied().collect();
        let missing = expected.iter().filter(|o| !unique.contains(o)).count();
        let repeated = got.len() - unique.len();
        let disorder = got.windows(2).filter(|w| w[1] <= w[0]).count();
        panic!(
            "{} offsets received, {} expected: {missing} missing, {repeated} repeated, \
             {disorder} out of order (first {:?}, last {:?})",
            got.len(),
            expected.len(),
            got.first(),
            got.last()
        );
    }
}
