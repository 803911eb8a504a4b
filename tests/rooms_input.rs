//! Bad input to the room server over real sockets (docs/protocol.md, "The
//! envelope"): malformed JSON, wrong types, huge ids, unknown fields,
//! non-object JSON and binary frames each get an error reply with the
//! documented code, and the connection stays up (a ping still gets its pong)
//! without disturbing anyone else.

mod common;
mod rooms_common;

use rooms_common::{config, Client, Rooms};
use serde_json::{json, Value};

/// Sends `text`, expects one error with `code` (and `id` when given, none
/// otherwise), then checks the connection still answers a ping.
fn expect_error(c: &mut Client, text: &str, code: &[&str], id: Option<Value>) {
    c.send_text(text);
    let got = c.fence();
    let shown = if text.len() > 200 { &text[..200] } else { text };
    assert_eq!(got.len(), 1, "{shown}: one reply expected, got {got:?}");
    let e = &got[0];
    assert_eq!(e["type"], "error", "{shown}: {e}");
    assert!(
        code.iter().any(|c| e["code"] == *c),
        "{shown}: code {} is not one of {code:?}",
        e["code"]
    );
    assert!(e["message"].is_string(), "{e}");
    assert_eq!(e.get("id"), id.as_ref(), "{shown}: {e}");
}

#[test]
fn malformed_json_is_bad_json_and_non_objects_are_bad_requests() {
    let rooms = Rooms::start(config());
    let mut c = rooms.user("alice");
    for text in [
        "{",
        "not json",
        "",
        "{\"type\":\"ping\",}",
        "{\"type\":\"ping\"} trailing",
        "{\"type\":\"ping\",\"id\":1e400}",
    ] {
        // 1e400 is out of range: a parser may call it bad JSON or a bad id.
        let codes: &[&str] = if text.contains("1e400") {
            &["bad_json", "bad_request"]
        } else {
            &["bad_json"]
        };
        expect_error(&mut c, text, codes, None);
    }
    // Valid JSON that is not an object is not a request.
    for text in ["[1,2]", "[]", "\"ping\"", "42", "null", "true"] {
        expect_error(&mut c, text, &["bad_request"], None);
    }
}

