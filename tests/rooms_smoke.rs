//! A quick end-to-end pass through the room server: two users, two workers,
//! join/message/private/presence/who/leave, over tungstenite.

mod common;

use std::time::Duration;

use edgews::rooms::auth::{unix_now, Claims, Keys};
use edgews::rooms::server::RoomServer;
use edgews::rooms::RoomServerConfig;
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message as TMessage;

type Ws = tungstenite::WebSocket<std::net::TcpStream>;

fn start() -> (std::net::SocketAddr, Keys, edgews::runtime::Running) {
    let mut cfg = RoomServerConfig::default();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.workers = 2;
    let keys = Keys::hs256(b"smoke", &cfg.auth);
    let keys2 = Keys::hs256(b"smoke", &cfg.auth);
    let server = RoomServer::bind(cfg, keys).unwrap();
    let addr = server.local_addr();
    (addr, keys2, server.start().unwrap())
}

fn token(keys: &Keys, sub: &str) -> String {
    keys.mint(&Claims {
        sub: sub.into(),
        name: Some(sub.to_uppercase()),
        exp: Some(unix_now() + 3600),
        ..Claims::default()
    })
    .unwrap()
}

fn open(addr: std::net::SocketAddr, tok: &str) -> Ws {
    let req = format!("ws://{addr}/ws?token={tok}")
        .into_client_request()
        .unwrap();
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (mut ws, _) = tungstenite::client(req, stream).unwrap();
    let welcome = read(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws
}

fn read(ws: &mut Ws) -> Value {
    loop {
        match ws.read().unwrap() {
            TMessage::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            TMessage::Ping(_) | TMessage::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(TMessage::text(v.to_string())).unwrap();
}

#[test]
fn two_users_chat() {
    let (addr, keys, running) = start();
    let mut a: Vec<Ws> = (0..2).map(|_| open(addr, &token(&keys, "alice"))).collect();
    let mut b = open(addr, &token(&keys, "bob"));
    send(
        &mut a[0],
        serde_json::json!({"type":"join","room":"lobby","id":1}),
    );
    let ack = read(&mut a[0]);
    assert_eq!(
        (
            ack["type"].as_str(),
            ack["id"].as_i64(),
            ack["members"].as_u64()
        ),
        (Some("ack"), Some(1), Some(1)),
        "{ack}"
    );
    send(
        &mut a[1],
        serde_json::json!({"type":"join","room":"lobby","id":"x"}),
    );
    assert_eq!(read(&mut a[1])["members"], 1, "same user, one member");
    send(
        &mut b,
        serde_json::json!({"type":"join","room":"lobby","id":2}),
    );
    assert_eq!(read(&mut b)["members"], 2);
    for ws in a.iter_mut() {
        let ev = read(ws);
        assert_eq!(
            (ev["type"].as_str(), ev["user"]["id"].as_str()),
            (Some("user_joined"), Some("bob")),
            "{ev}"
        );
    }
    send(
        &mut b,
        serde_json::json!({"type":"message","room":"lobby","data":{"text":"hi","n":[1,2]}}),
    );
    for ws in a.iter_mut().chain(std::iter::once(&mut b)) {
        let ev = read(ws);
        assert_eq!(ev["type"], "message", "{ev}");
        assert_eq!(ev["data"]["n"][1], 2);
        assert_eq!(ev["from"]["name"], "BOB");
    }
    send(
        &mut b,
        serde_json::json!({"type":"private","to":"alice","data":"psst","id":3}),
    );
    for ws in a.iter_mut() {
        let ev = read(ws);
        assert_eq!(
            (ev["type"].as_str(), ev["data"].as_str()),
            (Some("private"), Some("psst"))
        );
    }
    let ack = read(&mut b);
    assert_eq!(ack["delivered"], 2, "{ack}");
    send(
        &mut b,
        serde_json::json!({"type":"who","room":"lobby","id":4}),
    );
    let who = read(&mut b);
    assert_eq!(who["count"], 2, "{who}");
    assert_eq!(who["members"][0]["id"], "alice");
    send(
        &mut a[0],
        serde_json::json!({"type":"leave","room":"lobby"}),
    );
    assert_eq!(read(&mut a[0])["type"], "ack");
    drop(a);
    let ev = read(&mut b);
    assert_eq!(
        (ev["type"].as_str(), ev["members"].as_u64()),
        (Some("user_left"), Some(1)),
        "{ev}"
    );
    send(&mut b, serde_json::json!({"type":"bogus"}));
    assert_eq!(read(&mut b)["code"], "unknown_type");
    b.send(TMessage::text("{oops")).unwrap();
    assert_eq!(read(&mut b)["code"], "bad_json");
    send(&mut b, serde_json::json!({"type":"ping","id":9}));
    assert_eq!(read(&mut b)["type"], "pong");
    running.shutdown().unwrap();
}
