//! Moderation over real sockets (docs/protocol.md, "Moderation"): kick,
//! ban (by user id, across reconnects and tokens, on every worker), mute,
//! their permissions, the server-wide ban and its close code, and the audit
//! log.

mod common;
mod rooms_common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use edgews::rooms::auth::{unix_now, Claims};
use rooms_common::{config, now_ms, upgrade, Client, Rooms};
use serde_json::{json, Value};

/// A connection of `sub` whose token carries `roles`.
fn user_with(rooms: &Rooms, sub: &str, roles: &[&str]) -> Client {
    let token = token_with(rooms, sub, roles, 3600);
    let mut c = rooms
        .open(&format!("/ws?token={token}"), &[])
        .expect("upgrade");
    let w = c.recv();
    assert_eq!(w["type"], "welcome", "{w}");
    c
}

fn token_with(rooms: &Rooms, sub: &str, roles: &[&str], valid_s: u64) -> String {
    let claims = Claims {
        sub: sub.to_owned(),
        name: Some(rooms_common::display(sub)),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        exp: Some(unix_now() + valid_s),
        ..Claims::default()
    };
    rooms.keys.mint(&claims).expect("mint")
}

/// Waits (bounded by the client's read timeout) for `user_left` of `user` in `room`.
fn left(c: &mut Client, room: &str, user: &str) -> Value {
    c.recv_match("user_left", |v| {
        v["type"] == "user_left" && v["room"] == room && v["user"]["id"] == user
    })
}

#[test]
fn kick_removes_every_connection_of_the_user_on_every_worker() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut moder = user_with(&rooms, "mod", &["moderator"]);
    let mut bobs = rooms.user_on_both_workers("bob");
    alice.join("r");
    for (b, _) in bobs.iter_mut() {
        b.join("r");
    }
    // Not for ordinary members; never on oneself.
    alice.error(
        json!({"type": "kick", "room": "r", "user": "bob"}),
        "forbidden",
    );
    moder.error(
        json!({"type": "kick", "room": "r", "user": "mod"}),
        "bad_request",
    );
    moder.error(
        json!({"type": "kick", "room": "r", "user": "nobody"}),
        "user_not_in_room",
    );
    let r = moder.ack(json!({"type": "kick", "room": "r", "user": "bob", "reason": "spam"}));
    assert_eq!(r["removed"].as_u64(), Some(bobs.len() as u64), "{r}");
    // The room hears user_kicked (the moderator is not a member: only via the
    // members), then user_left once bob's last connection is out.
    let ev = alice.recv_type("user_kicked");
    assert_eq!(ev["user"], json!({"id": "bob", "name": "Bob"}), "{ev}");
    assert_eq!(
        (ev["by"].clone(), ev["reason"].clone()),
        (json!("mod"), json!("spam"))
    );
    left(&mut alice, "r", "bob");
    for (b, _) in bobs.iter_mut() {
        b.recv_type("user_kicked");
        b.error(
            json!({"type": "message", "room": "r", "data": 1}),
            "not_in_room",
        );
    }
    // A kick is not a ban: bob comes back.
    assert_eq!(bobs[0].0.join("r"), 2);
}

