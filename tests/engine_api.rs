//! Embedding API features over real sockets: the per-connection handler
//! timer, the per-IP connection limit, trusted proxies' `X-Forwarded-For`,
//! and `notify` (acting on a connection of another worker).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{config, connect, http, read_text, upgrade_request, wait_until, TestServer};
use edgews::protocol::{CloseCode, Message};
use edgews::runtime::{Accept, Conn, Handler, Reject, Request};
use tungstenite::Message as TMessage;

/// Closes a connection 4001 unless it says "login" within 300 ms; after the
/// login, "timer N" sets a timer that sends "fired" after N ms.
struct Timed;

impl Handler for Timed {
    type Data = bool;
    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<bool>, Reject> {
        // The client address the engine worked out, for the proxy tests.
        let ip = req.client_ip().map(|ip| ip.to_string()).unwrap_or_default();
        let accept = Accept::new(false);
        if req.protocols().next().is_none() {
            return Ok(accept);
        }
        Ok(accept.protocol(&format!("ip.{}", ip.replace(['.', ':'], "-"))))
    }
    fn on_open(&mut self, conn: &mut Conn<'_, bool>) {
        conn.set_timer(Duration::from_millis(300));
    }
    fn on_message(&mut self, conn: &mut Conn<'_, bool>, msg: Message<'_>) {
        match msg {
            Message::Text("login") => {
                *conn.data_mut() = true;
                conn.cancel_timer();
                conn.send_text("welcome");
            }
            Message::Text(t) if t.starts_with("timer ") => {
                let ms = t[6..].parse().unwrap_or(0);
                conn.set_timer(Duration::from_millis(ms));
            }
            _ => {}
        }
    }
    fn on_timer(&mut self, conn: &mut Conn<'_, bool>) {
        if *conn.data() {
            conn.send_text("fired");
        } else {
            conn.close(CloseCode::new(4001), "authentication timeout");
        }
    }
}

#[test]
fn handler_timer_fires_once_not_early_and_can_be_cancelled() {
    let server = TestServer::start(config(), |_| Timed);
    // No login: closed with the handler's code once the timer is due.
    let started = Instant::now();
    let mut ws = connect(server.addr);
    match ws.read() {
        Ok(TMessage::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected close 4001, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "never early"
    );

    // Logged in: the timer was cancelled; a new one fires once.
    let mut ws = connect(server.addr);
    ws.send(TMessage::text("login")).unwrap();
    assert_eq!(read_text(&mut ws), "welcome");
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    ws.send(TMessage::text("timer 200")).unwrap();
    assert_eq!(read_text(&mut ws), "fired");
    assert!(asked.elapsed() >= Duration::from_millis(200));
    // Replacing a timer: only the last one fires.
    ws.send(TMessage::text("timer 5000")).unwrap();
    ws.send(TMessage::text("timer 100")).unwrap();
    assert_eq!(read_text(&mut ws), "fired");
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    assert!(ws.read().is_err(), "no second firing within 700 ms");
}

/// An upgrade that tolerates being cut off (the per-IP limit closes at accept).
fn try_upgrade(addr: std::net::SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(upgrade_request("").as_bytes()).is_err() {
        return String::new();
    }
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

fn upgrade(addr: std::net::SocketAddr, extra: &str) -> (u16, String) {
    http(addr, &upgrade_request(extra))
}

#[test]
fn per_ip_limit_closes_extra_sockets_at_accept_and_frees_slots() {
    let server = TestServer::start(config().max_connections_per_ip(3), |_| Timed);
    let mut open: Vec<_> = (0..3).map(|_| connect(server.addr)).collect();
    for ws in &mut open {
        ws.send(TMessage::text("login")).unwrap();
        assert_eq!(read_text(ws), "welcome");
    }
    // The fourth socket from 127.0.0.1 is closed at once, before any HTTP.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(upgrade_request("").as_bytes());
    let mut buf = [0u8; 64];
    assert!(
        matches!(s.read(&mut buf), Ok(0) | Err(_)),
        "closed without an answer"
    );
    // One leaves: its slot comes back.
    drop(open.pop());
    assert!(wait_until(Duration::from_secs(5), || {
        try_upgrade(server.addr).starts_with("HTTP/1.1 101")
    }));
    let rejected: u64 = server
        .handle
        .worker_stats()
        .iter()
        .map(|w| w.rejected[edgews::runtime::stats::RejectReason::IpLimit as usize].get())
        .sum();
    assert!(rejected >= 1, "counted: {rejected}");
}

#[test]
fn trusted_proxy_counts_the_forwarded_client_and_spoofing_is_ignored() {
    let cfg = config()
        .max_connections_per_ip(2)
        .trusted_proxies(vec!["127.0.0.0/8".parse().unwrap()]);
    let server = TestServer::start(cfg, |_| Timed);
    let xff = |ip: &str| format!("X-Forwarded-For: {ip}\r\nSec-WebSocket-Protocol: x\r\n");
    // Behind the proxy (127.0.0.1 is trusted), each client has its own count.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(upgrade_request(&xff("203.0.113.5")).as_bytes())
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains("ip.203-0-113-5"),
            "client_ip is the forwarded one: {head}"
        );
        held.push(s);
    }
    let (status, _) = upgrade(server.addr, &xff("203.0.113.5"));
    assert_eq!(status, 429, "third connection of the same client");
    let (status, _) = upgrade(server.addr, &xff("203.0.113.6"));
    assert_eq!(status, 101, "another client is not affected");
    // A client that writes its own X-Forwarded-For before the proxy's entry
    // cannot pick the address it is counted under.
    let (status, _) = upgrade(server.addr, &xff("198.51.100.1, 203.0.113.5"));
    assert_eq!(status, 429, "the rightmost untrusted entry counts");
    drop(held);
}

