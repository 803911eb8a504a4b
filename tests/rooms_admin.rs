//! The admin HTTP API (docs/protocol.md, "Admin HTTP API"): its own
//! listener, bearer tokens (401 without, 403 read-only or disabled), every
//! route's answer and refusal, paging, publishing to members on both
//! workers, a user's connections, and disconnecting them with 4010.

mod common;
mod rooms_common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::wait_until;
use edgews::rooms::RoomServerConfig;
use rooms_common::{config, now_ms, Rooms, READ_TIMEOUT};
use serde_json::{json, Value};

const TOKEN: &str = "admin-token-for-the-tests-0123456789";
const READ_TOKEN: &str = "read-only-token-for-the-tests-abcdef";

/// The test config with the admin API on 127.0.0.1:0 and both tokens.
fn admin_config() -> RoomServerConfig {
    let mut c = config();
    c.admin.listen = Some("127.0.0.1:0".parse().expect("address"));
    c.admin.token = Some(TOKEN.into());
    c.admin.read_token = Some(READ_TOKEN.into());
    c.admin.max_body_bytes = 4096;
    c
}

/// Sends one raw request and reads the answer: status, head (lower-cased)
/// and body. Every read is bounded by [`READ_TIMEOUT`].
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    // The server closes after its answer.
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// An admin request with `token` (none: no Authorization header) and an
/// optional JSON body; returns the status and the body as JSON.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    let (status, head, text) = raw(addr, req.as_bytes());
    assert!(
        head.contains("content-type: application/json"),
        "{method} {path}: {head}"
    );
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
    (status, v)
}

fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    call(addr, "GET", path, Some(TOKEN), None)
}

fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    call(addr, "POST", path, Some(TOKEN), Some(body))
}

