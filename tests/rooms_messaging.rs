//! Room server messaging over real sockets, on 2 workers (docs/protocol.md,
//! "Client requests" and "Server events"): join/leave events and distinct-user
//! counts, room messages, private messages and presence across workers, `who`
//! paging, typing, ping, and the request/ack/error envelope.

mod common;
mod rooms_common;

use std::collections::HashSet;
use std::time::Duration;

use common::wait_until;
use rooms_common::{config, now_ms, Client, Rooms};
use serde_json::{json, Value};

fn user(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name})
}

/// Sends a room message from `c` and returns its `data` for matching.
fn say(c: &mut Client, room: &str, data: Value) -> Value {
    c.ack(json!({"type": "message", "room": room, "data": data.clone()}));
    data
}

/// The next message `c` gets must be the room message carrying `data`.
fn next_is_message(c: &mut Client, data: &Value) {
    let m = c.recv();
    assert_eq!(m["type"], "message", "expected the fence message, got {m}");
    assert_eq!(&m["data"], data, "{m}");
}

#[test]
fn join_and_leave_events_count_distinct_users() {
    let rooms = Rooms::start(config());
    let mut bob = rooms.user("bob");
    let mut alice1 = rooms.user("alice");
    let mut alice2 = rooms.user("alice");
    assert_eq!(bob.join("r"), 1);

    // Alice's first connection: bob sees her join, 2 users.
    assert_eq!(alice1.join("r"), 2);
    let j = bob.recv();
    assert_eq!(j["type"], "user_joined", "{j}");
    assert_eq!(j["room"], "r");
    assert_eq!(j["user"], user("alice", "Alice"));
    assert_eq!(j["members"], 2);
    // The joiner does not get its own user_joined.
    assert!(alice1.fence().is_empty());

    // Her second connection: still 2 users, no event for anyone. Alice2's
    // next message, from the same connection, fences the event that must
    // not exist.
    assert_eq!(alice2.join("r"), 2);
    let fence = say(&mut alice2, "r", json!("after alice2 joined"));
    next_is_message(&mut bob, &fence);
    next_is_message(&mut alice1, &fence);
    next_is_message(&mut alice2, &fence);
    let who = bob.ack(json!({"type": "who", "room": "r"}));
    assert_eq!(who["count"], 2, "{who}");

    // Her first connection leaves: still in the room through the second.
    let left = alice1.ack(json!({"type": "leave", "room": "r"}));
    assert_eq!(left["room"], "r", "{left}");
    assert_eq!(left["members"], 2, "{left}");
    // Fence from alice1: a join of another room bob is in.
    bob.join("r2");
    assert_eq!(alice1.join("r2"), 2);
    let j = bob.recv();
    assert_eq!(
        j["type"], "user_joined",
        "no user_left expected before: {j}"
    );
    assert_eq!(j["room"], "r2", "{j}");

    // Her last connection in r leaves: now bob sees it.
    let left = alice2.ack(json!({"type": "leave", "room": "r"}));
    assert_eq!(left["members"], 1, "{left}");
    let l = bob.recv();
    assert_eq!(l["type"], "user_left", "{l}");
    assert_eq!(l["room"], "r");
    assert_eq!(l["user"], user("alice", "Alice"));
    assert_eq!(l["members"], 1);
    let who = bob.ack(json!({"type": "who", "room": "r"}));
    assert_eq!(who["count"], 1, "{who}");

    // Leaving a room one is not in.
    alice2.error(json!({"type": "leave", "room": "r"}), "not_in_room");
    // Joining twice is acked again, without an event (docs: lead to check).
    assert_eq!(bob.join("r2"), 2);
    assert!(alice1.fence().is_empty());
}

#[test]
fn a_closing_connection_leaves_its_rooms() {
    let rooms = Rooms::start(config());
    let mut bob = rooms.user("bob");
    let mut a1 = rooms.user("alice");
    let mut alice2 = rooms.user("alice");
    bob.join("r");
    a1.join("r");
    a1.join("r3");
    alice2.join("r");
    assert_eq!(bob.recv_type("user_joined")["user"]["id"], "alice");
    // Alice's first connection closes cleanly: she is still in r.
    a1.close();
    // r3 (only a1 was in it) is gone once the server has handled the close.
    assert!(wait_until(Duration::from_secs(3), || rooms.status()
        ["rooms"]
        == 1));
    let fence = say(&mut alice2, "r", json!({"n": 1}));
    next_is_message(&mut bob, &fence);
    // Her second drops without a close handshake: she has left.
    drop(alice2);
    let l = bob.recv();
    assert_eq!(l["type"], "user_left", "{l}");
    assert_eq!(l["user"], user("alice", "Alice"));
    assert_eq!(l["members"], 1);
    // The room only she was in is gone; bob's room stays.
    assert!(wait_until(Duration::from_secs(3), || rooms.status()
        ["rooms"]
        == 1));
}

