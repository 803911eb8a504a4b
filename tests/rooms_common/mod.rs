//! Harness for the room server's integration tests: an in-process
//! `RoomServer` on 127.0.0.1:0 with 2 workers and an HS256 key, tokens minted
//! with the same key, and a JSON client on tungstenite (the independent
//! implementation) whose every read is bounded by a timeout.
//!
//! Test files declare `mod common; mod rooms_common;` (this module uses the
//! raw HTTP client of `tests/common`).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use edgews::rooms::auth::{unix_now, Claims, Keys};
use edgews::rooms::server::RoomServer;
use edgews::rooms::RoomServerConfig;
use edgews::runtime::Running;
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::Message;

use crate::common::wait_until;

/// The HS256 secret every test server and token uses.
pub const SECRET: &str = "rooms integration test secret";

/// How long any single read may wait.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Most messages a `recv_*` helper skips before it gives up.
const MAX_SKIPPED: usize = 20_000;

/// The test config: 2 workers, the test secret, `auth_timeout_secs` 1, no
/// clock leeway, and no rate limit (the rate-limit tests set one).
pub fn config() -> RoomServerConfig {
    let mut c = RoomServerConfig::default();
    c.listen = "127.0.0.1:0".parse().expect("address");
    c.workers = 2;
    c.auth_timeout_secs = 1;
    c.auth.hs256_secret = Some(SECRET.to_owned());
    c.auth.leeway_secs = 0;
    c.rate_limit.messages_per_sec = 0;
    c
}

/// A room server running in this process; shut down when dropped.
pub struct Rooms {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Mints tokens with the server's key.
    pub keys: Keys,
    /// Where the admin API listens, when `admin.listen` is set.
    pub admin: Option<SocketAddr>,
    running: Option<Running>,
}

impl Rooms {
    /// Starts a room server with `cfg` (see [`config`]).
    pub fn start(cfg: RoomServerConfig) -> Rooms {
        let keys = Keys::hs256(SECRET.as_bytes(), &cfg.auth);
        let server =
            RoomServer::bind(cfg.clone(), Keys::hs256(SECRET.as_bytes(), &cfg.auth)).expect("bind");
        let addr = server.local_addr();
        let admin = server.admin_addr();
        let running = server.start().expect("start");
        Rooms {
            addr,
            keys,
            admin,
            running: Some(running),
        }
    }

    /// A handle on a room server that runs elsewhere (another process) at
    /// `addr`, with the test secret and no clock leeway.
    pub fn at(addr: SocketAddr) -> Rooms {
        Rooms::attach(addr, Keys::hs256(SECRET.as_bytes(), &config().auth))
    }

    /// A handle on a server started elsewhere (at `addr`, minting tokens
    /// with `keys`); dropping it does not stop that server.
    pub fn attach(addr: SocketAddr, keys: Keys) -> Rooms {
        Rooms {
            addr,
            keys,
            admin: None,
            running: None,
        }
    }

    /// A token for `sub` named `name`, valid for an hour.
    pub fn token(&self, sub: &str, name: &str) -> String {
        self.token_exp(sub, name, Some(unix_now() + 3600))
    }

    /// A token for `sub` named `name` with `exp` (seconds since the epoch).
    pub fn token_exp(&self, sub: &str, name: &str, exp: Option<u64>) -> String {
        let claims = Claims {
            sub: sub.to_owned(),
            name: Some(name.to_owned()),
            exp,
            ..Claims::default()
        };
        self.keys.mint(&claims).expect("mint")
    }

    /// Opens a connection for `sub` (named after it, capitalised) with
    /// `?token=` and reads its welcome.
    pub fn user(&self, sub: &str) -> Client {
        let token = self.token(sub, &display(sub));
        let mut c = self
            .open(&format!("/ws?token={token}"), &[])
            .expect("upgrade");
        let w = c.recv();
        assert_eq!(w["type"], "welcome", "first message: {w}");
        assert_eq!(w["user"]["id"], sub, "{w}");
        c.welcome = Some(w);
        c
    }