#[test]
fn ban_is_by_user_id_survives_reconnects_and_new_tokens_and_unban_lifts_it() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut bobs = rooms.user_on_both_workers("bob");
    alice.ack(json!({"type": "create", "room": "club"}));
    alice.join("club");
    for (b, _) in bobs.iter_mut() {
        b.join("club");
    }
    let r = alice.ack(json!({"type": "ban", "room": "club", "user": "bob", "reason": "rude"}));
    assert!(r["until"].is_null(), "no duration: until lifted: {r}");
    assert_eq!(r["removed"].as_u64(), Some(bobs.len() as u64), "{r}");
    let ev = alice.recv_type("user_banned");
    assert_eq!(
        (
            ev["user"]["id"].clone(),
            ev["by"].clone(),
            ev["reason"].clone(),
            ev["until"].clone()
        ),
        (json!("bob"), json!("alice"), json!("rude"), Value::Null)
    );
    // At once, on both workers: the room hears bob leave.
    left(&mut alice, "club", "bob");
    for (b, _) in bobs.iter_mut() {
        b.recv_type("user_banned");
        b.error(
            json!({"type": "message", "room": "club", "data": 1}),
            "not_in_room",
        );
        b.error(json!({"type": "join", "room": "club"}), "banned");
    }
    // A new connection with a new token (other expiry, other roles) is still bob.
    drop(bobs);
    let token = token_with(&rooms, "bob", &[], 7200);
    let mut bob = rooms
        .open(&format!("/ws?token={token}"), &[])
        .expect("upgrade");
    bob.recv_type("welcome");
    bob.error(json!({"type": "join", "room": "club"}), "banned");
    // Other rooms are not affected.
    bob.join("other");
    // Unban: the room hears it, bob joins again.
    bob.error(
        json!({"type": "unban", "room": "club", "user": "bob"}),
        "forbidden",
    );
    alice.ack(json!({"type": "unban", "room": "club", "user": "bob"}));
    let ev = alice.recv_type("user_unbanned");
    assert_eq!(ev["user"]["id"], "bob");
    bob.join("club");
    alice.error(
        json!({"type": "unban", "room": "club", "user": "bob"}),
        "bad_request",
    );
}

#[test]
fn a_timed_ban_ends_by_itself() {
    let rooms = Rooms::start(config());
    let mut moder = user_with(&rooms, "mod", &["moderator"]);
    let mut carol = rooms.user("carol");
    let before = now_ms();
    let r = moder.ack(json!({"type": "ban", "room": "t", "user": "carol", "duration_s": 1}));
    let until = r["until"].as_u64().expect("until");
    assert!(until >= before + 1000 && until <= now_ms() + 1000, "{r}");
    assert_eq!(r["removed"], 0, "carol was in no room: {r}");
    carol.error(json!({"type": "join", "room": "t"}), "banned");
    moder.error(
        json!({"type": "ban", "room": "t", "user": "carol", "duration_s": 0}),
        "bad_request",
    );
    std::thread::sleep(Duration::from_millis(until.saturating_sub(now_ms()) + 100));
    carol.join("t");
}

#[test]
fn mute_refuses_posts_until_unmuted_or_expired() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let mut moder = user_with(&rooms, "mod", &["moderator"]);
    alice.join("m");
    bob.join("m");
    bob.error(
        json!({"type": "mute", "room": "m", "user": "alice"}),
        "forbidden",
    );
    let r = moder.ack(json!({"type": "mute", "room": "m", "user": "bob"}));
    assert!(r["until"].is_null() && r["removed"] == 0, "{r}");
    let ev = alice.recv_type("user_muted");
    assert_eq!(
        (ev["user"]["id"].clone(), ev["by"].clone()),
        (json!("bob"), json!("mod"))
    );
    bob.recv_type("user_muted");
    let post = json!({"type": "message", "room": "m", "data": "hello"});
    bob.error(post.clone(), "muted");
    bob.error(json!({"type": "typing", "room": "m"}), "muted");
    // Still a member: bob hears the room.
    alice.ack(post.clone());
    assert_eq!(bob.recv_type("message")["data"], "hello");
    // Muted per user id: a new connection is muted too.
    let mut bob2 = rooms.user("bob");
    bob2.join("m");
    bob2.error(post.clone(), "muted");
    moder.ack(json!({"type": "unmute", "room": "m", "user": "bob"}));
    assert_eq!(alice.recv_type("user_unmuted")["user"]["id"], "bob");
    bob.ack(post.clone());
    moder.error(
        json!({"type": "unmute", "room": "m", "user": "bob"}),
        "bad_request",
    );
    // With a duration.
    let r = moder.ack(json!({"type": "mute", "room": "m", "user": "bob", "duration_s": 1}));
    let until = r["until"].as_u64().expect("until");
    bob.error(post.clone(), "muted");
    std::thread::sleep(Duration::from_millis(until.saturating_sub(now_ms()) + 100));
    bob.ack(post);
}

