//! Every limit of the room server hit over real sockets (docs/protocol.md,
//! "Limits and their defaults"): per-IP connections, allowed origins, rooms
//! per connection, members per room, the message rate (then 4008 for abuse)
//! and the message size (1009). Each time, other connections are unaffected.

mod common;
mod rooms_common;

use std::time::{Duration, Instant};

use common::wait_until;
use rooms_common::{config, upgrade, Rooms};
use serde_json::{json, Value};
use tungstenite::Message;

#[test]
fn connections_per_ip_are_limited_at_accept() {
    let mut cfg = config();
    cfg.max_connections_per_ip = 3;
    let rooms = Rooms::start(cfg);
    let mut open: Vec<_> = (0..3).map(|i| rooms.user(&format!("u{i}"))).collect();
    // The fourth from 127.0.0.1 is cut off before the upgrade.
    let token = rooms.token("u3", "U3");
    match rooms.open(&format!("/ws?token={token}"), &[]) {
        Ok(_) => panic!("a fourth connection from one address was accepted"),
        Err(e) => assert!(
            matches!(
                *e,
                tungstenite::Error::Io(_)
                    | tungstenite::Error::Protocol(_)
                    | tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
            ),
            "unexpected error: {e}"
        ),
    }
    // The three are fine.
    for c in &mut open {
        c.assert_quiet();
    }
    // One closes: there is room for another.
    open.pop().expect("one").close();
    assert!(
        wait_until(Duration::from_secs(3), || rooms
            .open(&format!("/ws?token={token}"), &[])
            .is_ok()),
        "no new connection after one closed"
    );
}

#[test]
fn a_mismatching_origin_gets_403() {
    let mut cfg = config();
    cfg.allowed_origins = vec!["https://chat.example".into()];
    let rooms = Rooms::start(cfg);
    let token = rooms.token("alice", "Alice");
    let path = format!("/ws?token={token}");
    for origin in [
        "https://evil.example",
        "http://chat.example",
        "https://chat.example:8443",
        "null",
    ] {
        let (status, head, body) = upgrade(rooms.addr, &path, &format!("Origin: {origin}\r\n"));
        assert_eq!(status, 403, "Origin {origin}: {head}");
        let v: Value = serde_json::from_str(&body).expect("a JSON body");
        assert_eq!(v["code"], "forbidden", "{v}");
    }
    // The allowed origin, and no Origin at all (not a browser), open.
    let mut c = rooms
        .open(&path, &[("Origin", "https://chat.example")])
        .expect("allowed origin");
    assert_eq!(c.recv()["type"], "welcome");
    let mut c = rooms.open(&path, &[]).expect("no origin");
    assert_eq!(c.recv()["type"], "welcome");
}

#[test]
fn rooms_per_connection_are_limited() {
    let mut cfg = config();
    cfg.max_rooms_per_connection = 3;
    let rooms = Rooms::start(cfg);
    let mut a = rooms.user("alice");
    let limits = &a.welcome.as_ref().expect("welcome")["limits"];
    assert_eq!(
        limits["max_rooms_per_connection"], 3,
        "welcome limits: {limits}"
    );
    for r in ["r1", "r2", "r3"] {
        a.join(r);
    }
    a.error(json!({"type": "join", "room": "r4"}), "too_many_rooms");
    // Still in the three, not in r4.
    a.error(json!({"type": "who", "room": "r4"}), "not_in_room");
    a.ack(json!({"type": "who", "room": "r3"}));
    // The limit is per connection: alice's second connection may join r4.
    let mut a2 = rooms.user("alice");
    a2.join("r4");
    // Leaving one makes room.
    a.ack(json!({"type": "leave", "room": "r1"}));
    assert_eq!(a.join("r4"), 1);
}

#[test]
fn members_per_room_are_limited_by_distinct_users() {
    let mut cfg = config();
    cfg.max_members_per_room = 2;
    let rooms = Rooms::start(cfg);
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let mut carol = rooms.user("carol");
    alice.join("r");
    bob.join("r");
    carol.error(json!({"type": "join", "room": "r"}), "room_full");
    // Another connection of a member is not another member.
    let mut alice2 = rooms.user("alice");
    assert_eq!(alice2.join("r"), 2);
    // A full room is not announced as joined.
    let fence = alice2.ack(json!({"type": "message", "room": "r", "data": "fence"}));
    assert_eq!(fence["type"], "ack");
    let m = bob.recv_type("message");
    assert_eq!(m["data"], "fence");
    let before = bob.fence();
    assert!(
        before.iter().all(|m| m["type"] != "user_joined"),
        "{before:?}"
    );
    // Bob leaves: carol fits.
    bob.ack(json!({"type": "leave", "room": "r"}));
    assert_eq!(carol.join("r"), 2);
    let j = alice.recv_match("carol's user_joined", |m| {
        m["type"] == "user_joined" && m["user"]["id"] == "carol"
    });
    assert_eq!(j["members"], 2, "{j}");
}

