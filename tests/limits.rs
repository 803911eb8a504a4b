//! Bad input and limits: each gets its close code or status, and never
//! disturbs another connection.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{config, connect, http, read_text, upgrade_request, Raw, TestServer};
use edgews::protocol::{CloseCode, OpCode};
use tungstenite::Message as TMessage;

/// A masked frame header announcing `len` bytes, with a zero mask.
fn header(first: u8, len: u64) -> Vec<u8> {
    let mut h = vec![first];
    if len < 126 {
        h.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        h.push(0x80 | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(0x80 | 127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

#[test]
fn oversized_message_is_refused_from_its_header() {
    let server = TestServer::echo(config().max_message_bytes(1 << 20));
    let mut raw = Raw::connect(server.addr);
    // Only the header of a 1 GiB frame: the server must not wait for the payload.
    raw.send_raw(&header(0x82, 1 << 30));
    assert_eq!(raw.expect_close().0, 1009);
    raw.expect_eof();
    // Across fragments.
    let mut raw = Raw::connect(server.addr);
    raw.frame(false, OpCode::Binary, &vec![0; 600 << 10]);
    raw.frame(true, OpCode::Continuation, &vec![0; 600 << 10]);
    assert_eq!(raw.expect_close().0, 1009);
}

#[test]
fn invalid_utf8_is_1007_even_before_the_message_ends() {
    let server = TestServer::echo(config());
    let mut raw = Raw::connect(server.addr);
    raw.frame(true, OpCode::Text, &[b'o', b'k', 0xC0, 0xAF]);
    assert_eq!(raw.expect_close().0, 1007);

    // The bad byte is in the second fragment; the final one is never sent.
    let mut raw = Raw::connect(server.addr);
    raw.frame(false, OpCode::Text, b"fine so far ");
    raw.frame(false, OpCode::Continuation, &[0xED, 0xA0, 0x80]); // a surrogate
    assert_eq!(raw.expect_close().0, 1007);

    // Inside one frame whose end has not arrived.
    let mut raw = Raw::connect(server.addr);
    let mut bytes = header(0x81, 100);
    bytes.extend_from_slice(&[b'a', 0xFF]);
    raw.send_raw(&bytes);
    assert_eq!(raw.expect_close().0, 1007);
}

#[test]
fn protocol_errors_are_1002() {
    let server = TestServer::echo(config());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked frame", vec![0x81, 0x02, b'h', b'i']),
        ("reserved opcode", header(0x83, 0)),
        ("rsv1 without extension", header(0xC1, 0)),
        ("rsv2", header(0xA1, 0)),
        ("fragmented ping", header(0x09, 0)),
        ("continuation first", header(0x80, 0)),
        (
            "ping of 126 bytes",
            [header(0x89, 126), vec![0; 126]].concat(),
        ),
        (
            "close with 1-byte payload",
            [header(0x88, 1), vec![3]].concat(),
        ),
        (
            "close code 1005",
            [header(0x88, 2), 1005u16.to_be_bytes().to_vec()].concat(),
        ),
        (
            "close code 999",
            [header(0x88, 2), 999u16.to_be_bytes().to_vec()].concat(),
        ),
        (
            "close code 5000",
            [header(0x88, 2), 5000u16.to_be_bytes().to_vec()].concat(),
        ),
        (
            "new message inside a fragmented one",
            [header(0x01, 1), vec![b'a'], header(0x81, 1), vec![b'b']].concat(),
        ),
    ];
    for (what, bytes) in cases {
        let mut raw = Raw::connect(server.addr);
        raw.send_raw(&bytes);
        assert_eq!(raw.expect_close().0, 1002, "{what}");
        raw.expect_eof();
    }
    let errors: u64 = server
        .handle
        .worker_stats()
        .iter()
        .map(|s| s.protocol_errors.get())
        .sum();
    assert_eq!(errors, 12);
}

#[test]
fn bad_clients_do_not_disturb_a_good_one() {
    let server = TestServer::echo(config().workers(1));
    let mut good = connect(server.addr);
    for i in 0..20 {
        let mut bad = Raw::connect(server.addr);
        bad.send_raw(&[0xFF; 64]); // garbage
        good.send(TMessage::text(format!("still here {i}")))
            .unwrap();
        assert_eq!(read_text(&mut good), format!("still here {i}"));
        assert_eq!(bad.expect_close().0, 1002);
    }
}

#[test]
fn connection_limit_answers_503() {
    let server = TestServer::echo(config().max_connections(3));
    let _held: Vec<_> = (0..3).map(|_| connect(server.addr)).collect();
    let (status, text) = http(server.addr, &upgrade_request(""));
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("connection limit"));
}

#[test]
fn a_client_that_never_reads_is_flow_controlled_not_buffered() {
    // 64 KiB soft limit. The stalled client sends 64 KiB messages for echo and
    // never reads. Once its queue passes the soft limit the server stops
    // reading from it, so TCP pushes back and the client's writes block:
    // the server buffers a bounded amount, however much the client sends.
    let cfg = config().workers(1).backpressure_bytes(64 << 10);
    let server = TestServer::echo(cfg);
    let mut stalled = Raw::connect(server.addr);
    socket2::SockRef::from(&stalled.stream)
        .set_recv_buffer_size(4096)
        .unwrap();
    stalled
        .stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut good = connect(server.addr);
    let mut frame = Vec::new();
    edgews::protocol::Encoder::<edgews::protocol::Client>::new().frame(
        &mut frame,
        OpCode::Text,
        &vec![b'x'; 64 << 10],
    );
    let mut sent = 0usize;
    let blocked = loop {
        match stalled.stream.write(&frame) {
            Ok(n) => sent += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break true
            }
            Err(e) => panic!("{e}"),
        }
        if sent > 64 << 20 {
            break false;
        }
    };
    assert!(
        blocked,
        "the server kept reading {sent} bytes from a client that never reads"
    );
    // The other connection is unaffected.
    for i in 0..50 {
        good.send(TMessage::text(format!("ping {i}"))).unwrap();
        assert_eq!(read_text(&mut good), format!("ping {i}"));
    }
}

/// Answers every message with `total` bytes of `blob`-sized messages, ignoring backpressure.
struct Flood {
    blob: usize,
    total: usize,
}

impl edgews::runtime::Handler for Flood {
    type Data = ();
    fn on_upgrade(
        &mut self,
        _: &edgews::runtime::Request<'_>,
    ) -> Result<edgews::runtime::Accept<()>, edgews::runtime::Reject> {
        Ok(edgews::runtime::Accept::new(()))
    }
    fn on_message(
        &mut self,
        conn: &mut edgews::runtime::Conn<'_, ()>,
        _: edgews::protocol::Message<'_>,
    ) {
        let blob = vec![7u8; self.blob];
        for _ in 0..self.total / self.blob {
            conn.send_binary(&blob);
        }
    }
}

/// Starts a [`Flood`] server and a client that reads slowly (4 KiB receive
/// buffer), which asks for a flood.
fn flood(blob: usize, total: usize) -> (TestServer, Raw) {
    let cfg = config()
        .workers(1)
        .backpressure_bytes(64 << 10)
        .max_queued_bytes(1 << 20);
    let server = TestServer::start(cfg, move |_| Flood { blob, total });
    let mut raw = Raw::connect(server.addr);
    socket2::SockRef::from(&raw.stream)
        .set_recv_buffer_size(4096)
        .unwrap();
    raw.text("go");
    (server, raw)
}

fn queue_limit_closes(server: &TestServer) -> u64 {
    server
        .handle
        .worker_stats()
        .iter()
        .map(|s| s.queue_limit_closes.get())
        .sum()
}

#[test]
fn hard_limit_closes_with_1008_when_sends_ignore_backpressure() {
    // 48 KiB messages are queued whole during the callback, so the limit is
    // reached before the socket takes much: the close follows ~1 MiB.
    let (server, mut raw) = flood(48 << 10, 4 << 20);
    std::thread::sleep(Duration::from_millis(200));
    raw.text("go again");
    // Reading now: some binaries, then the close with 1008.
    assert_eq!(raw.expect_close().0, CloseCode::POLICY_VIOLATION.get());
    assert!(queue_limit_closes(&server) >= 1);
}

#[test]
fn hard_limit_holds_for_messages_written_straight_from_the_sender() {
    // From 64 KiB a message is written to the socket as it is sent, so the
    // socket's buffer fills first (up to net.ipv4.tcp_wmem's maximum, 4 MiB
    // here), then the queue, to its limit: 16 MiB closes the connection
    // with 1008 all the same. (Its close frame waits behind what the kernel
    // already holds, which this 4 KiB reader takes longer than the close
    // timeout to drain; so the server's count is checked.)
    let (server, _raw) = flood(64 << 10, 16 << 20);
    assert!(
        common::wait_until(Duration::from_secs(10), || queue_limit_closes(&server) >= 1),
        "the queue limit did not close the flooded connection"
    );
}