#[test]
fn untrusted_peer_forwarded_for_is_not_believed() {
    let server = TestServer::start(config().max_connections_per_ip(1), |_| Timed);
    let mut buf = [0u8; 512];
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(
        upgrade_request("X-Forwarded-For: 203.0.113.9\r\nSec-WebSocket-Protocol: x\r\n").as_bytes(),
    )
    .unwrap();
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        head.contains("ip.127-0-0-1"),
        "peer address, not the header: {head}"
    );
}

/// In-order joins: "join" subscribes to `r`; "after" publishes m1..m3
/// through the handle (they wait in this worker's channel), then joins `r`
/// with `subscribe_in_order` (or plainly with "plain"), then publishes m4
/// and m5 itself.
struct Ordered;

impl Handler for Ordered {
    type Data = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Result<Accept<()>, Reject> {
        Ok(Accept::new(()))
    }
    fn on_message(&mut self, conn: &mut Conn<'_, ()>, msg: Message<'_>) {
        match msg {
            Message::Text("join") => {
                conn.subscribe("r");
                conn.send_text("joined");
            }
            Message::Text(t @ ("after" | "plain")) => {
                let handle = conn.handle().clone();
                for n in 1..=3 {
                    handle.publish("r", Message::Text(&format!("m{n}")));
                }
                if t == "after" {
                    conn.subscribe_in_order("r");
                } else {
                    conn.subscribe("r");
                }
                conn.publish("r", Message::Text("m4"));
                conn.publish("r", Message::Text("m5"));
            }
            _ => {}
        }
    }
}

/// Reads text messages until `last` arrives (bounded by the read timeout).
fn read_until(ws: &mut common::Ws, last: &str) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..100 {
        let t = read_text(ws);
        let done = t == last;
        got.push(t);
        if done {
            return got;
        }
    }
    panic!("no {last} in {got:?}");
}

#[test]
fn subscribe_in_order_skips_what_was_sent_before_and_keeps_order() {
    let server = TestServer::start(config().workers(1), |_| Ordered);
    let mut member = connect(server.addr);
    member.send(TMessage::text("join")).unwrap();
    assert_eq!(read_text(&mut member), "joined");
    let mut late = connect(server.addr);
    late.send(TMessage::text("after")).unwrap();
    // m1..m3 were still in the worker's channel when `late` joined.
    assert_eq!(read_until(&mut late, "m5"), ["m4", "m5"]);
    assert_eq!(
        read_until(&mut member, "m5"),
        ["m1", "m2", "m3", "m4", "m5"],
        "the worker's own publishes come after the ones sent to it before"
    );
    // A plain join gets the publishes that were on their way: what the
    // first assertion checks is the in-order join, not the timing.
    let mut plain = connect(server.addr);
    plain.send(TMessage::text("plain")).unwrap();
    assert_eq!(read_until(&mut plain, "m5"), ["m1", "m2", "m3", "m4", "m5"]);
    server.stop();
}

