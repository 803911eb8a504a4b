//! Room server authentication over real sockets (docs/protocol.md,
//! "Authentication"): every token source, in-band `auth`, the 401 at the
//! upgrade, the auth timeout, token expiry and `refresh`.

mod common;
mod rooms_common;

use std::time::{Duration, Instant};

use edgews::rooms::auth::unix_now;
use rooms_common::{config, now_ms, upgrade, Client, Rooms};
use serde_json::{json, Value};

fn assert_welcome(w: &Value, sub: &str, name: &str, exp: Option<u64>) {
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["user"]["id"], sub, "{w}");
    assert_eq!(w["user"]["name"], name, "{w}");
    assert!(
        w["conn_id"].is_string() || w["conn_id"].is_u64(),
        "conn_id: {w}"
    );
    let t = w["server_time"].as_u64().expect("server_time in ms");
    assert!(t.abs_diff(now_ms()) < 10_000, "server_time {t} is not now");
    match exp {
        Some(exp) => assert_eq!(w["expires_at"], json!(exp * 1000), "{w}"),
        None => assert!(w["expires_at"].is_null(), "{w}"),
    }
    assert!(w["limits"].is_object(), "limits: {w}");
}

/// Connects with a token somewhere in the upgrade; returns the client, the
/// selected subprotocol and the welcome.
fn open_with(rooms: &Rooms, path: &str, headers: &[(&str, &str)]) -> (Client, Option<String>) {
    let (mut c, protocol) = rooms
        .open_protocol(path, headers)
        .expect("upgrade with a good token");
    let w = c.recv();
    let exp = w["expires_at"].as_u64().map(|ms| ms / 1000);
    assert_welcome(&w, "alice", "Alice", exp);
    // Authenticated: a join is served.
    assert_eq!(c.join("lobby"), 1);
    (c, protocol)
}

#[test]
fn token_in_query_string() {
    let rooms = Rooms::start(config());
    let exp = unix_now() + 600;
    let token = rooms.token_exp("alice", "Alice", Some(exp));
    let (mut c, protocol) = rooms
        .open_protocol(&format!("/ws?token={token}"), &[])
        .expect("upgrade");
    assert_eq!(protocol, None, "no subprotocol was offered");
    assert_welcome(&c.recv(), "alice", "Alice", Some(exp));
    c.assert_quiet();
}

#[test]
fn token_in_authorization_header() {
    let rooms = Rooms::start(config());
    let token = rooms.token("alice", "Alice");
    let bearer = format!("Bearer {token}");
    let (c, protocol) = open_with(&rooms, "/ws", &[("Authorization", &bearer)]);
    assert_eq!(protocol, None);
    c.close();
}

#[test]
fn token_in_subprotocol_next_to_edgews_v1_selects_edgews_v1() {
    let rooms = Rooms::start(config());
    let token = rooms.token("alice", "Alice");
    let offer = format!("edgews.v1, token.{token}");
    let (c, protocol) = open_with(&rooms, "/ws", &[("Sec-WebSocket-Protocol", &offer)]);
    assert_eq!(protocol.as_deref(), Some("edgews.v1"));
    c.close();
}

#[test]
fn token_as_the_only_subprotocol_is_selected() {
    let rooms = Rooms::start(config());
    let token = rooms.token("alice", "Alice");
    let offer = format!("token.{token}");
    let (c, protocol) = open_with(&rooms, "/ws", &[("Sec-WebSocket-Protocol", &offer)]);
    assert_eq!(protocol, Some(offer));
    c.close();
}

#[test]
fn a_token_without_exp_has_no_expiry() {
    let rooms = Rooms::start(config());
    let token = rooms.token_exp("alice", "Alice", None);
    let mut c = rooms
        .open(&format!("/ws?token={token}"), &[])
        .expect("upgrade");
    assert_welcome(&c.recv(), "alice", "Alice", None);
}

