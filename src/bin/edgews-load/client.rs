//! One client connection: a non-blocking socket, the opening handshake, and
//! frames through the engine's own client codec.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use edgews::protocol::handshake::client;
use edgews::protocol::{
    Client as ClientRole, Decoder, DecoderConfig, Encoder, Event, Input, OpCode, Parse,
};
use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// TCP connect in progress.
    Connecting,
    /// Request sent, waiting for the 101.
    Handshaking,
    /// Messages flow.
    Open,
}

/// The read side of a client connection (socket, handshake, decoder).
pub struct Conn {
    pub sock: TcpStream,
    pub state: State,
    key: String,
    /// Bytes of the handshake response received so far.
    head: Vec<u8>,
    decoder: Decoder<ClientRole>,
}

/// The write side of a client connection: bytes waiting for the socket.
/// Kept apart from [`Conn`] so a scenario can queue sends to any connection
/// while a received message still borrows the loop's read buffer.
#[derive(Default)]
pub struct Out {
    buf: Vec<u8>,
    pos: usize,
    /// The handshake is done: messages may be queued.
    pub open: bool,
}

impl Out {
    /// Queues one masked frame.
    pub fn send(&mut self, enc: &mut Encoder<ClientRole>, opcode: OpCode, payload: &[u8]) {
        enc.frame(&mut self.buf, opcode, payload);
    }

    /// True when bytes wait to be written.
    pub fn wants_write(&self) -> bool {
        self.pos < self.buf.len()
    }
}

/// What reading produced.
pub enum Incoming<'a> {
    /// The handshake completed.
    Opened,
    /// A data message (text or binary payload), borrowed from the read buffer.
    Message(&'a [u8]),
    /// The server sent a close frame with this code.
    Closed(u16),
}

/// EINPROGRESS on Linux: a non-blocking connect is under way.
const EINPROGRESS: i32 = 115;

impl Conn {
    /// Starts a non-blocking connect to `to`, from `from` if given (to use
    /// several loopback source addresses).
    pub fn connect(to: SocketAddr, from: Option<IpAddr>) -> io::Result<Conn> {
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if let Some(ip) = from {
            socket.bind(&SocketAddr::new(ip, 0).into())?;
        }
        match socket.connect(&to.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(Conn {
            sock: TcpStream::from_std(socket.into()),
            state: State::Connecting,
            key: client::generate_key(),
            head: Vec::new(),
            decoder: Decoder::new(),
        })
    }

    /// Called on a writable event while connecting: queues the request once
    /// the TCP connection is up (true). Err when the connect failed.
    pub fn on_connected(&mut self, host: &str, path: &str, out: &mut Out) -> io::Result<bool> {
        if let Some(e) = self.sock.take_error()? {
            return Err(e);
        }
        match self.sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(e),
        }
        client::write_request(&mut out.buf, host, path, &self.key, &[]);
        self.state = State::Handshaking;
        Ok(true)
    }

    /// Writes what it can of `out`. Err when the connection broke.
    pub fn flush(&mut self, out: &mut Out) -> io::Result<()> {
        while out.pos < out.buf.len() {
            match self.sock.write(&out.buf[out.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => out.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if out.pos == out.buf.len() {
            out.buf.clear();
            out.pos = 0;
        }
        Ok(())
    }

    /// Reads everything available into `buf` (the loop's shared buffer) and
    /// hands each handshake completion, message and close to `f`. Returns
    /// false at EOF, on an error, or after a close frame.
    pub fn read(&mut self, buf: &mut [u8], mut f: impl FnMut(Incoming<'_>)) -> bool {
        let cfg = DecoderConfig {
            max_message_bytes: 64 << 20,
            allow_rsv1: false,
        };
        loop {
            let n = match self.sock.read(buf) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            };
            let mut rest;
            let mut data = &mut buf[..n];
            if self.state == State::Handshaking {
                self.head.extend_from_slice(data);
                match client::parse_response(&self.head, &self.key) {
                    Ok(Parse::Complete((_, used))) => {
                        self.state = State::Open;
                        f(Incoming::Opened);
                        rest = std::mem::take(&mut self.head);
                        rest.drain(..used);
                        data = &mut rest[..];
                    }
                    Ok(Parse::Incomplete(_)) => continue,
                    Err(_) => return false,
                }
            }
            let mut input = Input::new(data);
            loop {
                match self.decoder.decode(&mut input, &cfg) {
                    Ok(Some(Event::Message(m))) => f(Incoming::Message(m.as_bytes())),
                    Ok(Some(Event::Close(c))) => {
                        f(Incoming::Closed(c.code.get()));
                        return false;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return false,
                }
            }
            if n < buf.len() {
                return true;
            }
        }
    }
}