/// Sends `n` room messages with ids at once and sorts the replies.
fn burst(c: &mut rooms_common::Client, n: usize) -> (usize, usize) {
    let ids: Vec<u64> = (0..n).map(|_| c.fresh_id()).collect();
    for id in &ids {
        c.send(json!({"type": "message", "id": id, "room": "r", "data": "spam"}));
    }
    let (mut acks, mut limited) = (0, 0);
    for id in &ids {
        let r = c.reply(&json!(id));
        match (r["type"].as_str(), r["code"].as_str()) {
            (Some("ack"), _) => acks += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            _ => panic!("unexpected reply {r}"),
        }
    }
    (acks, limited)
}

#[test]
fn the_message_rate_is_limited() {
    let mut cfg = config();
    cfg.rate_limit.messages_per_sec = 5;
    cfg.rate_limit.burst = 5;
    cfg.rate_limit.abuse_strikes = 1000;
    let rooms = Rooms::start(cfg);
    let mut a = rooms.user("alice");
    a.join("r");
    let (acks, limited) = burst(&mut a, 20);
    assert!(
        (3..=10).contains(&acks) && limited >= 10,
        "burst 5 at 5/s: {acks} acked, {limited} rate limited"
    );
    // The bucket refills.
    std::thread::sleep(Duration::from_millis(1200));
    let (acks, _) = burst(&mut a, 3);
    assert_eq!(acks, 3, "after a second, 5 more are allowed");
    // Another connection of the same user has its own bucket.
    let mut a2 = rooms.user("alice");
    a2.join("r");
    let (acks, _) = burst(&mut a2, 4);
    assert_eq!(acks, 4);
}

#[test]
fn rate_limit_abuse_closes_4008_and_others_stay() {
    let mut cfg = config();
    cfg.rate_limit.messages_per_sec = 5;
    cfg.rate_limit.burst = 5;
    cfg.rate_limit.abuse_strikes = 10;
    cfg.rate_limit.abuse_window_secs = 10;
    let rooms = Rooms::start(cfg);
    let mut bob = rooms.user("bob");
    bob.join("r");
    let mut a = rooms.user("alice");
    a.join("r");
    for _ in 0..200 {
        // The server may close before all are written; stop at the first failure.
        let msg = json!({"type": "message", "room": "r", "data": "spam"}).to_string();
        if a.ws.send(tungstenite::Message::text(msg)).is_err() {
            break;
        }
    }
    assert_eq!(a.expect_close(), 4008);
    // Bob got at most the burst of alice's messages, then her leaving.
    let l = bob.recv_type("user_left");
    assert_eq!(l["user"]["id"], "alice", "{l}");
    let got = bob.fence();
    let spam = got.iter().filter(|m| m["data"] == "spam").count();
    assert!(spam <= 10, "{spam} messages got through the limit");
    let r = bob.ack(json!({"type": "who", "room": "r"}));
    assert_eq!(r["count"], 1, "{r}");
}

#[test]
fn a_message_over_max_message_bytes_closes_1009_and_others_stay() {
    let mut cfg = config();
    cfg.max_message_bytes = 4096;
    let rooms = Rooms::start(cfg);
    let mut bob = rooms.user("bob");
    bob.join("r");
    let mut a = rooms.user("alice");
    a.join("r");
    // Just under the limit is fine.
    let data = "x".repeat(3900);
    a.ack(json!({"type": "message", "room": "r", "data": data}));
    assert_eq!(
        bob.recv_type("message")["data"].as_str().map(str::len),
        Some(3900)
    );
    // Over it: 1009.
    a.send(json!({"type": "message", "room": "r", "data": "x".repeat(5000)}));
    assert_eq!(a.expect_close(), 1009);
    let l = bob.recv_type("user_left");
    assert_eq!(l["user"]["id"], "alice", "{l}");
    let got: Vec<Value> = bob.fence();
    assert!(got.iter().all(|m| m["type"] != "message"), "{got:?}");
}