#[test]
fn in_band_auth_serves_only_auth_and_ping_before() {
    let rooms = Rooms::start(config());
    // edgews.v1 alone: selected, and the connection opens unauthenticated.
    let (mut c, protocol) = rooms
        .open_protocol("/ws", &[("Sec-WebSocket-Protocol", "edgews.v1")])
        .expect("upgrade without a token");
    assert_eq!(protocol.as_deref(), Some("edgews.v1"));
    // No welcome yet; ping is served.
    c.assert_quiet();
    let pong = c.request(json!({"type": "ping"}));
    assert_eq!(pong["type"], "pong", "{pong}");
    // Everything else is `unauthorized`, with the request's id.
    for req in [
        json!({"type": "join", "room": "lobby"}),
        json!({"type": "leave", "room": "lobby"}),
        json!({"type": "message", "room": "lobby", "data": "hi"}),
        json!({"type": "private", "to": "bob", "data": "hi"}),
        json!({"type": "presence", "status": "away"}),
        json!({"type": "who", "room": "lobby"}),
        json!({"type": "typing", "room": "lobby"}),
        json!({"type": "refresh", "token": rooms.token("alice", "Alice")}),
    ] {
        c.error(req, "unauthorized");
    }
    // Without an id, the error comes without one.
    c.send(json!({"type": "join", "room": "lobby"}));
    let e = c.recv();
    assert_eq!(e["code"], "unauthorized", "{e}");
    assert!(e.get("id").is_none(), "{e}");
    // Bad input before auth: its own error, and the connection stays up.
    c.send_text("{not json");
    assert_eq!(c.recv()["code"], "bad_json");
    // A good auth: the welcome.
    let exp = unix_now() + 600;
    c.send(json!({"type": "auth", "token": rooms.token_exp("alice", "Alice", Some(exp))}));
    assert_welcome(&c.recv(), "alice", "Alice", Some(exp));
    assert_eq!(c.join("lobby"), 1);
    // Past the auth timeout (1 s) the authenticated connection is still open.
    std::thread::sleep(Duration::from_millis(1300));
    c.assert_quiet();
}

#[test]
fn in_band_auth_with_an_id_is_answered_once_with_that_id() {
    // docs/protocol.md: the welcome comes first, then the ack with the id.
    let rooms = Rooms::start(config());
    let mut c = rooms.open("/ws", &[]).expect("upgrade");
    c.send(json!({"type": "auth", "id": "a1", "token": rooms.token("alice", "Alice")}));
    let w = c.recv();
    assert_eq!(w["type"], "welcome", "{w}");
    let a = c.recv();
    assert_eq!(a["type"], "ack", "{a}");
    assert_eq!(a["id"], "a1", "{a}");
    c.assert_quiet();
    // A bad token with an id: the error carries it, then 4001.
    let mut c = rooms.open("/ws", &[]).expect("upgrade");
    c.send(json!({"type": "auth", "id": 9, "token": "garbage"}));
    let e = c.recv();
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["id"], 9, "{e}");
    assert_eq!(e["code"], "unauthorized", "{e}");
    assert_eq!(c.expect_close(), 4001);
}

#[test]
fn auth_on_an_authenticated_connection_is_a_bad_request() {
    let rooms = Rooms::start(config());
    let mut c = rooms.user("alice");
    c.error(
        json!({"type": "auth", "token": rooms.token("alice", "Alice")}),
        "bad_request",
    );
    c.assert_quiet();
}

#[test]
fn bad_tokens_at_the_upgrade_get_401_with_a_json_body() {
    let rooms = Rooms::start(config());
    let other = edgews::rooms::auth::Keys::hs256(b"another secret", &config().auth);
    let foreign = other
        .mint(&edgews::rooms::auth::Claims {
            sub: "alice".into(),
            ..Default::default()
        })
        .expect("mint");
    let expired = rooms.token_exp("alice", "Alice", Some(unix_now() - 60));
    let cases = [
        (
            format!("/ws?token={foreign}"),
            String::new(),
            "unauthorized",
        ),
        (
            "/ws?token=garbage".to_owned(),
            String::new(),
            "unauthorized",
        ),
        (
            format!("/ws?token={expired}"),
            String::new(),
            "token_expired",
        ),
        (
            "/ws".to_owned(),
            format!("Authorization: Bearer {foreign}\r\n"),
            "unauthorized",
        ),
        (
            "/ws".to_owned(),
            format!("Authorization: Bearer {expired}\r\n"),
            "token_expired",
        ),
        (
            "/ws".to_owned(),
            format!("Sec-WebSocket-Protocol: edgews.v1, token.{foreign}\r\n"),
            "unauthorized",
        ),
        (
            "/ws".to_owned(),
            format!("Sec-WebSocket-Protocol: token.{expired}\r\n"),
            "token_expired",
        ),
    ];
    for (path, extra, code) in cases {
        let (status, head, body) = upgrade(rooms.addr, &path, &extra);
        assert_eq!(status, 401, "{path} {extra}: {head}\n{body}");
        assert!(head.contains("application/json"), "{head}");
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("401 body is not JSON ({e}): {body}"));
        assert_eq!(v["code"], code, "{path} {extra}: {v}");
        assert!(v["message"].is_string(), "{v}");
    }
    // The server is fine.
    rooms.user("alice").assert_quiet();
}

