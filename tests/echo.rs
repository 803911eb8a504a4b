//! Echo over real sockets with an independent client (tungstenite).

mod common;

use std::thread;

use common::{config, connect, read_data, read_text, Got, Raw, TestServer};
use edgews::protocol::{CloseCode, Message, OpCode};
use edgews::runtime::{Accept, CloseInfo, Conn, Handler, Reject, Request};
use tungstenite::protocol::frame::coding::CloseCode as TCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message as TMessage;

#[test]
fn text_binary_empty_and_large_messages_echo() {
    let server = TestServer::echo(config());
    let mut ws = connect(server.addr);
    ws.send(TMessage::text("hello, κόσμε")).unwrap();
    assert_eq!(read_text(&mut ws), "hello, κόσμε");
    ws.send(TMessage::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(read_data(&mut ws), TMessage::binary(vec![0u8, 1, 2, 255]));
    ws.send(TMessage::text("")).unwrap();
    assert_eq!(read_text(&mut ws), "");
    for size in [125, 126, 65535, 65536, 1 << 20, 8 << 20] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        ws.send(TMessage::binary(payload.clone())).unwrap();
        assert_eq!(read_data(&mut ws), TMessage::binary(payload), "size {size}");
    }
}

#[test]
fn fragmented_messages_with_interleaved_pings() {
    let server = TestServer::echo(config());
    let mut raw = Raw::connect(server.addr);
    raw.frame(false, OpCode::Text, "frag".as_bytes());
    raw.frame(true, OpCode::Ping, b"mid");
    raw.frame(false, OpCode::Continuation, "men".as_bytes());
    raw.frame(true, OpCode::Continuation, "ted ✓".as_bytes());
    assert_eq!(raw.next(), Got::Pong(b"mid".to_vec()));
    assert_eq!(raw.next(), Got::Text("fragmented ✓".into()));
    // A code point split across fragments.
    let bytes = "€".as_bytes();
    raw.frame(false, OpCode::Text, &bytes[..1]);
    raw.frame(true, OpCode::Continuation, &bytes[1..]);
    assert_eq!(raw.next(), Got::Text("€".into()));
    // Many small fragments of a binary message.
    let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    for (i, chunk) in payload.chunks(97).enumerate() {
        let op = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        raw.frame((i + 1) * 97 >= payload.len(), op, chunk);
    }
    assert_eq!(raw.next(), Got::Binary(payload));
}

#[test]
fn ping_gets_pong_and_pipelined_messages_keep_order() {
    let server = TestServer::echo(config());
    let mut raw = Raw::connect(server.addr);
    raw.frame(true, OpCode::Ping, b"are you there");
    assert_eq!(raw.next(), Got::Pong(b"are you there".to_vec()));
    for i in 0..1000 {
        raw.text(&format!("m{i}"));
    }
    for i in 0..1000 {
        assert_eq!(raw.next(), Got::Text(format!("m{i}")));
    }
}