/// Connections register under a name ("name X"); "notify X P" hands payload
/// P to X's handler through `Conn::notify`. The notified connection leaves
/// room "r" (as an application's kick would) and reports on which worker
/// its handler ran.
struct Notified {
    names: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, edgews::runtime::ConnId>>,
    >,
}

impl Handler for Notified {
    type Data = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Result<Accept<()>, Reject> {
        Ok(Accept::new(()))
    }
    fn on_open(&mut self, conn: &mut Conn<'_, ()>) {
        conn.subscribe("r");
        conn.send_text(&format!("worker {}", conn.id().worker()));
    }
    fn on_message(&mut self, conn: &mut Conn<'_, ()>, msg: Message<'_>) {
        let Message::Text(t) = msg else { return };
        if let Some(name) = t.strip_prefix("name ") {
            self.names.lock().unwrap().insert(name.into(), conn.id());
            conn.send_text("named");
        } else if let Some(rest) = t.strip_prefix("notify ") {
            let (name, payload) = rest.split_once(' ').unwrap_or((rest, ""));
            let id = self.names.lock().unwrap().get(name).copied();
            let sent = id.is_some_and(|id| conn.notify(id, payload.as_bytes()));
            conn.send_text(&format!("sent {sent}"));
        }
    }
    fn on_notify(&mut self, conn: &mut Conn<'_, ()>, payload: &[u8]) {
        let was_member = conn.unsubscribe("r");
        conn.publish("r", Message::Text("someone left"));
        conn.send_text(&format!(
            "notified {} on worker {} (was member: {was_member})",
            String::from_utf8_lossy(payload),
            conn.id().worker()
        ));
    }
}

#[test]
fn notify_runs_the_targets_handler_on_its_own_worker() {
    // `notify` is a worker command: the connection slot does not grow for it.
    let slot = edgews::runtime::connection_bytes::<()>();
    assert!(slot <= 48, "Connection<()> grew to {slot} bytes");
    let names = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let mut cfg = config();
    cfg.workers = 2;
    let n = names.clone();
    let server = TestServer::start(cfg, move |_| Notified { names: n.clone() });
    // One connection on each worker (at most 20 tries).
    let mut on: [Option<common::Ws>; 2] = [None, None];
    for _ in 0..20 {
        let mut ws = connect(server.addr);
        let w: usize = read_text(&mut ws)[7..].parse().unwrap();
        on[w].get_or_insert(ws);
        if on.iter().all(Option::is_some) {
            break;
        }
    }
    let [Some(mut a), Some(mut b)] = on else {
        panic!("the two workers never both got a connection in 20 tries");
    };
    a.send(TMessage::text("name a")).unwrap();
    assert_eq!(read_text(&mut a), "named");
    // b (worker 1) notifies a (worker 0): a's own handler runs, on worker 0.
    b.send(TMessage::text("notify a kick")).unwrap();
    assert_eq!(read_text(&mut b), "sent true");
    assert_eq!(
        read_text(&mut a),
        "notified kick on worker 0 (was member: true)"
    );
    // a left "r" in its handler: b (still a member) hears it, a does not.
    assert_eq!(read_text(&mut b), "someone left");
    // From a thread of its own, through the ServerHandle.
    let id = names.lock().unwrap()["a"];
    assert!(server.handle.notify(id, b"again"));
    assert_eq!(
        read_text(&mut a),
        "notified again on worker 0 (was member: false)"
    );
    assert_eq!(read_text(&mut b), "someone left");
    // A stale id: once a is gone, notifying it does nothing (b hears nothing).
    a.close(None).unwrap();
    while a.read().is_ok() {}
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.handle.notify(id, b"late"), "the worker is there");
    b.get_mut()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        b.read().is_err(),
        "a closed connection's handler never runs"
    );
}