#[test]
fn room_messages_reach_every_member_with_data_as_sent() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let mut carol = rooms.user("carol");
    let mut outsider = rooms.user("dave");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.join("r");
    }
    outsider.join("elsewhere");
    // Drain the join events.
    alice.fence();
    bob.fence();
    for payload in [
        json!({"text": "hi", "nested": {"list": [1, 2.5, -3, null, true, "é\"\\"], "empty": {}}}),
        json!("plain string"),
        json!(42),
        json!([1, [2, [3]]]),
        json!(null),
        json!(18446744073709551615u64),
    ] {
        let before = now_ms();
        let ack = alice.ack(json!({"type": "message", "room": "r", "data": payload.clone()}));
        for c in [&mut alice, &mut bob, &mut carol] {
            let m = c.recv_type("message");
            assert_eq!(m["room"], "r", "{m}");
            assert_eq!(m["from"], user("alice", "Alice"), "{m}");
            assert_eq!(m["data"], payload, "{m}");
            let ts = m["ts"].as_u64().expect("ts");
            assert!(ts + 1000 >= before && ts <= now_ms() + 1000, "ts {ts}");
            if let Some(ack_ts) = ack["ts"].as_u64() {
                assert_eq!(ack_ts, ts, "the ack's ts is the event's");
            }
        }
    }
    // Nothing else anywhere; the outsider got nothing.
    let fence = say(&mut alice, "r", json!("end"));
    for c in [&mut alice, &mut bob, &mut carol] {
        next_is_message(c, &fence);
    }
    outsider.assert_quiet();
    // Not a member: not_in_room.
    outsider.error(
        json!({"type": "message", "room": "r", "data": 1}),
        "not_in_room",
    );
}

#[test]
fn exclude_self_skips_only_the_sender() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut alice2 = rooms.user("alice");
    let mut bob = rooms.user("bob");
    alice.join("r");
    alice2.join("r");
    bob.join("r");
    alice.ack(json!({"type": "message", "room": "r", "data": "x", "exclude_self": true}));
    assert_eq!(bob.recv_type("message")["data"], "x");
    // The sender's other connection is not the sender.
    assert_eq!(alice2.recv_type("message")["data"], "x");
    let got = alice.fence();
    assert!(
        got.iter().all(|m| m["type"] != "message"),
        "the sender got its own message: {got:?}"
    );
    alice.ack(json!({"type": "message", "room": "r", "data": "y", "exclude_self": false}));
    assert_eq!(alice.recv_type("message")["data"], "y");
    assert_eq!(bob.recv_type("message")["data"], "y");
}

#[test]
fn private_messages_reach_every_connection_on_every_worker() {
    let rooms = Rooms::start(config());
    let mut alices = rooms.user_on_both_workers("alice");
    let bobs = rooms.user_on_both_workers("bob");
    let mut bob_on = [None, None];
    for (c, w) in bobs {
        if bob_on[w].is_none() {
            bob_on[w] = Some(c);
        }
    }
    for (w, bob) in bob_on.iter_mut().enumerate() {
        let bob = bob.as_mut().expect("bob on each worker");
        let data = json!({"from_worker": w, "text": "psst"});
        let ack = bob.ack(json!({"type": "private", "to": "alice", "data": data.clone()}));
        assert_eq!(ack["to"], "alice", "{ack}");
        for (a, aw) in &mut alices {
            let p = a.recv();
            assert_eq!(p["type"], "private", "alice on worker {aw}: {p}");
            assert_eq!(p["from"], user("bob", "Bob"), "{p}");
            assert_eq!(p["data"], data, "{p}");
            assert!(p["ts"].is_u64(), "{p}");
        }
        // The sender's own connections get no copy.
        bob.assert_quiet();
    }
    let bob = bob_on[0].as_mut().expect("bob");
    bob.error(
        json!({"type": "private", "to": "nobody", "data": 1}),
        "user_offline",
    );
    // Once all of alice's connections are gone, she is offline.
    for (a, _) in alices {
        a.close();
    }
    let mut offline = false;
    assert!(
        wait_until(Duration::from_secs(3), || {
            let r = bob.request(json!({"type": "private", "to": "alice", "data": 1}));
            offline = r["code"] == "user_offline";
            offline
        }),
        "alice still online after closing every connection"
    );
}

