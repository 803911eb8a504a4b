//! The embedding API: callbacks, per-connection data, drain, shutdown.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, connect, read_text, wait_until, Raw, TestServer};
use edgews::protocol::{CloseCode, Message};
use edgews::runtime::{Accept, CloseInfo, Conn, Handler, Reject, Request, SendStatus};
use tungstenite::Message as TMessage;

#[derive(Default)]
struct Log {
    opened: Vec<String>,
    closed: Vec<(String, u16, bool, u64)>,
    drained: usize,
}

/// Counts messages per connection (its Data), answers "count" with the
/// count, and "flood" by sending until backpressure.
struct Recorder {
    log: Arc<Mutex<Log>>,
}

struct PerConn {
    name: String,
    messages: u64,
}

impl Handler for Recorder {
    type Data = PerConn;
    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<PerConn>, Reject> {
        let name = req.path().trim_start_matches('/').to_owned();
        Ok(Accept::new(PerConn { name, messages: 0 }))
    }
    fn on_open(&mut self, conn: &mut Conn<'_, PerConn>) {
        self.log
            .lock()
            .unwrap()
            .opened
            .push(conn.data().name.clone());
        conn.send_text("welcome");
    }
    fn on_message(&mut self, conn: &mut Conn<'_, PerConn>, msg: Message<'_>) {
        conn.data_mut().messages += 1;
        match msg {
            Message::Text("count") => {
                let n = conn.data().messages;
                conn.send_text(&n.to_string());
            }
            Message::Text("flood") => {
                let blob = vec![1u8; 32 << 10];
                while conn.send_binary(&blob) == SendStatus::Sent {}
                assert!(conn.buffered_bytes() > 64 << 10);
            }
            _ => {}
        }
    }
    fn on_drain(&mut self, conn: &mut Conn<'_, PerConn>) {
        self.log.lock().unwrap().drained += 1;
        conn.send_text("drained");
    }
    fn on_close(&mut self, conn: &mut Conn<'_, PerConn>, close: CloseInfo<'_>) {
        let d = conn.data();
        let entry = (d.name.clone(), close.code.get(), close.by_peer, d.messages);
        self.log.lock().unwrap().closed.push(entry);
    }
}

fn connect_path(addr: std::net::SocketAddr, path: &str) -> common::Ws {
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}/{path}"), stream).unwrap();
    ws
}

#[test]
fn callbacks_fire_once_with_the_connections_own_data() {
    let log = Arc::new(Mutex::new(Log::default()));
    let l = log.clone();
    let server = TestServer::start(config(), move |_| Recorder { log: l.clone() });
    let mut a = connect_path(server.addr, "alice");
    let mut b = connect_path(server.addr, "bob");
    assert_eq!(read_text(&mut a), "welcome");
    assert_eq!(read_text(&mut b), "welcome");
    for _ in 0..3 {
        a.send(TMessage::text("x")).unwrap();
    }
    a.send(TMessage::text("count")).unwrap();
    b.send(TMessage::text("count")).unwrap();
    assert_eq!(read_text(&mut a), "4");
    assert_eq!(read_text(&mut b), "1");
    // alice closes cleanly; bob's TCP connection just drops.
    a.close(None).unwrap();
    while a.read().is_ok() {}
    drop(b);
    let done = wait_until(Duration::from_secs(3), || {
        log.lock().unwrap().closed.len() == 2
    });
    assert!(done, "{:?}", log.lock().unwrap().closed);
    let log = log.lock().unwrap();
    let mut opened = log.opened.clone();
    opened.sort();
    assert_eq!(opened, ["alice", "bob"]);
    let mut closed = log.closed.clone();
    closed.sort();
    assert_eq!(
        closed,
        [
            ("alice".into(), 1005, true, 4),
            ("bob".into(), 1006, true, 1)
        ]
    );
}

#[test]
fn drain_follows_backpressure() {
    let log = Arc::new(Mutex::new(Log::default()));
    let l = log.clone();
    let cfg = config().workers(1).backpressure_bytes(64 << 10);
    let server = TestServer::start(cfg, move |_| Recorder { log: l.clone() });
    let mut ws = connect(server.addr);
    assert_eq!(read_text(&mut ws), "welcome");
    ws.send(TMessage::text("flood")).unwrap();
    // Read everything: binaries, then the handler's "drained".
    let mut binaries = 0;
    loop {
        match common::read_data(&mut ws) {
            TMessage::Binary(b) => {
                assert_eq!(b.len(), 32 << 10);
                binaries += 1;
            }
            TMessage::Text(t) => {
                assert_eq!(t.as_str(), "drained");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(binaries >= 2, "{binaries}");
    assert_eq!(log.lock().unwrap().drained, 1);
}

#[test]
fn graceful_shutdown_closes_everyone_with_1001() {
    let log = Arc::new(Mutex::new(Log::default()));
    let l = log.clone();
    let server = TestServer::start(config(), move |_| Recorder { log: l.clone() });
    let mut raws: Vec<Raw> = (0..10).map(|_| Raw::connect(server.addr)).collect();
    for r in &mut raws {
        assert_eq!(r.next(), common::Got::Text("welcome".into()));
    }
    let handle = server.handle.clone();
    let stopper = std::thread::spawn(move || server.stop());
    for r in &mut raws {
        let (code, reason) = r.expect_close();
        assert_eq!(
            (code, reason.as_str()),
            (CloseCode::GOING_AWAY.get(), "server shutting down")
        );
        r.close(CloseCode::GOING_AWAY, "");
    }
    stopper.join().unwrap();
    assert!(handle.is_shutting_down());
    assert_eq!(handle.connections(), 0);
    let log = log.lock().unwrap();
    assert_eq!(log.closed.len(), 10);
    assert!(log.closed.iter().all(|c| c.1 == 1001 && !c.2));
    // New connections are refused once the listeners are closed.
    assert!(std::net::TcpStream::connect(handle.local_addr()).is_err());
}
