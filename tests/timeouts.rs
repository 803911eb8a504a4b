//! Timeouts over real sockets, with short settings so the tests stay fast.

mod common;

use std::time::{Duration, Instant};

use common::{config, connect, read_text, wait_until, Got, Raw, TestServer};
use edgews::protocol::OpCode;
use edgews::runtime::Config;
use tungstenite::Message as TMessage;

fn short() -> Config {
    config()
        .workers(1)
        .handshake_timeout(Duration::from_millis(500))
        .idle_timeout(Some(Duration::from_secs(1)))
        .close_timeout(Duration::from_millis(500))
}

#[test]
fn half_a_frame_then_silence_is_closed_while_others_keep_working() {
    let server = TestServer::echo(short());
    let mut stalled = Raw::connect(server.addr);
    stalled.send_raw(&[0x82, 0x80 | 100, 1, 2, 3, 4, 0, 0]); // 2 of 100 payload bytes
    let started = Instant::now();
    let mut busy = connect(server.addr);
    // The busy client talks throughout; it must never be disturbed.
    while started.elapsed() < Duration::from_millis(1400) {
        busy.send(TMessage::text("tick")).unwrap();
        assert_eq!(read_text(&mut busy), "tick");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, reason) = stalled.expect_close();
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    stalled.expect_eof();
    busy.send(TMessage::text("after")).unwrap();
    assert_eq!(read_text(&mut busy), "after");
}

#[test]
fn an_unfinished_request_is_dropped_after_the_handshake_timeout() {
    let server = TestServer::echo(short());
    let mut raw = Raw::tcp(server.addr);
    raw.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n");
    let started = Instant::now();
    assert_eq!(raw.next(), Got::Eof);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let timeouts: u64 = server
        .handle
        .worker_stats()
        .iter()
        .map(|s| s.rejected[edgews::runtime::stats::RejectReason::Timeout as usize].get())
        .sum();
    assert_eq!(timeouts, 1);
}

#[test]
fn pings_keep_a_live_client_and_close_a_dead_one() {
    let cfg = short().ping_interval(Some(Duration::from_millis(300)));
    let server = TestServer::echo(cfg);

    // A live client (tungstenite answers pings while it reads) outlives the idle timeout.
    let mut live = connect(server.addr);
    live.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        match live.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("live client lost its connection: {e}"),
        }
    }
    live.get_mut()
        .set_read_timeout(Some(common::READ_TIMEOUT))
        .unwrap();
    live.send(TMessage::text("still alive")).unwrap();
    assert_eq!(read_text(&mut live), "still alive");

    // A dead client (never answers) gets a ping, then 1001.
    let mut dead = Raw::connect(server.addr);
    assert_eq!(dead.next(), Got::Ping(Vec::new()));
    assert_eq!(dead.expect_close().0, 1001);
    let pings: u64 = server
        .handle
        .worker_stats()
        .iter()
        .map(|s| s.pings_sent.get())
        .sum();
    assert!(pings >= 2, "{pings}");
}

#[test]
fn a_peer_that_never_answers_our_close_is_dropped_after_the_close_timeout() {
    let server = TestServer::echo(short());
    let mut raw = Raw::connect(server.addr);
    // Idle timeout starts a close; the client reads it but never answers
    // and keeps its socket open.
    assert_eq!(raw.expect_close().0, 1001);
    let closed_at = Instant::now();
    assert!(wait_until(Duration::from_secs(3), || server
        .handle
        .connections()
        == 0));
    assert!(
        closed_at.elapsed() < Duration::from_secs(2),
        "{:?}",
        closed_at.elapsed()
    );
    drop(raw);
}

#[test]
fn fragments_reset_the_idle_clock() {
    let server = TestServer::echo(short());
    let mut raw = Raw::connect(server.addr);
    // A slow but steady sender: one fragment every 300 ms for 1.8 s.
    raw.frame(false, OpCode::Text, b"slow ");
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        raw.frame(false, OpCode::Continuation, b"and ");
    }
    raw.frame(true, OpCode::Continuation, b"steady");
    assert_eq!(
        raw.next(),
        Got::Text("slow and and and and and steady".into())
    );
}