#[test]
fn who_may_moderate_whom() {
    let rooms = Rooms::start(config());
    let mut creator = rooms.user("carol");
    let mut granted = rooms.user("gus");
    let mut moder = user_with(&rooms, "mod", &["moderator"]);
    let mut admin = user_with(&rooms, "root", &["admin"]);
    let mut bob = rooms.user("bob");
    creator.ack(json!({"type": "create", "room": "p"}));
    creator.join("p");
    bob.join("p");
    granted.join("p");
    // A member cannot; a per-room moderator can, but only here.
    granted.error(
        json!({"type": "mute", "room": "p", "user": "bob"}),
        "forbidden",
    );
    creator.ack(json!({"type": "grant", "room": "p", "user": "gus"}));
    granted.ack(json!({"type": "mute", "room": "p", "user": "bob"}));
    granted.error(
        json!({"type": "mute", "room": "q", "user": "bob"}),
        "forbidden",
    );
    // Nobody below acts on those above or level: the creator, a moderator.
    granted.error(
        json!({"type": "kick", "room": "p", "user": "carol"}),
        "forbidden",
    );
    moder.error(
        json!({"type": "ban", "room": "p", "user": "carol"}),
        "forbidden",
    );
    moder.error(
        json!({"type": "ban", "room": "p", "user": "gus"}),
        "forbidden",
    );
    // The creator acts on its moderators; an admin on the creator.
    creator.ack(json!({"type": "mute", "room": "p", "user": "gus", "duration_s": 60}));
    admin.ack(json!({"type": "kick", "room": "p", "user": "carol"}));
    left(&mut bob, "p", "carol");
    admin.ack(json!({"type": "ban", "room": "p", "user": "carol"}));
    creator.error(json!({"type": "join", "room": "p"}), "banned");
    // A banned creator cannot recreate its room either.
    creator.error(json!({"type": "create", "room": "p"}), "room_exists");
}

#[test]
fn server_wide_ban_closes_4009_and_refuses_new_connections() {
    let rooms = Rooms::start(config());
    let mut admin = user_with(&rooms, "root", &["admin"]);
    let mut moder = user_with(&rooms, "mod", &["moderator"]);
    let mut bobs = rooms.user_on_both_workers("bob");
    let mut alice = rooms.user("alice");
    alice.join("lobby");
    for (b, _) in bobs.iter_mut() {
        b.join("lobby");
    }
    // Admins only; a moderator is told to give a room.
    moder.error(json!({"type": "ban", "user": "bob"}), "forbidden");
    admin.error(json!({"type": "ban", "user": "root"}), "bad_request");
    let r = admin.ack(json!({"type": "ban", "user": "bob", "reason": "abuse"}));
    assert_eq!(r["removed"].as_u64(), Some(bobs.len() as u64), "{r}");
    assert!(r.get("room").is_none(), "{r}");
    for (b, _) in bobs.iter_mut() {
        assert_eq!(b.expect_close(), 4009);
    }
    // The room sees bob go (the normal close path).
    left(&mut alice, "lobby", "bob");
    // New connections: 403 + JSON at the upgrade, whatever the token.
    let token = token_with(&rooms, "bob", &["moderator"], 60);
    let (status, head, body) = upgrade(rooms.addr, &format!("/ws?token={token}"), "");
    assert_eq!(status, 403, "{head}{body}");
    assert!(head.contains("application/json"), "{head}");
    let v: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(
        (v["type"].clone(), v["code"].clone()),
        (json!("error"), json!("banned"))
    );
    assert!(v["message"].as_str().unwrap().contains("abuse"), "{v}");
    // ... and at in-band auth: error `banned`, then close 4009.
    let mut c = rooms.open("/ws", &[]).expect("upgrade without a token");
    c.send(json!({"type": "auth", "id": 1, "token": token}));
    let e = c.recv();
    assert_eq!(
        (e["code"].clone(), e["id"].clone()),
        (json!("banned"), json!(1)),
        "{e}"
    );
    assert_eq!(c.expect_close(), 4009);
    // Others are not affected; unban lets bob back in.
    alice.ack(json!({"type": "message", "room": "lobby", "data": 1}));
    moder.error(json!({"type": "unban", "user": "bob"}), "forbidden");
    admin.ack(json!({"type": "unban", "user": "bob"}));
    let mut bob = rooms.user("bob");
    bob.join("lobby");
    admin.error(json!({"type": "unban", "user": "bob"}), "bad_request");
}