#[test]
fn silent_connections_are_pinged_then_closed_1001_and_live_ones_stay() {
    let mut cfg = config();
    cfg.ping_interval_secs = 1;
    cfg.idle_timeout_secs = 2;
    let rooms = Rooms::start(cfg);
    let mut live = rooms.user("alice");
    // Bob never reads, so never answers a ping.
    let mut silent = rooms.user("bob");
    // Alice reads (tungstenite answers pings) and sends nothing for 3.5 s.
    let started = Instant::now();
    live.ws
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        match live.ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("the live connection failed: {e}"),
        }
        let _ = live.ws.flush();
    }
    assert!(pings >= 1, "the server never pinged");
    live.ws
        .get_mut()
        .set_read_timeout(Some(rooms_common::READ_TIMEOUT))
        .expect("timeout");
    live.assert_quiet();
    // Bob: pinged, then closed 1001.
    let mut saw_ping = false;
    let code = loop {
        match silent.ws.read() {
            Ok(Message::Ping(_)) => saw_ping = true,
            Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert!(saw_ping, "closed without a ping first");
    assert_eq!(code, Some(1001));
}

#[test]
fn shutdown_closes_every_connection_1001() {
    let mut rooms = Rooms::start(config());
    let mut a = rooms.user("alice");
    let mut b = rooms.user("bob");
    a.join("r");
    b.join("r");
    let stopping = rooms.shutdown_in_background();
    assert_eq!(a.expect_close(), 1001);
    assert_eq!(b.expect_close(), 1001);
    stopping.join().expect("shutdown finished");
}

/// Floods with `send` until the server closes; returns the close code.
fn flood(
    c: &mut rooms_common::Client,
    mut send: impl FnMut(&mut rooms_common::Client) -> bool,
) -> u16 {
    for _ in 0..500 {
        if !send(c) {
            break;
        }
    }
    c.expect_close()
}

fn flood_config() -> edgews::rooms::RoomServerConfig {
    let mut cfg = config();
    cfg.rate_limit.messages_per_sec = 5;
    cfg.rate_limit.burst = 5;
    cfg.rate_limit.abuse_strikes = 10;
    cfg
}

#[test]
fn a_flood_of_invalid_json_is_rate_limited_too() {
    let rooms = Rooms::start(flood_config());
    let mut a = rooms.user("alice");
    let code = flood(&mut a, |c| c.ws.send(Message::text("{bad json")).is_ok());
    assert_eq!(code, 4008);
    rooms.user("carol").assert_quiet();
}

#[test]
fn a_flood_of_binary_frames_is_rate_limited_too() {
    let rooms = Rooms::start(flood_config());
    let mut b = rooms.user("bob");
    let code = flood(&mut b, |c| c.ws.send(Message::binary(vec![1u8])).is_ok());
    assert_eq!(code, 4008);
    rooms.user("carol").assert_quiet();
}

#[test]
fn a_client_that_does_not_read_costs_bounded_memory() {
    let mut cfg = config();
    cfg.backpressure_bytes = 256 << 10;
    cfg.max_queued_bytes = 1 << 20;
    let rooms = Rooms::start(cfg);
    let mut alice = rooms.user("alice");
    let mut slow = rooms.user("bob");
    slow.ws
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    alice.join("r");
    slow.join("r");
    // 40 MB for bob, through the room and privately, while he reads nothing.
    let chunk = "x".repeat(50_000);
    let mut sent = 0usize;
    for i in 0..400 {
        let req = if i % 2 == 0 {
            json!({"type": "message", "room": "r", "data": chunk, "exclude_self": true})
        } else {
            json!({"type": "private", "to": "bob", "data": chunk})
        };
        let r = alice.request(req);
        if r["type"] == "error" {
            // Bob was closed for his queue: he is offline now.
            assert_eq!(r["code"], "user_offline", "{r}");
            break;
        }
        sent += chunk.len();
    }
    // Bob got a bounded part of it: some was dropped, or he was closed 1008.
    let mut received = 0usize;
    let mut close = None;
    loop {
        match slow.ws.read() {
            Ok(Message::Text(t)) => received += t.len(),
            Ok(Message::Close(f)) => {
                close = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break, // quiet for 500 ms, or gone
        }
    }
    assert!(
        close == Some(1008) || received < sent / 2,
        "bob received {received} of {sent} bytes, close {close:?}"
    );
    // Alice is fine.
    alice.fence();
    alice.assert_quiet();
}
