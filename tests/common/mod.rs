//! Shared test harness: an in-process server on 127.0.0.1 (port chosen by the
//! kernel, shut down when dropped), the independent client (tungstenite) with
//! timeouts, and a raw client for input tungstenite will not produce.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use edgews::protocol::handshake::client;
use edgews::protocol::{
    Client, CloseCode, Decoder, DecoderConfig, Encoder, Event, Input, Message, OpCode, Parse,
};
use edgews::runtime::{Config, Handler, Running, Server, ServerHandle};
use edgews::server::EchoHandler;
use tungstenite::protocol::WebSocket;

/// How long any single read in a test may wait.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    running: Option<Running>,
}

impl TestServer {
    /// Starts `factory`'s handler on 127.0.0.1:0 with `cfg`.
    pub fn start<H: Handler>(cfg: Config, factory: impl FnMut(usize) -> H) -> Self {
        let cfg = cfg.listen("127.0.0.1:0".parse().expect("address"));
        let server = Server::bind(cfg, factory).expect("bind");
        let addr = server.local_addr();
        let handle = server.handle();
        let running = server.start().expect("start");
        TestServer {
            addr,
            handle,
            running: Some(running),
        }
    }

    /// The echo server (with the pub-sub commands) on `workers` workers.
    pub fn echo(cfg: Config) -> Self {
        Self::start(cfg, |_| EchoHandler::new(true))
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Shuts down and waits for the workers.
    pub fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().expect("clean shutdown");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown();
        }
    }
}

/// A small config for tests: 2 workers.
pub fn config() -> Config {
    Config::default().workers(2)
}

pub type Ws = WebSocket<TcpStream>;

/// Opens a tungstenite client (the independent implementation).
pub fn connect(addr: SocketAddr) -> Ws {
    try_connect(addr).expect("websocket handshake")
}

pub fn try_connect(addr: SocketAddr) -> Result<Ws, Box<tungstenite::Error>> {
    let stream = TcpStream::connect(addr).expect("tcp connect");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    let (ws, _resp) =
        tungstenite::client(format!("ws://{addr}/"), stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => Box::new(e),
            tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
        })?;
    Ok(ws)
}

/// Reads the next data message (answering pings is tungstenite's job).
pub fn read_data(ws: &mut Ws) -> tungstenite::Message {
    loop {
        match ws.read().expect("read a message") {
            m @ (tungstenite::Message::Text(_) | tungstenite::Message::Binary(_)) => return m,
            _ => continue,
        }
    }
}

pub fn read_text(ws: &mut Ws) -> String {
    match read_data(ws) {
        tungstenite::Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Polls `cond` every 10 ms for up to `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// An owned event read by [`Raw`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
    /// A compressed (RSV1) message, still compressed.
    Compressed(Vec<u8>),
    /// The server closed the TCP connection.
    Eof,
}

/// A raw client on our own client codec: sends exactly the bytes a test needs.
pub struct Raw {
    pub stream: TcpStream,
    enc: Encoder<Client>,
    dec: Decoder<Client>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Raw {
    /// Connects without a handshake.
    pub fn tcp(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            enc: Encoder::new(),
            dec: Decoder::new(),
            buf: vec![0; 1 << 16],
            start: 0,
            end: 0,
        }
    }

    /// Connects and completes the opening handshake.
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::connect_with(addr, &[]).0
    }

    /// Connects with extra request headers; also returns what the server agreed to.
    pub fn connect_with(addr: SocketAddr, extra: &[(&str, &str)]) -> (Raw, client::Response) {
        let mut raw = Raw::tcp(addr);
        let key = client::generate_key();
        let mut req = Vec::new();
        client::write_request(&mut req, &addr.to_string(), "/", &key, extra);
        raw.send_raw(&req);
        loop {
            match client::parse_response(&raw.buf[..raw.end], &key).expect("a 101 response") {
                Parse::Complete((resp, used)) => {
                    raw.start = used;
                    return (raw, resp);
                }
                Parse::Incomplete(_) => raw.fill().expect("response bytes"),
            }
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends one masked frame.
    pub fn frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        self.frame_rsv1(fin, false, opcode, payload);
    }

    /// Sends one masked frame with RSV1 as given (a compressed message).
    pub fn frame_rsv1(&mut self, fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) {
        let mut out = Vec::new();
        self.enc.frame_with(&mut out, fin, rsv1, opcode, payload);
        self.send_raw(&out);
    }

    pub fn text(&mut self, text: &str) {
        self.frame(true, OpCode::Text, text.as_bytes());
    }

    pub fn close(&mut self, code: CloseCode, reason: &str) {
        let mut out = Vec::new();
        self.enc.close(&mut out, code, reason);
        self.send_raw(&out);
    }

    /// Reads more bytes into the buffer; Err at EOF.
    fn fill(&mut self) -> Result<(), std::io::Error> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        match self.stream.read(&mut self.buf[self.end..])? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                self.end += n;
                Ok(())
            }
        }
    }

    /// The next frame-level event (or EOF / a read error, which panics).
    pub fn next(&mut self) -> Got {
        let cfg = DecoderConfig {
            max_message_bytes: 64 << 20,
            allow_rsv1: true,
        };
        loop {
            let mut input = Input::new(&mut self.buf[self.start..self.end]);
            let ev = self
                .dec
                .decode(&mut input, &cfg)
                .expect("server frames are valid");
            let consumed = (self.end - self.start) - input.len();
            let got = ev.map(|ev| match ev {
                Event::Message(Message::Text(t)) => Got::Text(t.to_owned()),
                Event::Message(Message::Binary(b)) => Got::Binary(b.to_vec()),
                Event::Ping(p) => Got::Ping(p.to_vec()),
                Event::Pong(p) => Got::Pong(p.to_vec()),
                Event::Close(c) => Got::Close(c.code.get(), c.reason.to_owned()),
                Event::Compressed { payload, .. } => Got::Compressed(payload.to_vec()),
            });
            self.start += consumed;
            if let Some(got) = got {
                return got;
            }
            match self.fill() {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Got::Eof,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Reads until a close frame; returns its code and reason.
    pub fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.next() {
                Got::Close(code, reason) => return (code, reason),
                Got::Eof => panic!("connection ended without a close frame"),
                _ => {}
            }
        }
    }

    /// Reads until the server closes TCP (after any frames).
    pub fn expect_eof(&mut self) {
        loop {
            if self.next() == Got::Eof {
                return;
            }
        }
    }
}

/// Sends a raw HTTP request and returns the response's status and full text.
pub fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    // Read the head, then Content-Length bytes of body (a 101 has none and the
    // connection stays open, so reading to EOF would wait for the timeout).
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let body = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + body {
                break;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// An upgrade request with `extra` header lines (each ending in \r\n).
pub fn upgrade_request(extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// This process's resident memory in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}