    /// Opens a WebSocket on `path` with extra request headers; no message is read.
    pub fn open(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, Box<tungstenite::Error>> {
        open(self.addr, path, headers).map(|(c, _)| c)
    }

    /// Like [`Rooms::open`], also returning the subprotocol the server selected.
    pub fn open_protocol(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Client, Option<String>), Box<tungstenite::Error>> {
        open(self.addr, path, headers)
    }

    /// A plain GET: status, head (lower-cased) and body.
    pub fn get(&self, path: &str) -> (u16, String, String) {
        get(self.addr, path, "")
    }

    /// `/api/websocket/status` as JSON.
    pub fn status(&self) -> Value {
        let (status, head, body) = self.get("/api/websocket/status");
        assert_eq!(status, 200, "{head}{body}");
        assert!(head.contains("application/json"), "{head}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("status is not JSON ({e}): {body}"))
    }

    /// The engine's per-worker count of completed upgrades (from its `/status`).
    pub fn upgrades_per_worker(&self) -> Vec<u64> {
        let (status, _, body) = self.get("/status");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("engine status JSON");
        v["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .map(|w| w["upgrades"].as_u64().expect("upgrades"))
            .collect()
    }

    /// Opens a connection for `sub` and tells which worker serves it (the
    /// one whose upgrade count went up).
    pub fn user_on_worker(&self, sub: &str) -> (Client, usize) {
        let before = self.upgrades_per_worker();
        let c = self.user(sub);
        let mut worker = None;
        assert!(
            wait_until(Duration::from_secs(2), || {
                let after = self.upgrades_per_worker();
                let moved: Vec<usize> =
                    (0..after.len()).filter(|&i| after[i] > before[i]).collect();
                worker = (moved.len() == 1).then(|| moved[0]);
                worker.is_some()
            }),
            "no single worker counted the upgrade"
        );
        (c, worker.expect("worker"))
    }

    /// Opens connections for `sub` until it has one on worker 0 and one on
    /// worker 1 (at most 24 tries); returns all of them.
    pub fn user_on_both_workers(&self, sub: &str) -> Vec<(Client, usize)> {
        let mut conns = Vec::new();
        for _ in 0..24 {
            conns.push(self.user_on_worker(sub));
            if conns.iter().any(|c| c.1 == 0) && conns.iter().any(|c| c.1 == 1) {
                return conns;
            }
        }
        panic!("24 connections of {sub} all landed on one worker");
    }

    /// Starts a graceful shutdown on another thread (it waits for the
    /// clients' close handshakes); join the handle to see it finish.
    pub fn shutdown_in_background(&mut self) -> std::thread::JoinHandle<()> {
        let running = self.running.take().expect("running");
        std::thread::spawn(move || running.shutdown().expect("clean shutdown"))
    }

    /// `/metrics` text.
    pub fn metrics(&self) -> String {
        let (status, head, body) = self.get("/metrics");
        assert_eq!(status, 200, "{head}");
        body
    }
}

impl Drop for Rooms {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown();
        }
    }
}

/// `alice` → `Alice`.
pub fn display(sub: &str) -> String {
    let mut s = sub.to_owned();
    if let Some(first) = s.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    s
}

/// Now in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn open(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Client, Option<String>), Box<tungstenite::Error>> {
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        req.headers_mut().append(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    let stream = TcpStream::connect(addr).map_err(|e| Box::new(tungstenite::Error::Io(e)))?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    let (ws, resp) = tungstenite::client(req, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => Box::new(e),
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
    })?;
    let protocol = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().expect("ascii").to_owned());
    Ok((
        Client {
            ws,
            pending: VecDeque::new(),
            next_id: 1_000_000,
            welcome: None,
        },
        protocol,
    ))
}

/// A raw GET with `extra` header lines (each ending in `\r\n`): status, head
/// (lower-cased) and body.
pub fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    let (status, text) = crate::common::http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"),
    );
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// A raw upgrade request for `path` with `extra` header lines: status, head
/// (lower-cased) and body.
pub fn upgrade(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    get(
        addr,
        path,
        &format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}"
        ),
    )
}

/// A JSON client. Messages read while looking for something else are kept
/// in order and returned by later reads.
pub struct Client {
    /// The tungstenite connection.
    pub ws: tungstenite::WebSocket<TcpStream>,
    pending: VecDeque<Value>,
    next_id: u64,
    /// The welcome, when [`Rooms::user`] opened it.
    pub welcome: Option<Value>,
}

impl Client {
    /// Sends `v` as a text frame.
    pub fn send(&mut self, v: Value) {
        self.send_text(&v.to_string());
    }