#[test]
fn presence_reaches_the_users_rooms_across_workers() {
    let rooms = Rooms::start(config());
    let mut alices = rooms.user_on_both_workers("alice");
    let mut bobs = rooms.user_on_both_workers("bob");
    for (a, _) in &mut alices {
        a.join("p");
        a.join("q");
    }
    for (b, _) in &mut bobs {
        b.join("p");
        b.join("q");
    }
    // Drain the join events.
    for (a, _) in &mut alices {
        a.fence();
    }
    let (bob, bob_worker) = &mut bobs[0];
    let ack = bob.ack(json!({"type": "presence", "status": "away"}));
    assert_eq!(ack["status"], "away", "{ack}");
    for (a, w) in &mut alices {
        let mut got = Vec::new();
        for _ in 0..2 {
            let p = a.recv_type("presence");
            assert_eq!(p["user"], user("bob", "Bob"), "{p}");
            assert_eq!(p["status"], "away", "{p}");
            got.push(p["room"].as_str().expect("room").to_owned());
        }
        got.sort();
        assert_eq!(
            got,
            ["p", "q"],
            "alice on worker {w}, bob on {bob_worker}: one event per room"
        );
    }
    let who = alices[0].0.ack(json!({"type": "who", "room": "p"}));
    let members = who["members"].as_array().expect("members");
    let status = |id: &str| {
        members
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["status"].clone())
    };
    assert_eq!(status("bob"), Some(json!("away")), "{who}");
    assert_eq!(status("alice"), Some(json!("online")), "{who}");
    // Appear offline: still connected, shown as offline.
    bobs[1]
        .0
        .ack(json!({"type": "presence", "status": "offline"}));
    let p = alices[1].0.recv_type("presence");
    assert_eq!(p["status"], "offline", "{p}");
    let who = alices[1].0.ack(json!({"type": "who", "room": "q"}));
    let bob_entry = who["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == "bob")
        .cloned();
    assert_eq!(
        bob_entry.map(|m| m["status"].clone()),
        Some(json!("offline"))
    );
    for status in ["busy", "online"] {
        bobs[0].0.ack(json!({"type": "presence", "status": status}));
    }
    bobs[0].0.error(
        json!({"type": "presence", "status": "sleeping"}),
        "bad_request",
    );
}

#[test]
fn who_pages_a_large_room_without_duplicates() {
    const USERS: usize = 300;
    let mut cfg = config();
    cfg.who_max_limit = 250;
    let rooms = Rooms::start(cfg);
    let mut conns: Vec<Client> = (0..USERS)
        .map(|i| rooms.user(&format!("u{i:03}")))
        .collect();
    for c in &mut conns {
        c.join("big");
    }
    let observer = &mut conns[0];
    let mut seen = HashSet::new();
    let mut cursor = Value::Null;
    for page in 0.. {
        assert!(page < 10, "more than 10 pages of 100 for {USERS} users");
        let mut req = json!({"type": "who", "room": "big", "limit": 100});
        if !cursor.is_null() {
            req["cursor"] = cursor.clone();
        }
        let r = observer.ack(req);
        assert_eq!(r["room"], "big", "{r}");
        assert_eq!(r["count"], USERS, "{r}");
        let members = r["members"].as_array().expect("members");
        assert!(members.len() <= 100, "page of {}", members.len());
        for m in members {
            let id = m["id"].as_str().expect("id").to_owned();
            assert_eq!(m["name"], rooms_common::display(&id), "{m}");
            assert_eq!(m["status"], "online", "{m}");
            assert!(seen.insert(id.clone()), "{id} listed twice");
        }
        cursor = r["next"].clone();
        if cursor.is_null() {
            break;
        }
        assert!(cursor.is_string(), "next is a string or null: {r}");
    }
    let all: HashSet<String> = (0..USERS).map(|i| format!("u{i:03}")).collect();
    assert_eq!(seen, all);
    // Default page size 100; a limit above who_max_limit (250) is cut to it.
    let r = observer.ack(json!({"type": "who", "room": "big"}));
    assert_eq!(r["members"].as_array().expect("members").len(), 100);
    assert!(r["next"].is_string(), "{r}");
    let r = observer.ack(json!({"type": "who", "room": "big", "limit": 100_000}));
    assert_eq!(r["members"].as_array().expect("members").len(), 250);
    observer.error(
        json!({"type": "who", "room": "big", "limit": 0}),
        "bad_request",
    );
    // A room this connection is not in.
    observer.error(json!({"type": "who", "room": "nowhere"}), "not_in_room");
}

