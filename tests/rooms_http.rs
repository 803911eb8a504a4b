//! The room server's HTTP endpoints on the WebSocket port (docs/protocol.md,
//! "HTTP endpoints"): `/api/websocket/status`, `/healthz` and `/metrics` with
//! the room server's own counters.

mod common;
mod rooms_common;

use std::time::Duration;

use common::wait_until;
use edgews::rooms::auth::unix_now;
use rooms_common::{config, upgrade, Rooms};
use serde_json::{json, Value};

#[test]
fn status_counts_connections_users_rooms_and_workers() {
    let rooms = Rooms::start(config());
    // `connections` is the engine's count of open connections: the
    // WebSockets, and the HTTP request being answered (this one) at most.
    let s = rooms.status();
    assert!(s["connections"].as_u64() <= Some(1), "{s}");
    assert_eq!(s["users_online"], 0, "{s}");
    assert_eq!(s["rooms"], 0, "{s}");
    assert!(s["uptime_seconds"].as_f64().expect("uptime_seconds") >= 0.0);
    assert_eq!(s["workers"].as_array().expect("workers").len(), 2, "{s}");

    let mut alice1 = rooms.user("alice");
    let mut alice2 = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let anonymous = rooms.open("/ws", &[]).expect("upgrade without a token");
    alice1.join("r1");
    alice2.join("r1");
    bob.join("r1");
    bob.join("r2");
    let s = rooms.status();
    let conns = s["connections"].as_u64().expect("connections");
    assert!(conns == 4 || conns == 5, "4 WebSockets: {s}");
    assert_eq!(s["users_online"], 2, "{s}");
    assert_eq!(s["rooms"], 2, "{s}");
    let per_worker: u64 = s["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["connections"].as_u64().expect("workers[].connections"))
        .sum();
    assert_eq!(per_worker, conns, "{s}");

    // Everyone leaves: back to zero.
    drop(anonymous);
    alice1.close();
    alice2.close();
    bob.close();
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(3), || {
            last = rooms.status();
            last["connections"].as_u64() <= Some(1)
                && last["users_online"] == 0
                && last["rooms"] == 0
        }),
        "{last}"
    );
}

#[test]
fn healthz_and_the_engine_status_are_served() {
    let rooms = Rooms::start(config());
    let (status, _, body) = rooms.get("/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, head, body) = rooms.get("/status");
    assert_eq!(status, 200, "{head}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["workers"].as_array().map(Vec::len), Some(2));
    // Unknown paths are 404, not an upgrade.
    assert_eq!(rooms.get("/nope").0, 404);
}

/// The value of the first metric line whose name contains `name` and whose
/// text contains every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let metric = l.split(['{', ' ']).next().unwrap_or_default();
            metric.contains(name) && labels.iter().all(|x| l.contains(x))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_have_the_room_servers_counters() {
    let mut cfg = config();
    cfg.rate_limit.messages_per_sec = 1;
    cfg.rate_limit.burst = 3;
    let rooms = Rooms::start(cfg);
    // Auth failures: invalid and expired tokens at the upgrade, and an auth timeout.
    let expired = rooms.token_exp("alice", "Alice", Some(unix_now() - 60));
    assert_eq!(upgrade(rooms.addr, "/ws?token=garbage", "").0, 401);
    assert_eq!(
        upgrade(rooms.addr, &format!("/ws?token={expired}"), "").0,
        401
    );
    let mut late = rooms.open("/ws", &[]).expect("upgrade");
    assert_eq!(late.expect_close(), 4001);
    // Messages by type, and rate limiting.
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let mut carol = rooms.user("carol");
    alice.join("big-room");
    bob.join("big-room");
    carol.join("big-room");
    alice.join("small-room");
    alice.ack(json!({"type": "message", "room": "big-room", "data": 1}));
    let mut limited = 0;
    for _ in 0..5 {
        let r = alice.request(json!({"type": "message", "room": "big-room", "data": 2}));
        if r["code"] == "rate_limited" {
            limited += 1;
        }
    }
    assert!(limited > 0, "the rate limit was not hit");

    let text = rooms.metrics();
    let want = |name: &str, labels: &[&str]| {
        metric(&text, name, labels)
            .unwrap_or_else(|| panic!("no metric like {name} {labels:?} in:\n{text}"))
    };
    assert!(want("auth_failures", &["invalid"]) >= 1.0);
    assert!(want("auth_failures", &["expired"]) >= 1.0);
    assert!(want("auth_failures", &["timeout"]) >= 1.0);
    assert!(want("errors", &["code=\"rate_limited\""]) >= limited as f64);
    assert!(want("requests", &["type=\"join\""]) >= 4.0);
    assert!(want("requests", &["type=\"message\""]) >= 2.0);
    assert_eq!(want("users_online", &[]), 3.0);
    assert_eq!(want("members", &["room=\"big-room\""]), 3.0);
    assert_eq!(want("members", &["room=\"small-room\""]), 1.0);
    // The engine's own metrics are still there.
    assert!(text.contains("edgews_"), "{text}");
}