/// Captures what the tests of this binary log (once per process).
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Capture(w.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_action_is_one_structured_audit_line() {
    let log = log();
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("audit-alice");
    let mut bob = rooms.user("audit-bob");
    let mut admin = user_with(&rooms, "audit-root", &["admin"]);
    alice.ack(json!({"type": "create", "room": "audit-room"}));
    bob.join("audit-room");
    alice.ack(json!({"type": "grant", "room": "audit-room", "user": "audit-gus"}));
    alice.ack(json!({"type": "mute", "room": "audit-room", "user": "audit-bob", "duration_s": 30, "reason": "calm down"}));
    alice.ack(json!({"type": "kick", "room": "audit-room", "user": "audit-bob"}));
    alice.ack(json!({"type": "ban", "room": "audit-room", "user": "audit-bob", "reason": "again"}));
    bob.error(
        json!({"type": "ban", "room": "audit-room", "user": "audit-alice"}),
        "forbidden",
    );
    admin.ack(json!({"type": "ban", "user": "audit-bob", "duration_s": 5}));
    alice.ack(json!({"type": "delete", "room": "audit-room"}));
    let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["target"] == "edgews::audit"
                && v["fields"]["actor"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("audit-"))
        })
        .map(|v| v["fields"].clone())
        .collect();
    let find = |action: &str, outcome: &str| {
        let hits: Vec<&Value> = lines
            .iter()
            .filter(|f| f["action"] == action && f["outcome"] == outcome)
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "one `{action}` line ({outcome}) in {lines:#?}"
        );
        hits[0].clone()
    };
    let f = find("create", "ok");
    assert_eq!(
        (f["actor"].clone(), f["room"].clone()),
        (json!("audit-alice"), json!("audit-room"))
    );
    assert_eq!(find("grant", "ok")["target"], "audit-gus");
    let f = find("mute", "ok");
    assert_eq!(
        (
            f["target"].clone(),
            f["reason"].clone(),
            f["duration_s"].clone()
        ),
        (json!("audit-bob"), json!("calm down"), json!(30))
    );
    find("kick", "ok");
    assert_eq!(find("ban", "ok")["reason"], "again");
    let f = find("ban", "forbidden");
    assert_eq!(
        (f["actor"].clone(), f["target"].clone()),
        (json!("audit-bob"), json!("audit-alice"))
    );
    let f = find("server_ban", "ok");
    assert_eq!(
        (
            f["actor"].clone(),
            f["duration_s"].clone(),
            f["room"].clone()
        ),
        (json!("audit-root"), json!(5), json!(""))
    );
    find("delete", "ok");
    assert_eq!(lines.len(), 8, "{lines:#?}");
}