#[test]
fn typing_reaches_the_others_but_not_the_sender() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    alice.join("r");
    bob.join("r");
    alice.fence();
    alice.send(json!({"type": "typing", "room": "r"}));
    let t = bob.recv_type("typing");
    assert_eq!(t["room"], "r", "{t}");
    assert_eq!(t["user"], user("alice", "Alice"), "{t}");
    assert!(alice.fence().is_empty(), "the sender got something");
    bob.assert_quiet();
    alice.error(json!({"type": "typing", "room": "other"}), "not_in_room");
}

#[test]
fn ping_gets_a_pong_with_ts_and_the_id() {
    let rooms = Rooms::start(config());
    let mut c = rooms.user("alice");
    c.send(json!({"type": "ping"}));
    let p = c.recv();
    assert_eq!(p["type"], "pong", "{p}");
    assert!(p.get("id").is_none(), "{p}");
    assert!(p["ts"].as_u64().expect("ts").abs_diff(now_ms()) < 10_000);
    for id in [
        json!("abc"),
        json!(7),
        json!(0),
        json!(-5),
        json!(9_007_199_254_740_993u64),
    ] {
        c.send(json!({"type": "ping", "id": id.clone()}));
        let p = c.recv();
        assert_eq!(p["type"], "pong", "{p}");
        assert_eq!(p["id"], id, "the id comes back exactly as sent");
        assert!(p["ts"].is_u64(), "{p}");
    }
}

#[test]
fn a_request_with_an_id_gets_exactly_one_reply() {
    let rooms = Rooms::start(config());
    let mut c = rooms.user("alice");
    // String and integer ids, on acks and errors.
    c.send(json!({"type": "join", "id": "j-1", "room": "r"}));
    c.send(json!({"type": "join", "id": 12, "room": "r2"}));
    c.send(json!({"type": "leave", "id": "l-1", "room": "nowhere"}));
    c.send(json!({"type": "leave", "id": 13, "room": "nowhere"}));
    let got = c.fence();
    assert_eq!(got.len(), 4, "one reply per request: {got:?}");
    assert_eq!(got[0]["type"], "ack");
    assert_eq!(got[0]["id"], "j-1");
    assert_eq!(got[1]["type"], "ack");
    assert_eq!(got[1]["id"], 12);
    assert_eq!(got[2]["type"], "error");
    assert_eq!(got[2]["id"], "l-1");
    assert_eq!(got[2]["code"], "not_in_room");
    assert_eq!(got[3]["id"], 13);
    // Without an id: requests that return something (join, leave, who,
    // refresh) are still answered, without an id; the others are not acked;
    // errors still come, without an id.
    c.send(json!({"type": "join", "room": "r3"}));
    c.send(json!({"type": "message", "room": "r3", "data": "hi"}));
    c.send(json!({"type": "typing", "room": "r3"}));
    c.send(json!({"type": "presence", "status": "away"}));
    c.send(json!({"type": "who", "room": "r3"}));
    c.send(json!({"type": "leave", "room": "nowhere"}));
    let got = c.fence();
    let types: Vec<&str> = got
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("?"))
        .collect();
    // The presence event reaches this connection through each of its 3 rooms.
    assert_eq!(
        types,
        ["ack", "message", "presence", "presence", "presence", "ack", "error"],
        "{got:?}"
    );
    assert_eq!(got[0]["members"], 1, "{got:?}");
    assert_eq!(got[5]["count"], 1, "{got:?}");
    assert_eq!(got[6]["code"], "not_in_room");
    for m in &got {
        assert!(m.get("id").is_none(), "{m}");
    }
}

#[test]
fn one_user_connecting_and_leaving_on_both_workers_at_once_leaves_nothing_behind() {
    let rooms = Rooms::start(config());
    let token = rooms.token("racer", "Racer");
    std::thread::scope(|scope| {
        for t in 0..4 {
            let rooms = &rooms;
            let token = &token;
            scope.spawn(move || {
                for i in 0..25 {
                    let mut c = rooms
                        .open(&format!("/ws?token={token}"), &[])
                        .expect("upgrade");
                    assert_eq!(c.recv()["type"], "welcome");
                    c.join("race");
                    c.join(&format!("race-{t}"));
                    if i % 2 == 0 {
                        c.close();
                    } else {
                        drop(c); // no close handshake
                    }
                }
            });
        }
    });
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(3), || {
            last = rooms.status();
            last["users_online"] == 0 && last["rooms"] == 0
        }),
        "left behind: {last}"
    );
    let mut c = rooms.user("racer");
    assert_eq!(c.join("race"), 1);
    let mut d = rooms.user("other");
    assert_eq!(d.join("race"), 2);
    d.error(
        json!({"type": "private", "to": "nobody", "data": 0}),
        "user_offline",
    );
    let ack = d.ack(json!({"type": "private", "to": "racer", "data": 0}));
    assert_eq!(ack["delivered"], 1, "one racer connection is open: {ack}");
}