#[test]
fn tokens_decide_401_403_and_200() {
    let rooms = Rooms::start(admin_config());
    let admin = rooms.admin.expect("admin listener");
    let (s, v) = call(admin, "GET", "/api/admin/rooms", None, None);
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")), "{v}");
    let (s, head, _) = raw(admin, b"GET /api/admin/rooms HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(s, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let (s, v) = call(
        admin,
        "GET",
        "/api/admin/rooms",
        Some("not-the-token"),
        None,
    );
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")), "{v}");
    // The token with one byte changed, and as a prefix of it.
    let near = format!("{}X", &TOKEN[..TOKEN.len() - 1]);
    assert_eq!(
        call(admin, "GET", "/api/admin/rooms", Some(&near), None).0,
        401
    );
    assert_eq!(
        call(admin, "GET", "/api/admin/rooms", Some(&TOKEN[..20]), None).0,
        401
    );
    let (s, _, body) = raw(
        admin,
        format!("GET /api/admin/rooms HTTP/1.1\r\nAuthorization: Basic {TOKEN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(s, 401, "{body}");

    // The full token reads and writes; the read-only token reads only.
    assert_eq!(get(admin, "/api/admin/rooms").0, 200);
    let (s, v) = call(admin, "GET", "/api/admin/rooms", Some(READ_TOKEN), None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        admin,
        "POST",
        "/api/admin/rooms/lobby/publish",
        Some(READ_TOKEN),
        Some(r#"{"data":"hi"}"#),
    );
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("read-only"), "{v}");
    let (s, v) = call(
        admin,
        "POST",
        "/api/admin/users/bob/disconnect",
        Some(READ_TOKEN),
        Some("{}"),
    );
    assert_eq!(s, 403, "{v}");

    // No route outside /api/admin; unknown routes and wrong methods.
    assert_eq!(get(admin, "/api/websocket/status").0, 404);
    let (s, v) = get(admin, "/api/admin/nothing");
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = post(admin, "/api/admin/rooms", "{}");
    assert_eq!(s, 405, "{v}");
    assert_eq!(get(admin, "/api/admin/rooms/lobby/publish").0, 405);

    // The WebSocket port says where the admin API is, and serves none of it.
    let (s, head, body) = rooms.get("/api/admin/rooms");
    assert_eq!(s, 404, "{head}");
    assert!(body.contains("admin.listen"), "{body}");
}

#[test]
fn without_a_token_the_api_is_disabled_with_403() {
    let mut cfg = admin_config();
    cfg.admin.token = None;
    cfg.admin.read_token = None;
    let rooms = Rooms::start(cfg);
    let admin = rooms.admin.expect("admin listener");
    for token in [None, Some(TOKEN)] {
        let (s, v) = call(admin, "GET", "/api/admin/rooms", token, None);
        assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
        assert!(v["message"].as_str().unwrap().contains("disabled"), "{v}");
    }
    // And without admin.listen there is no listener at all.
    assert!(Rooms::start(config()).admin.is_none());
}

#[test]
fn a_token_file_is_read_and_a_short_token_refused() {
    let dir = std::env::temp_dir().join(format!("edgews-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).expect("write token");
    let mut cfg = admin_config();
    cfg.admin.token = None;
    cfg.admin.token_file = Some(file.clone());
    let rooms = Rooms::start(cfg.clone());
    assert_eq!(get(rooms.admin.expect("admin"), "/api/admin/rooms").0, 200);
    drop(rooms);

    std::fs::write(&file, "short\n").expect("write token");
    let keys = edgews::rooms::auth::Keys::hs256(rooms_common::SECRET.as_bytes(), &cfg.auth);
    let e = edgews::rooms::server::RoomServer::bind(cfg.clone(), keys).unwrap_err();
    assert!(e.to_string().contains("admin.token_file"), "{e}");
    let mut short = admin_config();
    short.admin.token = Some("short".into());
    let e = short.validate().unwrap_err();
    assert_eq!(e.key_name(), Some("admin.token"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rooms_are_listed_by_name_a_page_at_a_time() {
    let rooms = Rooms::start(admin_config());
    let admin = rooms.admin.expect("admin");
    let mut clients = Vec::new();
    for (i, room) in ["r-c", "r-a", "r-e", "r-b", "r-d"].iter().enumerate() {
        let mut c = rooms.user(&format!("u{i}"));
        c.join(room);
        if i == 0 {
            c.join("r-a");
        }
        clients.push(c);
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for page in 0.. {
        assert!(page < 10, "paging does not end");
        let (s, v) = get(admin, &format!("/api/admin/rooms?limit=2&cursor={cursor}"));
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["count"], 5, "{v}");
        let list = v["rooms"].as_array().unwrap();
        assert!(list.len() <= 2, "{v}");
        for r in list {
            seen.push((
                r["room"].as_str().unwrap().to_owned(),
                r["members"].as_u64().unwrap(),
            ));
        }
        match v["next"].as_str() {
            Some(n) => cursor = n.to_owned(),
            None => break,
        }
    }
    let want: Vec<(String, u64)> = [("r-a", 2), ("r-b", 1), ("r-c", 1), ("r-d", 1), ("r-e", 1)]
        .iter()
        .map(|(r, n)| (r.to_string(), *n))
        .collect();
    assert_eq!(seen, want);

    for bad in ["limit=0", "limit=x", "page=2", "limit=-1"] {
        let (s, v) = get(admin, &format!("/api/admin/rooms?{bad}"));
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {v}"
        );
    }
}

#[test]
fn one_room_shows_settings_stats_and_members_paged() {
    let rooms = Rooms::start(admin_config());
    let admin = rooms.admin.expect("admin");
    let mut clients = Vec::new();
    for u in ["dora", "abe", "cleo", "bo"] {
        let mut c = rooms.user(u);
        c.join("team/one");
        clients.push(c);
    }
    let (s, v) = get(admin, "/api/admin/rooms/team%2Fone?limit=3");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["room"], "team/one");
    assert_eq!(v["count"], 4);
    assert_eq!(v["settings"]["max_members"], 0);
    assert_eq!(v["stats"]["connections"], 4, "{v}");
    let ids: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["abe", "bo", "cleo"]);
    assert_eq!(v["members"][0]["name"], "Abe");
    assert_eq!(v["members"][0]["status"], "online");
    assert_eq!(v["next"], "cleo");
    let (_, v) = get(admin, "/api/admin/rooms/team%2Fone?limit=3&cursor=cleo");
    assert_eq!(v["members"][0]["id"], "dora");
    assert_eq!(v["next"], Value::Null);

    let (s, v) = get(admin, "/api/admin/rooms/nowhere");
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("room_not_found")),
        "{v}"
    );
    let (s, v) = get(admin, "/api/admin/rooms/a%00b");
    assert_eq!((s, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    let long = "x".repeat(129);
    assert_eq!(get(admin, &format!("/api/admin/rooms/{long}")).0, 400);
    let (s, v) = get(admin, "/api/admin/rooms/%FF");
    assert_eq!((s, v["code"].as_str()), (400, Some("bad_request")), "{v}");
}

#[test]
fn publish_reaches_members_on_both_workers_as_the_admin() {
    let rooms = Rooms::start(admin_config());
    let admin = rooms.admin.expect("admin");
    let (mut a, wa) = rooms.user_on_worker("ann");
    let mut b = loop {
        let (c, w) = rooms.user_on_worker("ben");
        if w != wa {
            break c;
        }
    };
    let mut outsider = rooms.user("olga");
    a.join("news");
    b.join("news");
    a.fence();
    let before = now_ms();
    let (s, v) = post(
        admin,
        "/api/admin/rooms/news/publish",
        r#"{"data":{"text":"maintenance at 10:00","n":[1,2]},"name":"Ops"}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["room"].as_str(), v["members"].as_u64()),
        (Some("news"), Some(2))
    );
    assert!(
        v["offset"].as_u64().is_some() && v["epoch"].is_string(),
        "{v}"
    );
    let ack = v;
    for c in [&mut a, &mut b] {
        let m = c.recv_type("message");
        // Numbered like every room message: the same offset and epoch.
        assert_eq!(
            (&m["offset"], &m["epoch"]),
            (&ack["offset"], &ack["epoch"]),
            "{m}"
        );
        assert_eq!(m["room"], "news");
        assert_eq!(m["from"], json!({"id": "admin", "name": "Ops"}));
        assert_eq!(m["admin"], true, "{m}");
        assert_eq!(m["data"], json!({"text":"maintenance at 10:00","n":[1,2]}));
        assert!(m["ts"].as_u64().unwrap() >= before, "{m}");
    }
    outsider.assert_quiet();
    // It is in the room's history, marked as the admin's.
    let h = a.ack(json!({"type":"history","room":"news"}));
    let text = h.to_string();
    assert!(
        text.contains("maintenance at 10:00") && text.contains("\"admin\":true"),
        "{h}"
    );
    // Without `name`, the sender is called admin.
    let (s, _) = post(admin, "/api/admin/rooms/news/publish", r#"{"data":null}"#);
    assert_eq!(s, 200);
    for c in [&mut a, &mut b] {
        let m = c.recv_type("message");
        assert_eq!(m["from"], json!({"id": "admin", "name": "admin"}));
        assert_eq!(m["data"], Value::Null);
    }

    // Refusals: the protocol's error shape, and nothing is published.
    let cases: [(&str, &str); 7] = [
        ("{not json", "bad_json"),
        (r#"{"data":1,"extra":2}"#, "bad_request"),
        (r#"{"name":"x"}"#, "bad_request"),
        (r#"[1]"#, "bad_request"),
        (r#"{"data":1,"name":""}"#, "bad_request"),
        (r#"{"data":1,"name":5}"#, "bad_request"),
        ("", "bad_request"),
    ];
    for (body, code) in cases {
        let (s, v) = post(admin, "/api/admin/rooms/news/publish", body);
        assert_eq!((s, v["code"].as_str()), (400, Some(code)), "{body}: {v}");
        assert_eq!(v["type"], "error", "{v}");
    }
    let deep = format!("{{\"data\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
    let (s, v) = post(admin, "/api/admin/rooms/news/publish", &deep);
    assert_eq!(s, 400, "{v}");
    a.assert_quiet();
    b.assert_quiet();
    // The server still answers after all of that.
    assert_eq!(get(admin, "/api/admin/rooms").0, 200);
}

#[test]
fn bodies_over_the_limit_and_odd_framing_get_400() {
    let rooms = Rooms::start(admin_config());
    let admin = rooms.admin.expect("admin");
    // Content-Length over admin.max_body_bytes (4096): refused before reading it.
    let (s, _, body) = raw(
        admin,
        format!(
            "POST /api/admin/rooms/x/publish HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 100000000\r\n\r\n{{\"data\":"
        )
        .as_bytes(),
    );
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("max_body_bytes"), "{body}");
    // Exactly at the limit is fine.
    let data = format!(r#"{{"data":"{}"}}"#, "y".repeat(4096 - 11));
    assert_eq!(data.len(), 4096);
    assert_eq!(post(admin, "/api/admin/rooms/x/publish", &data).0, 200);
    let over = format!(r#"{{"data":"{}"}}"#, "y".repeat(4096 - 10));
    assert_eq!(post(admin, "/api/admin/rooms/x/publish", &over).0, 400);
    // Chunked bodies and bad lengths.
    let (s, _, body) = raw(
        admin,
        format!(
            "POST /api/admin/rooms/x/publish HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(s, 400, "{body}");
    let (s, _, _) = raw(
        admin,
        b"POST /api/admin/rooms/x/publish HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    );
    assert_eq!(s, 400);
    // A head over 8 KiB, and garbage.
    let big = format!(
        "GET /api/admin/rooms HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(raw(admin, big.as_bytes()).0, 431);
    assert_eq!(raw(admin, b"\x00\x01\x02 nonsense\r\n\r\n").0, 400);
    // A client that sends half a body and stalls holds one request thread
    // for IO_TIMEOUT at most; others are served meanwhile.
    let mut stalled = TcpStream::connect(admin).expect("connect");
    stalled
        .write_all(
            format!(
                "POST /api/admin/rooms/x/publish HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .expect("write");
    assert_eq!(get(admin, "/api/admin/rooms").0, 200);
    drop(stalled);
}

#[test]
fn a_users_connections_on_both_workers_are_described() {
    let rooms = Rooms::start(admin_config());
    let admin = rooms.admin.expect("admin");
    let before = now_ms();
    let mut conns = rooms.user_on_both_workers("cat");
    for (i, (c, _)) in conns.iter_mut().enumerate() {
        c.join("shared");
        c.join(&format!("own-{i}"));
    }
    let (s, v) = get(admin, "/api/admin/users/cat/connections");
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["user"],
        json!({"id":"cat","name":"Cat","status":"online"})
    );
    let list = v["connections"].as_array().unwrap();
    assert_eq!(list.len(), conns.len(), "{v}");
    let workers: BTreeSet<u64> = list.iter().map(|c| c["worker"].as_u64().unwrap()).collect();
    assert_eq!(workers, BTreeSet::from([0, 1]));
    let welcome_ids: BTreeSet<String> = conns
        .iter()
        .map(|(c, _)| {
            c.welcome.as_ref().unwrap()["conn_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let listed: BTreeSet<String> = list
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, welcome_ids, "ids are the welcome's conn_id");
    for c in list {
        assert_eq!(c["client_ip"], "127.0.0.1", "{c}");
        assert!(c["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{c}");
        let at = c["connected_at"].as_u64().unwrap();
        assert!(at + 1000 >= before && at <= now_ms() + 1000, "{c}");
        let rooms: BTreeSet<&str> = c["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(rooms.contains("shared") && rooms.len() == 2, "{c}");
    }
    let (s, v) = get(admin, "/api/admin/users/nobody/connections");
    assert_eq!((s, v["code"].as_str()), (404, Some("user_offline")), "{v}");
    let long = "u".repeat(129);
    assert_eq!(
        get(admin, &format!("/api/admin/users/{long}/connections")).0,
        400
    );
}

#[test]
fn disconnect_closes_every_connection_of_the_user_with_4010() {
    let rooms = Rooms::start(admin_config());
    let admin = rooms.admin.expect("admin");
    let conns = rooms.user_on_both_workers("dan");
    let mut other = rooms.user("eve");
    other.join("hall");
    let (s, v) = post(
        admin,
        "/api/admin/users/dan/disconnect",
        r#"{"reason":"account suspended"}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["closed"].as_u64(), Some(conns.len() as u64), "{v}");
    assert_eq!(v["code"], 4010);
    for (mut c, _) in conns {
        assert_eq!(c.expect_close(), 4010);
    }
    assert!(wait_until(Duration::from_secs(5), || {
        get(admin, "/api/admin/users/dan/connections").0 == 404
    }));
    // Others are untouched.
    assert_eq!(other.request(json!({"type":"ping"}))["type"], "pong");
    let (s, v) = post(admin, "/api/admin/users/dan/disconnect", "");
    assert_eq!((s, v["code"].as_str()), (404, Some("user_offline")), "{v}");
    // An empty body is allowed (default reason); bad ones are not.
    let mut again = rooms.user("dan");
    let (s, _) = post(admin, "/api/admin/users/dan/disconnect", "");
    assert_eq!(s, 200);
    assert_eq!(again.expect_close(), 4010);
    let long = format!(r#"{{"reason":"{}"}}"#, "r".repeat(121));
    assert_eq!(post(admin, "/api/admin/users/eve/disconnect", &long).0, 400);
    assert_eq!(
        post(admin, "/api/admin/users/eve/disconnect", r#"{"why":1}"#).0,
        400
    );
    assert_eq!(other.request(json!({"type":"ping"}))["type"], "pong");
}

#[test]
fn past_eight_requests_at_once_the_ninth_gets_503() {
    let rooms = Rooms::start(admin_config());
    let admin = rooms.admin.expect("admin");
    // Eight clients that send half a request hold the eight request threads.
    let stalled: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(admin).expect("connect");
            s.write_all(b"GET /api/admin/rooms HTTP/1.1\r\n")
                .expect("write");
            s
        })
        .collect();
    // The accepting thread hands them out in order; wait until it has.
    let busy = wait_until(Duration::from_secs(5), || {
        let (s, head, _) = raw(
            admin,
            format!("GET /api/admin/rooms HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
                .as_bytes(),
        );
        s == 503 && head.contains("retry-after: 1")
    });
    assert!(busy, "a ninth request was served while eight were held");
    drop(stalled);
    // Once they are gone, requests are served again.
    assert!(wait_until(Duration::from_secs(5), || get(
        admin,
        "/api/admin/rooms"
    )
    .0 == 200));
}

#[test]
fn kick_ban_mute_and_their_undoing_act_on_both_workers() {
    let rooms = Rooms::start(admin_config());
    let admin = rooms.admin.expect("admin");
    let mut watcher = rooms.user("wendy");
    watcher.join("mod");
    let mut target = rooms.user_on_both_workers("troll");
    for (c, _) in target.iter_mut() {
        c.join("mod");
    }
    watcher.fence();

    // Kick: the room hears it (by null: the admin API), every connection leaves.
    let (s, v) = post(
        admin,
        "/api/admin/rooms/mod/kick",
        r#"{"user":"troll","reason":"spam"}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["connections"].as_u64(), Some(target.len() as u64), "{v}");
    let e = watcher.recv_type("user_kicked");
    assert_eq!(
        (e["user"]["id"].as_str(), e["reason"].as_str()),
        (Some("troll"), Some("spam"))
    );
    assert_eq!(e["by"], Value::Null, "{e}");
    assert!(wait_until(Duration::from_secs(5), || {
        get(admin, "/api/admin/rooms/mod").1["count"] == 1
    }));
    // Kicking someone who is not in the room is refused.
    let (s, v) = post(admin, "/api/admin/rooms/mod/kick", r#"{"user":"troll"}"#);
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("user_not_in_room")),
        "{v}"
    );

    // Ban: by user id, so a new connection cannot join; unban lifts it.
    for (c, _) in target.iter_mut() {
        c.join("mod");
    }
    let (s, v) = post(
        admin,
        "/api/admin/rooms/mod/ban",
        r#"{"user":"troll","duration_s":600,"reason":"again"}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert!(v["until"].as_u64().unwrap() > now_ms(), "{v}");
    watcher.recv_type("user_banned");
    let mut fresh = rooms.user("troll");
    fresh.error(json!({"type":"join","room":"mod"}), "banned");
    let (_, v) = get(admin, "/api/admin/rooms/mod");
    assert_eq!(v["settings"]["bans"][0]["user"], "troll", "{v}");
    assert_eq!(
        post(admin, "/api/admin/rooms/mod/unban", r#"{"user":"troll"}"#).0,
        200
    );
    fresh.join("mod");

    // Mute: still a member, but its messages are refused until unmuted.
    let (s, v) = post(admin, "/api/admin/rooms/mod/mute", r#"{"user":"troll"}"#);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["until"], Value::Null);
    fresh.error(json!({"type":"message","room":"mod","data":"x"}), "muted");
    assert_eq!(
        post(admin, "/api/admin/rooms/mod/unmute", r#"{"user":"troll"}"#).0,
        200
    );
    fresh.ack(json!({"type":"message","room":"mod","data":"back"}));

    // Bodies are strict per action.
    let bad: [(&str, &str); 6] = [
        ("kick", r#"{"user":"troll","duration_s":5}"#),
        ("unban", r#"{"user":"troll","reason":"x"}"#),
        ("ban", r#"{"duration_s":5}"#),
        ("mute", r#"{"user":"troll","for":5}"#),
        ("ban", r#"{"user":"troll","duration_s":-1}"#),
        ("kick", ""),
    ];
    for (action, body) in bad {
        let (s, v) = post(admin, &format!("/api/admin/rooms/mod/{action}"), body);
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("bad_request")),
            "{action} {body}: {v}"
        );
    }
    // The read-only token may not moderate.
    let (s, _) = call(
        admin,
        "POST",
        "/api/admin/rooms/mod/kick",
        Some(READ_TOKEN),
        Some(r#"{"user":"troll"}"#),
    );
    assert_eq!(s, 403);
}

#[test]
fn rooms_are_created_invited_to_and_deleted_through_the_api() {
    let rooms = Rooms::start(admin_config());
    let admin = rooms.admin.expect("admin");
    let (s, v) = post(
        admin,
        "/api/admin/rooms/vip/create",
        r#"{"public":false,"max_members":5}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["created"].as_bool(), v["public"].as_bool()),
        (Some(true), Some(false))
    );
    // Created rooms exist without members.
    let (s, v) = get(admin, "/api/admin/rooms/vip");
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["count"].as_u64(), v["settings"]["max_members"].as_u64()),
        (Some(0), Some(5))
    );
    let (s, v) = post(admin, "/api/admin/rooms/vip/create", "{}");
    assert_eq!((s, v["code"].as_str()), (409, Some("room_exists")), "{v}");

    let mut guest = rooms.user("gus");
    guest.error(json!({"type":"join","room":"vip"}), "not_invited");
    assert_eq!(
        post(admin, "/api/admin/rooms/vip/invite", r#"{"user":"gus"}"#).0,
        200
    );
    guest.join("vip");

    let (s, v) = post(admin, "/api/admin/rooms/vip/delete", "");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["connections"], 1);
    guest.recv_type("room_deleted");
    let (s, v) = get(admin, "/api/admin/rooms/vip");
    assert!(s == 404 || v["settings"]["created"] == false, "{s} {v}");
    let (s, v) = post(admin, "/api/admin/rooms/vip/create", r#"{"colour":"red"}"#);
    assert_eq!((s, v["code"].as_str()), (400, Some("bad_request")), "{v}");
}

#[test]
fn a_server_wide_ban_closes_every_connection_with_4009_until_lifted() {
    let rooms = Rooms::start(admin_config());
    let admin = rooms.admin.expect("admin");
    let conns = rooms.user_on_both_workers("mallory");
    let mut other = rooms.user("oscar");
    let (s, v) = post(
        admin,
        "/api/admin/users/mallory/ban",
        r#"{"reason":"fraud"}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["connections"].as_u64(), Some(conns.len() as u64), "{v}");
    for (mut c, _) in conns {
        assert_eq!(c.expect_close(), 4009);
    }
    let token = rooms.token("mallory", "Mallory");
    assert!(
        rooms.open(&format!("/ws?token={token}"), &[]).is_err(),
        "a banned user connected"
    );
    assert_eq!(other.request(json!({"type":"ping"}))["type"], "pong");
    let (s, v) = post(admin, "/api/admin/users/mallory/unban", "");
    assert_eq!(s, 200, "{v}");
    rooms.user("mallory");
    let (s, _) = post(admin, "/api/admin/users/mallory/ban", r#"{"user":"x"}"#);
    assert_eq!(s, 400);
}
