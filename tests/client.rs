//! The client API (`edgews::client::Connection`) over real sockets on
//! 127.0.0.1: against an independent server (tungstenite), against the
//! edgews server with permessage-deflate, and against raw servers that send
//! what a well-behaved server never would. Every loop is bounded in time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{config, TestServer};
use edgews::client::{Config, Connection, Error, Event, Sender, State};
use edgews::protocol::deflate::DeflateOffer;
use edgews::protocol::handshake::accept_key;
use edgews::protocol::{CloseCode, Message};
use edgews::runtime::Compression;
use mio::{Events, Poll, Token};

/// The longest any one client run may take.
const LIMIT: Duration = Duration::from_secs(10);

/// Drives `conn` until it is closed or `LIMIT` passes (which fails the test).
fn drive(mut conn: Connection, mut f: impl FnMut(Event<'_>, &mut Sender)) -> Connection {
    let mut poll = Poll::new().expect("poll");
    conn.register(poll.registry(), Token(0)).expect("register");
    let mut events = Events::with_capacity(8);
    let end = Instant::now() + LIMIT;
    loop {
        let now = Instant::now();
        assert!(now < end, "client still {:?} after {LIMIT:?}", conn.state());
        let wake = conn.deadline().map_or(end, |d| d.min(end));
        poll.poll(&mut events, Some(wake.saturating_duration_since(now)))
            .expect("poll");
        if conn.ready(&mut f) == State::Closed {
            return conn;
        }
    }
}

/// Owned copy of what the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Open,
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16),
}

fn seen(ev: &Event<'_>) -> Seen {
    match *ev {
        Event::Open => Seen::Open,
        Event::Message(Message::Text(t)) => Seen::Text(t.to_owned()),
        Event::Message(Message::Binary(b)) => Seen::Binary(b.to_vec()),
        Event::Ping(p) => Seen::Ping(p.to_vec()),
        Event::Pong(p) => Seen::Pong(p.to_vec()),
        Event::Close(c) => Seen::Close(c.code.get()),
        _ => panic!("an event this test does not know: {ev:?}"),
    }
}

fn connect(addr: SocketAddr, config: &Config) -> Connection {
    Connection::connect(addr, &addr.to_string(), "/", config).expect("connect")
}

#[test]
fn talks_to_an_independent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(LIMIT)).expect("timeout");
        let mut ws = tungstenite::accept(stream).expect("server handshake");
        let mut got = Vec::new();
        ws.send(tungstenite::Message::Ping(b"are you there".to_vec().into()))
            .expect("ping");
        loop {
            match ws.read() {
                Ok(m @ (tungstenite::Message::Text(_) | tungstenite::Message::Binary(_))) => {
                    ws.send(m).expect("echo");
                }
                Ok(m @ tungstenite::Message::Pong(_)) => got.push(m),
                Ok(tungstenite::Message::Close(frame)) => {
                    got.push(tungstenite::Message::Close(frame));
                }
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => return got,
                Err(e) => panic!("server: {e}"),
            }
        }
    });
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let mut log = Vec::new();
    let conn = drive(connect(addr, &Config::default()), |ev, sender| {
        log.push(seen(&ev));
        match ev {
            Event::Open => {
                sender.send(Message::Text("héllo")).unwrap();
                sender.send(Message::Binary(&big)).unwrap();
                sender.ping(b"p").unwrap();
            }
            Event::Message(Message::Binary(_)) => sender.close(CloseCode::NORMAL, "bye").unwrap(),
            _ => {}
        }
    });
    assert!(conn.error().is_none(), "{:?}", conn.error());
    assert_eq!(conn.close_code(), Some(CloseCode::NORMAL));
    assert_eq!(
        log,
        [
            Seen::Open,
            Seen::Ping(b"are you there".to_vec()),
            Seen::Text("héllo".into()),
            Seen::Binary(big.clone()),
            // tungstenite answers a ping when it reads it, after the echoes before it.
            Seen::Pong(b"p".to_vec()),
            Seen::Close(1000),
        ]
    );
    let got = server.join().expect("server thread");
    assert_eq!(
        got[0],
        tungstenite::Message::Pong(b"are you there".to_vec().into())
    );
    match &got[1] {
        tungstenite::Message::Close(Some(f)) => {
            assert_eq!((u16::from(f.code), f.reason.as_str()), (1000, "bye"));
        }
        other => panic!("{other:?}"),
    }
}