#[test]
fn the_service_layer_acts_without_a_connection_as_the_admin_api_does() {
    use edgews::rooms::auth::Keys;
    use edgews::rooms::moderation::{self as m, Actor, RoomOptions};
    use edgews::rooms::server::RoomServer;
    let cfg = config();
    let server = RoomServer::bind(
        cfg.clone(),
        Keys::hs256(rooms_common::SECRET.as_bytes(), &cfg.auth),
    )
    .expect("bind");
    let shared = server.shared().clone();
    let addr = server.local_addr();
    let running = server.start().expect("start");
    let rooms_keys = Keys::hs256(rooms_common::SECRET.as_bytes(), &cfg.auth);
    let token = |sub: &str| {
        rooms_keys
            .mint(&Claims {
                sub: sub.into(),
                exp: Some(unix_now() + 60),
                ..Claims::default()
            })
            .expect("mint")
    };
    let open = |sub: &str| {
        let (status, _, _) = upgrade(addr, &format!("/ws?token={}", token(sub)), "");
        status
    };
    assert_eq!(open("zed"), 101);
    let mut c = {
        let req = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/ws?token={}",
            token("alice")
        ))
        .unwrap();
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tungstenite::client(req, s).expect("upgrade").0
    };
    assert_eq!(next(&mut c)["type"], "welcome");
    let v = m::create(
        &shared,
        Actor::AdminApi,
        "ops",
        &RoomOptions {
            moderated: true,
            ..RoomOptions::default()
        },
    )
    .expect("create");
    assert_eq!(
        (v.created, v.creator.as_deref(), v.moderated),
        (true, Some("admin-api"), true)
    );
    // Refusals carry a code and an HTTP status.
    let e = m::create(&shared, Actor::AdminApi, "ops", &RoomOptions::default()).unwrap_err();
    assert_eq!((e.code.as_str(), e.http_status()), ("room_exists", 409));
    let user = Actor::User {
        id: "alice",
        roles: 0,
    };
    let e = m::ban(&shared, user, "ops", "zed", None, None).unwrap_err();
    assert_eq!((e.code.as_str(), e.http_status()), ("forbidden", 403));
    let e = m::kick(&shared, Actor::AdminApi, "ops", "nobody", None).unwrap_err();
    assert_eq!(e.http_status(), 404);
    // The admin API bans; the event says `by: null`.
    c.send(tungstenite::Message::text(
        r#"{"type":"join","room":"ops"}"#,
    ))
    .unwrap();
    assert_eq!(next(&mut c)["type"], "ack");
    let s = m::mute(
        &shared,
        Actor::AdminApi,
        "ops",
        "zed",
        Some(Duration::from_secs(60)),
        Some("calm"),
    )
    .expect("mute");
    assert!(s.until.is_some() && s.connections == 0);
    let ev = next(&mut c);
    assert_eq!(
        (ev["type"].clone(), ev["by"].clone(), ev["reason"].clone()),
        (json!("user_muted"), Value::Null, json!("calm"))
    );
    let view = m::room_view(&shared, "ops").expect("view");
    assert_eq!(view.members, 1);
    assert_eq!(view.mutes.len(), 1);
    assert_eq!(view.mutes[0].user, "zed");
    assert_eq!(view.mutes[0].by, None);
    assert_eq!(
        m::server_ban(&shared, Actor::AdminApi, "zed", None, None)
            .expect("ban")
            .until,
        None
    );
    assert_eq!(open("zed"), 403);
    assert_eq!(m::server_bans(&shared).len(), 1);
    m::server_unban(&shared, Actor::AdminApi, "zed").expect("unban");
    assert_eq!(open("zed"), 101);
    assert_eq!(
        m::delete(&shared, Actor::AdminApi, "ops").expect("delete"),
        1
    );
    assert_eq!(next(&mut c)["type"], "room_deleted");
    assert!(m::room_view(&shared, "ops").is_none_or(|v| !v.created));
    running.shutdown().expect("shutdown");
}

/// The next text message of a raw tungstenite client, as JSON.
fn next(c: &mut tungstenite::WebSocket<std::net::TcpStream>) -> Value {
    loop {
        if let tungstenite::Message::Text(t) = c.read().expect("read") {
            return serde_json::from_str(t.as_str()).expect("JSON");
        }
    }
}