#[test]
fn quotes_unicode_and_control_characters_survive_the_json_writer() {
    let rooms = Rooms::start(config());
    let name = "Zoë \"Z\" \\ \n\t <b>😀</b> \u{7f}\u{0}";
    let token = rooms.token("zoë\"\\", name);
    let mut z = rooms
        .open(&format!("/ws?token={token}"), &[])
        .expect("upgrade");
    let w = z.recv();
    assert_eq!(w["user"], user("zoë\"\\", name), "{w}");
    let mut bob = rooms.user("bob");
    let room = "lobby \"1\" \\ ü 😀 </script>";
    bob.join(room);
    assert_eq!(z.join(room), 2);
    let j = bob.recv();
    assert_eq!(j["type"], "user_joined");
    assert_eq!(j["room"], room);
    assert_eq!(j["user"], user("zoë\"\\", name));
    z.ack(json!({"type": "message", "room": room, "data": {"k\"ey": "v\u{0}al\n"}}));
    let m = bob.recv();
    assert_eq!(m["data"], json!({"k\"ey": "v\u{0}al\n"}), "{m}");
    assert_eq!(m["from"]["name"], name);
    let who = bob.ack(json!({"type": "who", "room": room}));
    assert_eq!(who["members"][1]["name"], name, "{who}");
    // The metrics label is escaped too: the text stays one line per sample.
    let metrics = rooms.metrics();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("edgews_rooms_room_members{") && l.contains("lobby"))
        .unwrap_or_else(|| panic!("no room_members line: {metrics}"));
    assert!(line.ends_with(" 2"), "{line}");
}

#[test]
fn long_display_names_are_cut_and_long_user_ids_refused() {
    let rooms = Rooms::start(config());
    // 300 bytes of two-byte characters: cut to at most 128 bytes, on a
    // character boundary.
    let long = "é".repeat(150);
    let token = rooms.token("alice", &long);
    let mut c = rooms
        .open(&format!("/ws?token={token}"), &[])
        .expect("upgrade");
    let w = c.recv();
    let name = w["user"]["name"].as_str().expect("name");
    assert!(
        name.len() <= 128 && long.starts_with(name) && !name.is_empty(),
        "name of {} bytes",
        name.len()
    );
    // A 128-byte id is fine, a 129-byte one is not.
    let ok = rooms.token(&"u".repeat(128), "U");
    let mut c = rooms
        .open(&format!("/ws?token={ok}"), &[])
        .expect("128-byte id");
    assert_eq!(c.recv()["type"], "welcome");
    let too_long = rooms.token(&"u".repeat(129), "U");
    let (status, _, body) = rooms_common::upgrade(rooms.addr, &format!("/ws?token={too_long}"), "");
    assert_eq!(status, 401, "{body}");
}

#[test]
fn rooms_over_member_events_max_room_size_get_no_join_or_leave_events() {
    let mut cfg = config();
    cfg.member_events_max_room_size = 2;
    let rooms = Rooms::start(cfg);
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let mut carol = rooms.user("carol");
    alice.join("r");
    assert_eq!(bob.join("r"), 2);
    assert_eq!(alice.recv_type("user_joined")["user"]["id"], "bob");
    // The third member makes the room too big for member events.
    assert_eq!(carol.join("r"), 3);
    let fence = say(&mut carol, "r", json!("carol is here"));
    next_is_message(&mut alice, &fence);
    next_is_message(&mut bob, &fence);
    // Leaving a room of 3: no event either; `members` still counts.
    let left = carol.ack(json!({"type": "leave", "room": "r"}));
    assert_eq!(left["members"], 2, "{left}");
    let who = alice.ack(json!({"type": "who", "room": "r"}));
    assert_eq!(who["count"], 2, "{who}");
    let fence = say(&mut bob, "r", json!("carol left"));
    next_is_message(&mut alice, &fence);
    // Back to 2: events again.
    bob.ack(json!({"type": "leave", "room": "r"}));
    let l = alice.recv();
    assert_eq!(l["type"], "user_left", "{l}");
    assert_eq!(l["members"], 1, "{l}");
}
