//! The opening handshake over real sockets: every refusal gets its status.

mod common;

use std::io::Write;

use common::{config, http, upgrade_request, Got, Raw, TestServer};
use edgews::protocol::handshake::accept_key;
use edgews::protocol::{Encoder, Message, OpCode};
use edgews::runtime::{Accept, Conn, Handler, HttpResponse, Reject, Request};

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[test]
fn valid_upgrade_gets_101_with_the_accept_key() {
    let server = TestServer::echo(config());
    let (status, text) = http(server.addr, &upgrade_request(""));
    assert_eq!(status, 101, "{text}");
    let accept = String::from_utf8(accept_key(b"dGhlIHNhbXBsZSBub25jZQ==").to_vec()).unwrap();
    assert!(
        text.contains(&format!("Sec-WebSocket-Accept: {accept}\r\n")),
        "{text}"
    );
    assert!(
        !text.contains("Sec-WebSocket-Extensions"),
        "compression is off by default"
    );
}

#[test]
fn bad_upgrades_get_their_status() {
    let server = TestServer::echo(config());
    let good = upgrade_request("");
    let cases: Vec<(String, u16, &str)> = vec![
        (
            good.replace("Version: 13", "Version: 8"),
            426,
            "Sec-WebSocket-Version: 13",
        ),
        (good.replace(KEY, ""), 400, "Sec-WebSocket-Key"),
        (
            good.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
            400,
            "Sec-WebSocket-Key",
        ),
        (good.replace("GET", "POST"), 400, "GET"),
        (good.replace("HTTP/1.1", "HTTP/1.0"), 400, "HTTP/1.1"),
        (good.replace("Host: 127.0.0.1\r\n", ""), 400, "Host"),
        (
            good.replace("Connection: Upgrade", "Connection: close"),
            400,
            "Connection",
        ),
        (
            upgrade_request(&format!("X-Big: {}\r\n", "a".repeat(9000))),
            431,
            "exceed",
        ),
        (
            upgrade_request(&(0..70).map(|i| format!("X-{i}: v\r\n")).collect::<String>()),
            431,
            "headers",
        ),
        (
            "GET / HTTP/1.1\r\nHo st: x\r\n\r\n".into(),
            400,
            "malformed",
        ),
    ];
    for (request, status, says) in cases {
        let (got, text) = http(server.addr, &request);
        assert_eq!(got, status, "request:\n{request}\nresponse:\n{text}");
        assert!(
            text.contains(says),
            "response should mention {says}:\n{text}"
        );
        assert!(text.contains("Connection: close"), "{text}");
    }
    // Refusals count in the stats, by reason.
    let rejected: u64 = server
        .handle
        .worker_stats()
        .iter()
        .map(|s| s.rejected.iter().map(|c| c.get()).sum::<u64>())
        .sum();
    assert_eq!(rejected, 10);
}

#[test]
fn oversized_head_arriving_slowly_gets_431() {
    let server = TestServer::echo(config());
    let mut raw = Raw::tcp(server.addr);
    raw.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n");
    for _ in 0..10 {
        raw.send_raw(format!("X-Pad: {}\r\n", "p".repeat(1000)).as_bytes());
    }
    let (status, _) = read_status(&mut raw);
    assert_eq!(status, 431);
}

fn read_status(raw: &mut Raw) -> (u16, String) {
    use std::io::Read;
    let mut out = Vec::new();
    let _ = raw.stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    (
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        text,
    )
}

#[test]
fn plain_http_goes_to_the_handler_and_defaults_to_404() {
    let server = TestServer::echo(config());
    let (status, text) = http(server.addr, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 404, "{text}");
}

/// Accepts only /ws from an allowed origin, picks the "chat" subprotocol,
/// and serves GET /hello itself.
struct Picky;

impl Handler for Picky {
    type Data = ();
    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<()>, Reject> {
        if req.path() != "/ws" {
            return Err(Reject::not_found());
        }
        if req.origin().is_some_and(|o| o != "https://good.example") {
            return Err(Reject::forbidden("origin not allowed"));
        }
        assert!(req.peer_addr().is_some_and(|a| a.ip().is_loopback()));
        let accept = Accept::new(());
        Ok(match req.protocols().find(|p| *p == "chat") {
            Some(p) => accept.protocol(p),
            None => accept,
        })
    }
    fn on_message(&mut self, conn: &mut Conn<'_, ()>, msg: Message<'_>) {
        conn.send(msg);
    }
    fn on_http(&mut self, req: &Request<'_>) -> HttpResponse {
        match req.path() {
            "/hello" => HttpResponse::text(200, "hi\n").header("X-Served-By", "picky"),
            _ => HttpResponse::not_found(),
        }
    }
}

#[test]
fn handler_decides_paths_origins_and_subprotocols() {
    let server = TestServer::start(config(), |_| Picky);
    let at = |path: &str, extra: &str| {
        upgrade_request(extra).replacen("GET /", &format!("GET {path}"), 1)
    };
    assert_eq!(http(server.addr, &at("/other", "")).0, 404);
    let (status, text) = http(server.addr, &at("/ws", "Origin: https://evil.example\r\n"));
    assert_eq!(status, 403);
    assert!(text.contains("origin not allowed"));
    let (status, text) = http(
        server.addr,
        &at(
            "/ws",
            "Origin: https://good.example\r\nSec-WebSocket-Protocol: superchat, chat\r\n",
        ),
    );
    assert_eq!(status, 101, "{text}");
    assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"), "{text}");
    let (status, text) = http(server.addr, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    assert!(
        text.contains("X-Served-By: picky") && text.ends_with("hi\n"),
        "{text}"
    );
}

#[test]
fn first_frame_in_the_same_packet_as_the_request() {
    let server = TestServer::echo(config());
    let mut raw = Raw::tcp(server.addr);
    let mut bytes = upgrade_request("").into_bytes();
    Encoder::<edgews::protocol::Client>::new().frame(&mut bytes, OpCode::Text, b"early bird");
    raw.stream.write_all(&bytes).unwrap();
    // Skip the 101 head, then the echo must follow.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut raw.stream, &mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    assert_eq!(raw.next(), Got::Text("early bird".into()));
}

#[test]
fn a_request_head_split_over_many_reads_is_assembled() {
    let server = TestServer::echo(config());
    // Byte groups with pauses between them arrive as separate reads; the
    // worker keeps the partial head aside and completes it.
    let mut request = upgrade_request("").into_bytes();
    // A masked text frame "hi" right behind the head, in the last piece.
    request.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    for piece in request.chunks(9) {
        s.write_all(piece).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.ends_with(&[0x81, 2, b'h', b'i']) {
        let n = std::io::Read::read(&mut s, &mut chunk).expect("101 and the echo");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"));

    // Pieces that together pass the head limit get 431 all the same.
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let mut answer = String::new();
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(2));
        if s.write_all(format!("X-Pad: {}\r\n", "a".repeat(1000)).as_bytes())
            .is_err()
        {
            break;
        }
    }
    let _ = std::io::Read::read_to_string(&mut s, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}