#[test]
fn wrong_types_missing_and_unknown_fields_are_bad_requests() {
    let rooms = Rooms::start(config());
    let mut c = rooms.user("alice");
    c.join("r");
    expect_error(&mut c, r#"{}"#, &["bad_request"], None);
    expect_error(&mut c, r#"{"id":1}"#, &["bad_request"], Some(json!(1)));
    expect_error(
        &mut c,
        r#"{"type":5,"id":2}"#,
        &["bad_request"],
        Some(json!(2)),
    );
    expect_error(&mut c, r#"{"type":null}"#, &["bad_request"], None);
    expect_error(
        &mut c,
        r#"{"type":"nope","id":3}"#,
        &["unknown_type"],
        Some(json!(3)),
    );
    expect_error(
        &mut c,
        r#"{"type":"JOIN","room":"r"}"#,
        &["unknown_type"],
        None,
    );
    for (i, req) in [
        json!({"type": "join"}),
        json!({"type": "join", "room": 5}),
        json!({"type": "join", "room": ["r"]}),
        json!({"type": "join", "room": ""}),
        json!({"type": "join", "room": "x".repeat(200)}),
        json!({"type": "join", "room": "r", "bogus": 1}),
        json!({"type": "join", "room": "r", "password": 5}),
        json!({"type": "leave"}),
        json!({"type": "message", "room": "r"}),
        json!({"type": "message", "data": 1}),
        json!({"type": "message", "room": "r", "data": 1, "exclude_self": "yes"}),
        json!({"type": "message", "room": "r", "data": 1, "extra": true}),
        json!({"type": "private", "data": 1}),
        json!({"type": "private", "to": 7, "data": 1}),
        json!({"type": "private", "to": "bob"}),
        json!({"type": "presence"}),
        json!({"type": "presence", "status": "sleeping"}),
        json!({"type": "presence", "status": 1}),
        json!({"type": "who"}),
        json!({"type": "who", "room": "r", "limit": "ten"}),
        json!({"type": "who", "room": "r", "limit": -1}),
        json!({"type": "who", "room": "r", "cursor": 5}),
        json!({"type": "typing"}),
        json!({"type": "typing", "room": "r", "text": "abc"}),
        json!({"type": "ping", "payload": 1}),
        json!({"type": "refresh", "token": 1}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut req = req;
        let id = json!(100 + i);
        req["id"] = id.clone();
        expect_error(&mut c, &req.to_string(), &["bad_request"], Some(id));
    }
    // The connection is fully usable, and still in r only.
    let who = c.ack(json!({"type": "who", "room": "r"}));
    assert_eq!(who["count"], 1, "{who}");
}

#[test]
fn unusable_ids_get_an_error_without_an_id() {
    let rooms = Rooms::start(config());
    let mut c = rooms.user("alice");
    let huge = "i".repeat(10 * 1024);
    for id in [
        json!(huge),
        json!(1.5),
        json!({"a": 1}),
        json!([1]),
        json!(true),
    ] {
        let text = json!({"type": "ping", "id": id}).to_string();
        expect_error(&mut c, &text, &["bad_request"], None);
    }
    // `"id": null` is no id: a pong without one.
    c.send_text(r#"{"type":"ping","id":null}"#);
    let got = c.fence();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "pong", "{got:?}");
    assert!(got[0].get("id").is_none(), "{got:?}");
    // Beyond 64 bits.
    expect_error(
        &mut c,
        r#"{"type":"ping","id":123456789012345678901234567890}"#,
        &["bad_request", "bad_json"],
        None,
    );
}

#[test]
fn binary_frames_are_refused_with_an_error() {
    let rooms = Rooms::start(config());
    let mut c = rooms.user("alice");
    for bytes in [&b"{\"type\":\"ping\"}"[..], &[0, 159, 146, 150], &[]] {
        c.send_binary(bytes);
        let got = c.fence();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["type"], "error", "{got:?}");
        assert_eq!(got[0]["code"], "bad_request", "{got:?}");
    }
}

#[test]
fn deep_or_odd_json_does_not_hurt_the_server() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    alice.join("r");
    bob.join("r");
    // Deep nesting: 100 levels of data are delivered as sent; a 10,000-level
    // message is refused before parsing (it used to overflow a worker's
    // stack and abort the whole server), also before authentication.
    let nested = |levels: usize| {
        let text = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        serde_json::from_str::<Value>(&text).ok()
    };
    let hundred = nested(100).expect("100 levels");
    alice.ack(json!({"type": "message", "room": "r", "data": hundred.clone()}));
    assert_eq!(bob.recv_type("message")["data"], hundred);
    alice.fence();
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let text = format!(r#"{{"type":"message","id":1,"room":"r","data":{deep}}}"#);
    // Refused before parsing: the id is not known, so the error has none.
    expect_error(&mut alice, &text, &["bad_json"], None);
    let mut anonymous = rooms.open("/ws", &[]).expect("upgrade");
    expect_error(&mut anonymous, &deep, &["bad_json"], None);
    expect_error(
        &mut anonymous,
        &format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)),
        &["bad_json"],
        None,
    );
    // Escapes and a NUL in a string id come back as sent.
    alice.send_text(r#"{"type":"ping","id":"\u0000\ud83d\ude00"}"#);
    let p = alice.reply(&json!("\u{0}\u{1F600}"));
    assert_eq!(p["type"], "pong", "{p}");
    // Lots of bad input in a row from one connection.
    for _ in 0..500 {
        alice.send_text("{bad");
    }
    let got = alice.fence();
    assert_eq!(
        got.iter().filter(|e| e["code"] == "bad_json").count(),
        500,
        "one error per bad message"
    );
    // Bob is unaffected; alice still chats.
    bob.fence();
    alice.ack(json!({"type": "message", "room": "r", "data": "still here"}));
    let m = bob.recv_type("message");
    assert_eq!(m["data"], "still here", "{m}");
}

#[test]
fn bad_input_before_auth_keeps_the_connection_until_the_timeout() {
    let rooms = Rooms::start(config());
    let mut c = rooms.open("/ws", &[]).expect("upgrade");
    expect_error(&mut c, "{", &["bad_json"], None);
    expect_error(&mut c, "[]", &["bad_request"], None);
    expect_error(
        &mut c,
        r#"{"type":"ping","id":1.5}"#,
        &["bad_request"],
        None,
    );
    c.send(json!({"type": "auth", "token": rooms.token("alice", "Alice")}));
    assert_eq!(c.recv()["type"], "welcome");
}