/// Echo through the edgews server with permessage-deflate in both of its
/// modes, with and without letting it cap our window.
#[test]
fn deflate_with_the_edgews_server() {
    let messages: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "{{\"i\":{i},\"text\":\"{}\"}}",
                "the same words again ".repeat(i % 30)
            )
        })
        .collect();
    for (mode, cap) in [
        (Compression::Shared, true),
        (Compression::dedicated_window_bits(11), true),
        (Compression::dedicated_window_bits(15), false),
    ] {
        let server = TestServer::echo(config().compression(mode));
        let offer = DeflateOffer {
            client_max_window_bits: cap,
            ..DeflateOffer::default()
        };
        let cfg = Config::default()
            .deflate(Some(offer))
            .compression_threshold_bytes(0);
        let mut echoed = Vec::new();
        let mut next = 0;
        let conn = drive(connect(server.addr, &cfg), |ev, sender| {
            match ev {
                Event::Open => {}
                Event::Message(Message::Text(t)) => echoed.push(t.to_owned()),
                _ => return,
            }
            if next < messages.len() {
                sender.send(Message::Text(&messages[next])).unwrap();
                next += 1;
            } else {
                sender.close(CloseCode::NORMAL, "").unwrap();
            }
        });
        assert!(conn.error().is_none(), "{mode:?}: {:?}", conn.error());
        assert_eq!(echoed, messages, "{mode:?}");
        let p = conn.deflate().expect("deflate agreed");
        match mode {
            Compression::Shared => {
                assert!(p.server_no_context_takeover && p.client_no_context_takeover)
            }
            _ if cap => assert_eq!(p.client_window_bits, 11),
            _ => assert!(!p.client_no_context_takeover && p.client_window_bits == 15),
        }
        server.stop();
    }
}

/// A one-connection server thread that answers the upgrade with `answer`
/// (given the client's key) and then runs `then` on the socket.
fn raw_server(
    answer: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
    then: impl FnOnce(&mut TcpStream) + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(LIMIT)).expect("timeout");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).expect("request") == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).expect("ascii request");
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("a key")
            .to_owned();
        let _ = s.write_all(&answer(&key));
        then(&mut s);
    });
    (addr, handle)
}

fn ok_101(key: &str, extra: &str) -> Vec<u8> {
    let accept = String::from_utf8(accept_key(key.as_bytes()).to_vec()).expect("base64");
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Reads until EOF (bounded by the read timeout) and returns the bytes.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    all
}

fn run_against(
    answer: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
    then: impl FnOnce(&mut TcpStream) + Send + 'static,
    cfg: &Config,
) -> (Connection, Vec<Seen>) {
    let (addr, server) = raw_server(answer, then);
    let mut log = Vec::new();
    let conn = drive(connect(addr, cfg), |ev, _| log.push(seen(&ev)));
    server.join().expect("server thread");
    (conn, log)
}

fn error_of(conn: &Connection) -> &Error {
    conn.error().expect("the connection failed")
}

/// How a raw server answers the upgrade, given the client's key.
type Answer = Box<dyn FnOnce(&str) -> Vec<u8> + Send>;