    /// Sends `text` as it is.
    pub fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .expect("send a text frame");
    }

    /// Sends a binary frame.
    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .expect("send a binary frame");
    }

    /// Reads the next message from the socket (not the pending queue).
    fn read_json(&mut self) -> Value {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("server sent invalid JSON ({e}): {t}"))
                }
                Ok(Message::Binary(b)) => panic!("server sent a binary frame: {b:?}"),
                Ok(Message::Close(c)) => panic!("connection closed: {c:?}"),
                Ok(_) => continue,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The next message.
    pub fn recv(&mut self) -> Value {
        match self.pending.pop_front() {
            Some(v) => v,
            None => self.read_json(),
        }
    }

    /// The first message matching `pred`; the others stay queued.
    pub fn recv_match(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&mut pred) {
            return self.pending.remove(i).expect("index");
        }
        for _ in 0..MAX_SKIPPED {
            let v = self.read_json();
            if pred(&v) {
                return v;
            }
            self.pending.push_back(v);
        }
        panic!("no {what} among {MAX_SKIPPED} messages");
    }

    /// The first message of type `t`; the others stay queued.
    pub fn recv_type(&mut self, t: &str) -> Value {
        self.recv_match(t, |v| v["type"] == t)
    }

    /// A fresh integer id.
    pub fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends `req` with a fresh integer `id` and returns the one reply with
    /// that id; other messages stay queued.
    pub fn request(&mut self, mut req: Value) -> Value {
        let id = self.fresh_id();
        req["id"] = json!(id);
        self.send(req);
        self.reply(&json!(id))
    }

    /// The reply carrying `id`.
    pub fn reply(&mut self, id: &Value) -> Value {
        let id = id.clone();
        self.recv_match(&format!("reply to {id}"), |v| v.get("id") == Some(&id))
    }

    /// Like [`Client::request`], asserting the reply is an ack.
    pub fn ack(&mut self, req: Value) -> Value {
        let what = req.to_string();
        let r = self.request(req);
        assert_eq!(r["type"], "ack", "{what} → {r}");
        r
    }

    /// Like [`Client::request`], asserting the reply is an error with `code`.
    pub fn error(&mut self, req: Value, code: &str) -> Value {
        let what = req.to_string();
        let r = self.request(req);
        assert_eq!(r["type"], "error", "{what} → {r}");
        assert_eq!(r["code"], code, "{what} → {r}");
        assert!(r["message"].is_string(), "an error has a message: {r}");
        r
    }

    /// Joins `room`; returns the ack's `members`.
    pub fn join(&mut self, room: &str) -> u64 {
        let r = self.ack(json!({"type": "join", "room": room}));
        assert_eq!(r["room"], room, "{r}");
        r["members"].as_u64().expect("members")
    }

    /// A ping with a fresh id; returns everything that arrived before its
    /// pong (queued messages included). Everything the server sent this
    /// connection because of its own earlier requests is in there.
    pub fn fence(&mut self) -> Vec<Value> {
        let id = json!(self.fresh_id());
        self.send(json!({"type": "ping", "id": id}));
        let mut before: Vec<Value> = self.pending.drain(..).collect();
        for _ in 0..MAX_SKIPPED {
            let v = self.read_json();
            if v["type"] == "pong" && v["id"] == id {
                return before;
            }
            before.push(v);
        }
        panic!("no pong among {MAX_SKIPPED} messages");
    }

    /// Asserts the connection is up and idle: a ping is answered and nothing
    /// else is waiting.
    pub fn assert_quiet(&mut self) {
        let got = self.fence();
        assert!(got.is_empty(), "unexpected messages: {got:?}");
    }

    /// Reads until the server's close frame and returns its code (messages
    /// before it are dropped). Panics if the TCP connection ends without one.
    pub fn expect_close(&mut self) -> u16 {
        self.pending.clear();
        loop {
            match self.ws.read() {
                Ok(Message::Close(f)) => {
                    // Send tungstenite's answer to the close.
                    let _ = self.ws.flush();
                    return f.map_or(1005, |f| u16::from(f.code));
                }
                Ok(_) => continue,
                Err(e) => panic!("no close frame: {e}"),
            }
        }
    }

    /// Closes with 1000 and waits for the server's answer.
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let end = Instant::now() + READ_TIMEOUT;
        while Instant::now() < end {
            if self.ws.read().is_err() {
                return;
            }
        }
    }
}