#[test]
fn no_auth_within_the_timeout_closes_4001() {
    let rooms = Rooms::start(config()); // auth_timeout_secs = 1
    let started = Instant::now();
    let mut c = rooms.open("/ws", &[]).expect("upgrade");
    // Pings do not count as authentication.
    c.assert_quiet();
    assert_eq!(c.expect_close(), 4001);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}, the timeout is 1 s"
    );
}

#[test]
fn a_bad_token_in_auth_closes_4001() {
    let rooms = Rooms::start(config());
    let expired = rooms.token_exp("alice", "Alice", Some(unix_now() - 60));
    for token in ["garbage", expired.as_str(), ""] {
        let mut c = rooms.open("/ws", &[]).expect("upgrade");
        c.send(json!({"type": "auth", "token": token}));
        assert_eq!(c.expect_close(), 4001, "token {token:?}");
    }
    // A token of the wrong type is a bad token too.
    let mut c = rooms.open("/ws", &[]).expect("upgrade");
    c.send(json!({"type": "auth", "token": 42}));
    let first = c.recv();
    assert_eq!(first["type"], "error", "{first}");
    // Then either closed 4001 at once or by the auth timeout.
    assert_eq!(c.expect_close(), 4001);
}

#[test]
fn an_expired_token_closes_4003() {
    let rooms = Rooms::start(config());
    let exp = unix_now() + 2;
    let token = rooms.token_exp("alice", "Alice", Some(exp));
    let mut c = rooms
        .open(&format!("/ws?token={token}"), &[])
        .expect("upgrade");
    assert_welcome(&c.recv(), "alice", "Alice", Some(exp));
    c.join("lobby");
    assert_eq!(c.expect_close(), 4003);
    let now = now_ms();
    assert!(
        now + 200 >= exp * 1000,
        "closed {} ms before the token's expiry",
        exp * 1000 - now
    );
    assert!(
        now < exp * 1000 + 3000,
        "closed {} ms late",
        now - exp * 1000
    );
}

#[test]
fn refresh_keeps_the_connection_open_past_the_first_expiry() {
    let rooms = Rooms::start(config());
    let exp = unix_now() + 2;
    let token = rooms.token_exp("alice", "Alice", Some(exp));
    let mut c = rooms
        .open(&format!("/ws?token={token}"), &[])
        .expect("upgrade");
    assert_welcome(&c.recv(), "alice", "Alice", Some(exp));
    let new_exp = unix_now() + 600;
    let r = c.ack(
        json!({"type": "refresh", "token": rooms.token_exp("alice", "Alice 2", Some(new_exp))}),
    );
    assert_eq!(r["expires_at"], json!(new_exp * 1000), "{r}");
    // Wait until well past the first expiry.
    while unix_now() <= exp + 1 {
        std::thread::sleep(Duration::from_millis(100));
    }
    c.assert_quiet();
    assert_eq!(c.join("lobby"), 1);
}

#[test]
fn refresh_errors_change_nothing() {
    let rooms = Rooms::start(config());
    let mut c = rooms.user("alice");
    let expired = rooms.token_exp("alice", "Alice", Some(unix_now() - 60));
    c.error(
        json!({"type": "refresh", "token": expired}),
        "token_expired",
    );
    c.error(
        json!({"type": "refresh", "token": "garbage"}),
        "unauthorized",
    );
    c.error(
        json!({"type": "refresh", "token": rooms.token("mallory", "Mallory")}),
        "forbidden",
    );
    c.error(json!({"type": "refresh"}), "bad_request");
    // Still alice, still open.
    c.join("lobby");
    let mut bob = rooms.user("bob");
    bob.join("lobby");
    let j = c.recv_type("user_joined");
    assert_eq!(j["user"]["id"], "bob", "{j}");
    c.ack(json!({"type": "message", "room": "lobby", "data": 1}));
    let m = bob.recv_type("message");
    assert_eq!(m["from"]["id"], "alice", "{m}");
}

#[test]
fn upgrades_on_other_paths_are_404() {
    let rooms = Rooms::start(config());
    let token = rooms.token("alice", "Alice");
    let (status, head, _) = upgrade(rooms.addr, &format!("/chat?token={token}"), "");
    assert_eq!(status, 404, "{head}");
}