#[test]
fn bad_handshake_answers_fail_the_connection() {
    let cases: Vec<(Answer, &str)> = vec![
        (
            Box::new(|_: &str| b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()),
            "404",
        ),
        (
            Box::new(|_: &str| ok_101("not the key", "")),
            "Sec-WebSocket-Accept",
        ),
        (
            Box::new(|k: &str| ok_101(k, "Sec-WebSocket-Extensions: permessage-deflate\r\n")),
            "not offered",
        ),
        (
            Box::new(|k: &str| ok_101(k, "Sec-WebSocket-Protocol: chat\r\n")),
            "subprotocol",
        ),
        (
            Box::new(|k: &str| ok_101(k, &format!("X-Filler: {}\r\n", "a".repeat(9000)))),
            "larger than 8192",
        ),
        (
            Box::new(|_: &str| b"not http at all\r\n\r\n".to_vec()),
            "malformed",
        ),
    ];
    for (answer, says) in cases {
        let (conn, log) = run_against(answer, |s| drop(read_all(s)), &Config::default());
        let e = error_of(&conn);
        assert!(e.is_handshake(), "{says}: {e}");
        assert!(e.to_string().contains(says), "{says}: {e}");
        assert!(log.is_empty(), "{log:?}");
    }
    // A client_max_window_bits=8 answer to an offer that allows capping.
    let cfg = Config::default().deflate(Some(DeflateOffer {
        client_max_window_bits: true,
        ..DeflateOffer::default()
    }));
    let (conn, _) = run_against(
        |k| {
            ok_101(
                k,
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=8\r\n",
            )
        },
        |s| drop(read_all(s)),
        &cfg,
    );
    assert!(error_of(&conn).to_string().contains("=8"));
}

#[test]
fn protocol_errors_close_with_the_right_code() {
    for (frame, code) in [
        (vec![0x81, 0x83, 1, 2, 3, 4, 0, 0, 0], 1002u16), // masked server frame
        (vec![0x8B, 0], 1002),                            // reserved opcode
        (vec![0x81, 2, 0xc3, 0x28], 1007),                // invalid UTF-8
        (vec![0x88, 2, 0x03, 0xed], 1002),                // close code 1005 on the wire
        (vec![0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 1], 1009), // 1 MiB + 1 announced
    ] {
        let (tx, rx) = std::sync::mpsc::channel();
        let (conn, log) = run_against(
            move |k| {
                let mut a = ok_101(k, "");
                a.extend_from_slice(&frame);
                a
            },
            move |s| {
                // Whatever the client sends, until we close: it must be one close frame.
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).unwrap_or(0);
                tx.send(buf[..n].to_vec()).expect("send");
            },
            &Config::default().max_message_bytes(1 << 20),
        );
        let e = error_of(&conn);
        assert!(e.is_protocol(), "{e}");
        assert_eq!(e.close_code().map(CloseCode::get), Some(code), "{e}");
        assert_eq!(log, [Seen::Open]);
        let sent = rx.recv_timeout(LIMIT).expect("what the client sent");
        assert_eq!(sent[0], 0x88, "a close frame: {sent:?}");
        assert_eq!(sent[1] & 0x80, 0x80, "masked");
        let unmasked: Vec<u8> = sent[6..8]
            .iter()
            .zip(&sent[2..6])
            .map(|(b, m)| b ^ m)
            .collect();
        assert_eq!(u16::from_be_bytes([unmasked[0], unmasked[1]]), code);
    }
}

#[test]
fn timeouts_and_abrupt_ends() {
    let quick = Config::default()
        .handshake_timeout(Duration::from_millis(300))
        .close_timeout(Duration::from_millis(300));
    // No answer at all.
    let (conn, _) = run_against(
        |_| Vec::new(),
        |_| thread::sleep(Duration::from_millis(600)),
        &quick,
    );
    assert!(error_of(&conn).is_timeout());
    // The server answers our close but never closes TCP: clean, after the timeout.
    let (conn, log) = run_against(
        |k| {
            let mut a = ok_101(k, "");
            a.extend_from_slice(&[0x88, 2, 0x03, 0xe8]);
            a
        },
        |_| thread::sleep(Duration::from_millis(600)),
        &quick,
    );
    assert!(conn.error().is_none(), "{:?}", conn.error());
    assert_eq!(log, [Seen::Open, Seen::Close(1000)]);
    // The server drops TCP mid-message: 1006.
    let (conn, _) = run_against(
        |k| {
            let mut a = ok_101(k, "");
            a.extend_from_slice(&[0x82, 10, 1, 2]);
            a
        },
        |_| {},
        &quick,
    );
    assert!(error_of(&conn).is_abnormal());
    // Nobody listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let conn = drive(connect(port, &quick), |ev, _| panic!("{ev:?}"));
    assert!(error_of(&conn).is_io(), "{:?}", conn.error());
}
