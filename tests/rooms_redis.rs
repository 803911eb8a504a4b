//! Scale-out through Redis (`broker = "redis"`), on real processes: Debian's
//! `redis-server` on a free loopback port and 3 `edgews serve` nodes, with
//! tungstenite clients spread over them.
//!
//! Without `redis-server` the tests skip with a message, unless
//! `EDGEWS_REQUIRE_REDIS=1` (CI), which makes them fail instead.

mod common;
mod rooms_common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::wait_until;
use rooms_common::{Client, Rooms, SECRET};
use serde_json::{json, Value};

/// Node heartbeat TTL in these tests: a killed node's users leave within it
/// (plus one reaping round).
const TTL_SECS: u64 = 2;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn redis_server() -> Option<String> {
    let found = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string());
    if found.is_none() {
        assert!(
            std::env::var("EDGEWS_REQUIRE_REDIS").as_deref() != Ok("1"),
            "EDGEWS_REQUIRE_REDIS=1 but redis-server is not installed (apt-get install redis-server)"
        );
        eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
    }
    found
}

/// A `redis-server` on a loopback port, no persistence.
struct Redis {
    bin: String,
    port: u16,
    proc: Option<Proc>,
}

impl Redis {
    fn start() -> Option<Redis> {
        let bin = redis_server()?;
        let mut r = Redis {
            bin,
            port: free_port(),
            proc: None,
        };
        r.restart();
        Some(r)
    }

    fn restart(&mut self) {
        let child = Command::new(&self.bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.proc = Some(Proc(child));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
            "redis-server listens on {addr}"
        );
    }