#[test]
fn client_close_is_answered_and_tcp_closed() {
    let server = TestServer::echo(config());
    let mut raw = Raw::connect(server.addr);
    raw.close(CloseCode::NORMAL, "bye");
    assert_eq!(raw.expect_close(), (1000, String::new()));
    raw.expect_eof();

    // The same with tungstenite, which checks the handshake from its side.
    let mut ws = connect(server.addr);
    ws.close(Some(CloseFrame {
        code: TCode::Away,
        reason: "".into(),
    }))
    .unwrap();
    loop {
        match ws.read() {
            Ok(TMessage::Close(Some(f))) => assert_eq!(f.code, TCode::Away),
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

/// Closes every connection that says "bye" with 4000, and records on_close.
struct Closer {
    closes: std::sync::Arc<std::sync::Mutex<Vec<(u16, String, bool)>>>,
}

impl Handler for Closer {
    type Data = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Result<Accept<()>, Reject> {
        Ok(Accept::new(()))
    }
    fn on_message(&mut self, conn: &mut Conn<'_, ()>, msg: Message<'_>) {
        if msg == Message::Text("bye") {
            conn.close(CloseCode::new(4000), "see you");
            assert!(!conn.is_open());
            assert_eq!(
                conn.send_text("ignored"),
                edgews::runtime::SendStatus::Dropped
            );
        } else {
            conn.send(msg);
        }
    }
    fn on_close(&mut self, _: &mut Conn<'_, ()>, close: CloseInfo<'_>) {
        let entry = (close.code.get(), close.reason.to_owned(), close.by_peer);
        self.closes.lock().unwrap().push(entry);
    }
}

#[test]
fn server_close_reaches_the_client_with_code_and_reason() {
    let closes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let c = closes.clone();
    let server = TestServer::start(config(), move |_| Closer { closes: c.clone() });
    let mut ws = connect(server.addr);
    ws.send(TMessage::text("bye")).unwrap();
    match ws.read().unwrap() {
        TMessage::Close(Some(f)) => {
            assert_eq!(u16::from(f.code), 4000);
            assert_eq!(f.reason.as_str(), "see you");
        }
        other => panic!("expected close, got {other:?}"),
    }
    assert!(common::wait_until(
        std::time::Duration::from_secs(2),
        || closes.lock().unwrap().len() == 1
    ));
    assert_eq!(closes.lock().unwrap()[0], (4000, "see you".into(), false));
}

#[test]
fn a_thousand_concurrent_connections_echo() {
    let server = TestServer::echo(config());
    let addr = server.addr;
    // 10 threads x 100 connections, all open at the same time.
    let threads: Vec<_> = (0..10)
        .map(|t| {
            thread::spawn(move || {
                let mut conns: Vec<_> = (0..100).map(|_| common::connect(addr)).collect();
                for round in 0..3 {
                    for (i, ws) in conns.iter_mut().enumerate() {
                        ws.send(TMessage::text(format!("{t}-{i}-{round}"))).unwrap();
                    }
                    for (i, ws) in conns.iter_mut().enumerate() {
                        assert_eq!(read_text(ws), format!("{t}-{i}-{round}"));
                    }
                }
                conns
            })
        })
        .collect();
    let conns: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(conns.len(), 1000);
    assert!(common::wait_until(
        std::time::Duration::from_secs(2),
        || server.handle.connections() == 1000
    ));
    // Both workers got some.
    let per_worker: Vec<u64> = server
        .handle
        .worker_stats()
        .iter()
        .map(|s| s.connections_accepted.get())
        .collect();
    assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");
}

/// Large messages take the engine's zero-copy paths: the rest of a frame
/// read straight into its message buffer, and an echo written straight from
/// the message, with what the socket does not take queued. Pipelined without
/// reading (so the socket fills and replies queue), and dribbled in small
/// writes (so a frame arrives over many reads), they come back intact and
/// in order; bad UTF-8 deep inside a dribbled text message still gets 1007.
#[test]
fn large_messages_pipelined_and_dribbled_echo_intact() {
    let server = TestServer::echo(config());
    let mut ws = connect(server.addr);
    let mut sent = Vec::new();
    for i in 0..6u32 {
        let msg = if i % 2 == 0 {
            let payload: Vec<u8> = (0..300_000u32 + i).map(|j| (j * 7 + i) as u8).collect();
            TMessage::binary(payload)
        } else {
            TMessage::text("κόσμε ✓ ".repeat(20_000 + i as usize))
        };
        ws.send(msg.clone()).unwrap();
        sent.push(msg);
    }
    for (i, msg) in sent.into_iter().enumerate() {
        assert!(read_data(&mut ws) == msg, "pipelined message {i} differs");
    }

    let mut raw = Raw::connect(server.addr);
    let payload: Vec<u8> = (0..200_000u32).map(|j| (j % 251) as u8).collect();
    let mut out = Vec::new();
    edgews::protocol::Encoder::<edgews::protocol::Client>::new().frame(
        &mut out,
        OpCode::Binary,
        &payload,
    );
    for piece in out.chunks(7_000) {
        raw.send_raw(piece);
        thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        raw.next() == Got::Binary(payload),
        "dribbled message differs"
    );

    let mut text = "é".repeat(60_000).into_bytes();
    text[100_001] = 0xff;
    let mut out = Vec::new();
    edgews::protocol::Encoder::<edgews::protocol::Client>::new().frame(
        &mut out,
        OpCode::Text,
        &text,
    );
    for piece in out.chunks(9_000) {
        raw.send_raw(piece);
        thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(raw.expect_close().0, 1007);
}