    fn kill(&mut self) {
        self.proc = None;
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `redis-cli`-free: one command over RESP, the reply as text.
    fn cmd(&self, args: &[&str]) -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect redis");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// One `edgews serve` node.
struct Node {
    proc: Proc,
    rooms: Rooms,
}

impl Node {
    fn start(redis: &Redis, drain_window_secs: u64) -> Node {
        Node::start_at(&redis.url(), drain_window_secs)
    }

    fn start_at(redis_url: &str, drain_window_secs: u64) -> Node {
        Node::start_with(redis_url, drain_window_secs, &[])
    }

    fn start_with(redis_url: &str, drain_window_secs: u64, extra: &[&str]) -> Node {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let set = |kv: String| ["--set".to_owned(), kv];
        let mut args = vec![
            "serve".to_owned(),
            "--listen".into(),
            addr.to_string(),
            "--workers".into(),
            "2".into(),
        ];
        for kv in [
            "broker=redis".to_owned(),
            format!("redis.url={redis_url}"),
            format!("redis.node_ttl_secs={TTL_SECS}"),
            "redis.probe_interval_ms=200".into(),
            format!("auth.hs256_secret={SECRET}"),
            "auth.leeway_secs=0".into(),
            "rate_limit.messages_per_sec=0".into(),
            format!("drain_window_secs={drain_window_secs}"),
        ]
        .into_iter()
        .chain(extra.iter().map(|s| s.to_string()))
        {
            args.extend(set(kv));
        }
        let child = Command::new(env!("CARGO_BIN_EXE_edgews"))
            .args(&args)
            .env("EDGEWS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn edgews");
        let mut proc = Proc(child);
        assert!(
            wait_until(Duration::from_secs(10), || {
                matches!(proc.0.try_wait(), Ok(Some(_))) || TcpStream::connect(addr).is_ok()
            }),
            "edgews listens"
        );
        assert!(matches!(proc.0.try_wait(), Ok(None)), "edgews is running");
        let rooms = Rooms::at(addr);
        let node = Node { proc, rooms };
        assert!(
            wait_until(Duration::from_secs(10), || node.health().0 == 200),
            "the node's broker comes up: {:?}",
            node.health()
        );
        node
    }

    fn health(&self) -> (u16, String) {
        let (status, _, body) = self.rooms.get("/healthz");
        (status, body)
    }

    fn user(&self, sub: &str) -> Client {
        self.rooms.user(sub)
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.proc.0.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

fn start(n: usize) -> Option<(Redis, Vec<Node>)> {
    let redis = Redis::start()?;
    let nodes = (0..n).map(|_| Node::start(&redis, 2)).collect();
    Some((redis, nodes))
}

fn who_all(c: &mut Client, room: &str, limit: u64) -> (u64, Vec<Value>) {
    let mut cursor: Option<String> = None;
    let mut all = Vec::new();
    let mut count = 0;
    for _ in 0..100 {
        let mut req = json!({"type": "who", "room": room, "limit": limit});
        if let Some(c) = &cursor {
            req["cursor"] = json!(c);
        }
        let r = c.ack(req);
        count = r["count"].as_u64().expect("count");
        all.extend(r["members"].as_array().expect("members").iter().cloned());
        match r["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => return (count, all),
        }
    }
    (count, all)
}

fn ids(members: &[Value]) -> Vec<String> {
    members
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn rooms_private_messages_presence_and_who_span_three_nodes() {
    let Some((_redis, nodes)) = start(3) else {
        return;
    };
    let mut alice = nodes[0].user("alice");
    let mut bob = nodes[1].user("bob");
    let mut carol = nodes[2].user("carol");
    assert_eq!(alice.join("lobby"), 1);
    assert_eq!(bob.join("lobby"), 2, "bob on another node sees alice");
    assert_eq!(carol.join("lobby"), 3);
    let j = alice.recv_type("user_joined");
    assert_eq!(j["user"]["id"], "bob", "{j}");
    let j = alice.recv_type("user_joined");
    assert_eq!(j["user"]["id"], "carol", "{j}");
    assert_eq!(j["members"], 3, "{j}");

    // Room messages cross nodes in order.
    for i in 0..100 {
        alice.send(json!({"type": "message", "room": "lobby", "data": {"n": i}}));
    }
    for c in [&mut bob, &mut carol] {
        for i in 0..100 {
            let m = c.recv_type("message");
            assert_eq!(m["data"]["n"], i, "in order: {m}");
            assert_eq!(m["from"]["id"], "alice");
        }
    }
    for i in 0..100 {
        assert_eq!(alice.recv_type("message")["data"]["n"], i);
    }

    // A user on two nodes is one member.
    let mut dave_a = nodes[0].user("dave");
    let mut dave_b = nodes[1].user("dave");
    assert_eq!(dave_a.join("lobby"), 4);
    assert_eq!(
        dave_b.join("lobby"),
        4,
        "dave's second connection is no new member"
    );

    // Private messages reach every connection of the user, on any node.
    let r = carol.ack(json!({"type": "private", "to": "dave", "data": "psst"}));
    assert_eq!(r["delivered"], 2, "{r}");
    for d in [&mut dave_a, &mut dave_b] {
        let p = d.recv_type("private");
        assert_eq!(p["data"], "psst", "{p}");
        assert_eq!(p["from"]["id"], "carol");
    }
    carol.error(
        json!({"type": "private", "to": "nobody", "data": 1}),
        "user_offline",
    );

    // Presence and who, paged across nodes.
    carol.ack(json!({"type": "presence", "status": "away"}));
    let p = bob.recv_type("presence");
    assert_eq!(p["user"]["id"], "carol", "{p}");
    let (count, members) = who_all(&mut bob, "lobby", 2);
    assert_eq!(count, 4);
    assert_eq!(ids(&members), ["alice", "bob", "carol", "dave"]);
    assert_eq!(members[2]["status"], "away", "{members:?}");
    assert_eq!(members[0]["name"], "Alice");

    // Cluster-wide counts, from any node (refreshed every probe interval).
    assert!(
        wait_until(Duration::from_secs(5), || {
            let m = nodes[2].rooms.metrics();
            m.contains("edgews_broker_cluster_nodes 3")
                && m.contains("edgews_broker_cluster_users_online 4")
                && m.contains("edgews_broker_cluster_connections 5")
        }),
        "{}",
        nodes[2].rooms.metrics()
    );
    let (code, _, body) = nodes[1].rooms.get("/status");
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(
        status["app"]["broker"]["cluster"]["connections"], 5,
        "{status}"
    );

    // Leaving: one connection of dave is not dave leaving.
    let r = dave_a.ack(json!({"type": "leave", "room": "lobby"}));
    assert_eq!(r["members"], 4, "{r}");
    let r = dave_b.ack(json!({"type": "leave", "room": "lobby"}));
    assert_eq!(r["members"], 3, "{r}");
    let l = carol.recv_type("user_left");
    assert_eq!(l["user"]["id"], "dave", "{l}");
    assert_eq!(l["members"], 3);
    // Closing a connection leaves its rooms cluster-wide too.
    bob.close();
    let l = carol.recv_type("user_left");
    assert_eq!(l["user"]["id"], "bob", "{l}");
    let (count, members) = who_all(&mut alice, "lobby", 100);
    assert_eq!(
        (count, ids(&members)),
        (2, vec!["alice".into(), "carol".into()])
    );
}

#[test]
fn a_killed_nodes_users_leave_within_the_ttl() {
    let Some((_redis, mut nodes)) = start(3) else {
        return;
    };
    let mut alice = nodes[0].user("alice");
    let mut bob = nodes[1].user("bob");
    let mut carol = nodes[2].user("carol");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.join("room");
    }
    assert_eq!(who_all(&mut alice, "room", 10).0, 3);
    let killed = Instant::now();
    nodes[2].signal("KILL");
    let l = alice.recv_type("user_left");
    assert_eq!(l["user"]["id"], "carol", "{l}");
    assert_eq!(l["members"], 2, "{l}");
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(3 * TTL_SECS),
        "carol left {took:?} after her node died (TTL {TTL_SECS} s)"
    );
    let l = bob.recv_type("user_left");
    assert_eq!(l["user"]["id"], "carol", "{l}");
    let (count, members) = who_all(&mut bob, "room", 10);
    assert_eq!(
        (count, ids(&members)),
        (2, vec!["alice".into(), "bob".into()])
    );
    let r = alice.request(json!({"type": "private", "to": "carol", "data": 1}));
    assert_eq!(r["code"], "user_offline", "{r}");
    nodes.pop();
}

#[test]
fn redis_down_is_reported_never_silent_and_service_resumes() {
    let Some((mut redis, nodes)) = start(3) else {
        return;
    };
    let mut alice = nodes[0].user("alice");
    let mut bob = nodes[1].user("bob");
    let mut carol = nodes[2].user("carol");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.join("live");
    }
    alice.send(json!({"type": "message", "room": "live", "data": "before"}));
    assert_eq!(bob.recv_type("message")["data"], "before");
    assert_eq!(alice.recv_type("message")["data"], "before");

    redis.kill();
    assert!(
        wait_until(Duration::from_secs(10), || nodes[0].health().0 == 503),
        "healthz reports the broker down"
    );
    let (_, reason) = nodes[0].health();
    assert!(reason.contains("broker"), "a reason: {reason}");
    // Local traffic still flows; what cannot cross is remembered.
    for i in 0..5 {
        alice.send(json!({"type": "message", "room": "live", "data": i}));
    }
    for i in 0..5 {
        assert_eq!(
            alice.recv_type("message")["data"],
            i,
            "local delivery goes on"
        );
    }
    let m = nodes[0].rooms.metrics();
    assert!(m.contains("edgews_broker_up 0"), "{m}");

    redis.restart();
    for n in &nodes {
        assert!(
            wait_until(Duration::from_secs(15), || n.health().0 == 200),
            "the broker comes back: {:?}",
            n.health()
        );
    }
    // Bob and carol missed alice's messages: they are told, not left guessing.
    for c in [&mut bob, &mut carol] {
        let g = c.recv_type("gap");
        assert_eq!(g["room"], "live", "{g}");
    }
    // And the service resumes, presence resynced into the new Redis.
    alice.send(json!({"type": "message", "room": "live", "data": "after"}));
    assert_eq!(
        bob.recv_match("after", |v| v["data"] == "after")["from"]["id"],
        "alice"
    );
    let (count, members) = who_all(&mut carol, "live", 10);
    assert_eq!(count, 3, "{members:?} {}", redis.cmd(&["KEYS", "*"]));
    let m = nodes[0].rooms.metrics();
    assert!(m.contains("edgews_broker_up 1"), "{m}");
    let reconnects = m
        .lines()
        .find_map(|l| l.strip_prefix("edgews_broker_reconnects_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(reconnects >= Some(1), "{m}");
}

#[test]
fn a_draining_node_spreads_its_clients_reconnects_over_the_window() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let window = 2;
    let a = Node::start(&redis, window);
    let b = Node::start(&redis, window);
    let mut watcher = b.user("watcher");
    watcher.join("hall");
    let mut clients: Vec<(String, Client)> = (0..8)
        .map(|i| {
            let sub = format!("u{i}");
            let mut c = a.user(&sub);
            c.join("hall");
            (sub, c)
        })
        .collect();
    assert_eq!(who_all(&mut watcher, "hall", 100).0, 9);
    a.signal("TERM");
    let mut delays = Vec::new();
    for (_, c) in &mut clients {
        let r = c.recv_type("drain");
        let after = r["reconnect_after_ms"]
            .as_u64()
            .expect("reconnect_after_ms");
        assert!(after < window * 1000, "{r}");
        delays.push(after);
        assert_eq!(c.expect_close(), 1001);
    }
    delays.sort_unstable();
    delays.dedup();
    assert!(delays.len() >= 6, "the hints are spread: {delays:?}");
    // The clients come back on the other node, and nobody is counted twice.
    let _back: Vec<Client> = clients
        .iter()
        .map(|(sub, _)| {
            let mut c = b.user(sub);
            c.join("hall");
            c
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (count, members) = who_all(&mut watcher, "hall", 100);
        if count == 9 && members.len() == 9 {
            break;
        }
        assert!(Instant::now() < deadline, "{count} {members:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = redis.cmd(&["PING"]);
}

/// A TCP proxy in front of Redis that can stop passing Redis's bytes to the
/// connections that subscribed (the node's subscription goes quiet while
/// its command connection keeps working: a wedged subscription).
struct Proxy {
    port: u16,
    freeze: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let freeze = Arc::new(AtomicBool::new(false));
        let f = freeze.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                // Connections accepted while frozen pass freely (the resubscription).
                let frozen_at_start = f.load(Ordering::Relaxed);
                let subscriber = Arc::new(AtomicBool::new(false));
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let sub = subscriber.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c2.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if buf[..n]
                            .windows(9)
                            .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
                        {
                            sub.store(true, Ordering::Relaxed);
                        }
                        if s2.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
                let f = f.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = server.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        // A wedge: Redis's bytes stop reaching the subscriber.
                        while !frozen_at_start
                            && f.load(Ordering::Relaxed)
                            && subscriber.load(Ordering::Relaxed)
                        {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Proxy { port, freeze }
    }
}

#[test]
fn a_wedged_subscription_is_detected_reported_and_redone() {
    use std::sync::atomic::Ordering;
    let Some(redis) = Redis::start() else {
        return;
    };
    let proxy = Proxy::start(redis.port);
    let a = Node::start_at(&format!("redis://127.0.0.1:{}/", proxy.port), 2);
    let b = Node::start(&redis, 2);
    let mut alice = a.user("alice");
    let mut bob = b.user("bob");
    alice.join("w");
    bob.join("w");
    bob.send(json!({"type": "message", "room": "w", "data": "before"}));
    assert_eq!(
        alice.recv_match("before", |v| v["data"] == "before")["from"]["id"],
        "bob"
    );

    let wedged = |n: &Node| {
        n.rooms
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix("edgews_broker_wedged_total "))
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(wedged(&a), Some(0));
    proxy.freeze.store(true, Ordering::Relaxed);
    // No probe comes back for 3 intervals (600 ms) while Redis answers:
    // detected, counted, and the subscription is redone on a new connection
    // (the wedge lasts about 3 intervals, so /healthz is 503 only briefly).
    assert!(
        wait_until(Duration::from_secs(10), || wedged(&a) >= Some(1)),
        "the wedge is detected"
    );
    assert!(
        wait_until(Duration::from_secs(15), || a.health().0 == 200),
        "the node resubscribes: {:?}",
        a.health()
    );
    // Alice is told she may have missed messages, and they flow again.
    assert_eq!(alice.recv_type("gap")["room"], "w");
    bob.send(json!({"type": "message", "room": "w", "data": "after"}));
    assert_eq!(
        alice.recv_match("after", |v| v["data"] == "after")["from"]["id"],
        "bob"
    );
}

#[test]
fn the_per_user_connection_limit_counts_every_node() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let limit = ["max_connections_per_user=2"];
    let a = Node::start_with(&redis.url(), 2, &limit);
    let b = Node::start_with(&redis.url(), 2, &limit);
    let mut first = a.user("erin");
    let mut second = b.user("erin");
    first.assert_quiet();
    second.assert_quiet();
    // A third connection, on either node, is one too many.
    let mut third = a.user("erin");
    assert_eq!(third.expect_close(), 4029);
    let mut third = b.user("erin");
    assert_eq!(third.expect_close(), 4029);
    // The first two are untouched; another user is not affected.
    first.assert_quiet();
    second.assert_quiet();
    b.user("frank").assert_quiet();
    // Once one closes, a new connection fits again.
    first.close();
    assert!(
        wait_until(Duration::from_secs(5), || redis
            .cmd(&["HGET", "edgews:uc:", "erin"])
            .ends_with("\r\n1\r\n")),
        "erin's connections over the cluster: {}",
        redis.cmd(&["HGET", "edgews:uc:", "erin"])
    );
    let mut again = b.user("erin");
    again.fence();
    again.assert_quiet();
}

#[test]
fn recovery_is_refused_never_partial_until_history_lives_in_redis() {
    let Some((_redis, nodes)) = start(2) else {
        return;
    };
    let mut alice = nodes[0].user("alice");
    let j = alice.ack(json!({"type": "join", "room": "hist"}));
    assert!(j["epoch"].is_string() && j["offset"].is_u64(), "{j}");
    let epoch = j["epoch"].clone();
    for i in 0..3 {
        alice.ack(json!({"type": "message", "room": "hist", "data": i}));
    }
    // Node 1's history has none of node 0's messages: recovering from it
    // would leave a silent gap, so it is refused, on either node.
    for node in &nodes {
        let mut bob = node.user("bob");
        let j = bob
            .ack(json!({"type": "join", "room": "hist", "since": {"epoch": epoch, "offset": 0}}));
        assert_eq!(
            (&j["recovered"], &j["reason"]),
            (&json!(false), &json!("history_disabled")),
            "{j}"
        );
        bob.error(
            json!({"type": "history", "room": "hist"}),
            "history_unavailable",
        );
    }
}
