//! One client connection: a non-blocking socket, the opening handshake, and
//! frames through the engine's own client codec.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use edgews::protocol::handshake::client;
use edgews::protocol::{
    Client as ClientRole, Decoder, DecoderConfig, Encoder, Event, Input, OpCode, Parse,
};
use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
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
    /// permessage-deflate was agreed: compressed (RSV1) messages may come.
    /// They are passed on still compressed (no scenario reads their content).
    deflate: bool,
    decoder: Decoder<ClientRole>,
    /// wss: the TLS session over the socket.
    tls: Option<Box<ClientConnection>>,
}

/// How a client connects: plain, or TLS with this configuration.
#[derive(Clone, Debug)]
pub struct Security {
    pub tls: Option<Arc<ClientConfig>>,
    pub server_name: ServerName<'static>,
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
    /// Queues one masked frame, with RSV1 (compressed) when `compressed`.
    pub fn send_with(
        &mut self,
        enc: &mut Encoder<ClientRole>,
        opcode: OpCode,
        compressed: bool,
        payload: &[u8],
    ) {
        enc.frame_with(&mut self.buf, true, compressed, opcode, payload);
    }

    /// True when bytes wait to be written.
    pub fn wants_write(&self) -> bool {
        self.pos < self.buf.len()
    }
}

impl Conn {
    /// True when TLS records wait for the socket.
    pub fn tls_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
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
    pub fn connect(to: SocketAddr, from: Option<IpAddr>, security: &Security) -> io::Result<Conn> {
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
        let tls = match &security.tls {
            None => None,
            Some(cfg) => Some(Box::new(
                ClientConnection::new(cfg.clone(), security.server_name.clone())
                    .map_err(io::Error::other)?,
            )),
        };
        Ok(Conn {
            sock: TcpStream::from_std(socket.into()),
            state: State::Connecting,
            key: client::generate_key(),
            head: Vec::new(),
            deflate: false,
            decoder: Decoder::new(),
            tls,
        })
    }

    /// Called on a writable event while connecting: queues the request once
    /// the TCP connection is up (true). Err when the connect failed.
    pub fn on_connected(
        &mut self,
        host: &str,
        path: &str,
        extra: &[(&str, &str)],
        out: &mut Out,
    ) -> io::Result<bool> {
        if let Some(e) = self.sock.take_error()? {
            return Err(e);
        }
        match self.sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(e),
        }
        client::write_request(&mut out.buf, host, path, &self.key, extra);
        self.state = State::Handshaking;
        Ok(true)
    }

    /// Writes what it can of `out` (through TLS when there is a session).
    /// Err when the connection broke.
    pub fn flush(&mut self, out: &mut Out) -> io::Result<()> {
        if let Some(tls) = self.tls.as_mut() {
            loop {
                if out.pos < out.buf.len() {
                    out.pos += tls.writer().write(&out.buf[out.pos..])?;
                }
                if !tls.wants_write() {
                    break;
                }
                match tls.write_tls(&mut self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if out.pos == out.buf.len() {
                out.buf.clear();
                out.pos = 0;
            }
            return Ok(());
        }
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
        loop {
            let n = if let Some(tls) = self.tls.as_mut() {
                match tls.reader().read(buf) {
                    Ok(0) => return false,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        match tls.read_tls(&mut self.sock) {
                            Ok(0) => return false,
                            Ok(_) => {
                                if tls.process_new_packets().is_err() {
                                    return false;
                                }
                                while tls.wants_write() {
                                    match tls.write_tls(&mut self.sock) {
                                        Ok(_) => {}
                                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                        Err(_) => return false,
                                    }
                                }
                                continue;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(_) => return false,
                        }
                    }
                    Err(_) => return false,
                }
            } else {
                match self.sock.read(buf) {
                    Ok(0) => return false,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            };
            if !self.consume(&mut buf[..n], &mut f) {
                return false;
            }
            if self.tls.is_none() && n < buf.len() {
                return true;
            }
        }
    }

    /// Handles plaintext bytes: the 101 response, then frames.
    fn consume(&mut self, data: &mut [u8], f: &mut impl FnMut(Incoming<'_>)) -> bool {
        let mut rest;
        let mut data = data;
        if self.state == State::Handshaking {
            self.head.extend_from_slice(data);
            match client::parse_response(&self.head, &self.key) {
                Ok(Parse::Complete((resp, used))) => {
                    self.state = State::Open;
                    self.deflate = resp
                        .extensions
                        .is_some_and(|e| e.contains("permessage-deflate"));
                    f(Incoming::Opened);
                    rest = std::mem::take(&mut self.head);
                    rest.drain(..used);
                    data = &mut rest[..];
                }
                Ok(Parse::Incomplete(_)) => return true,
                Err(_) => return false,
            }
        }
        let cfg = DecoderConfig {
            max_message_bytes: 64 << 20,
            allow_rsv1: self.deflate,
        };
        let mut input = Input::new(data);
        loop {
            match self.decoder.decode(&mut input, &cfg) {
                Ok(Some(Event::Message(m))) => f(Incoming::Message(m.as_bytes())),
                Ok(Some(Event::Compressed { payload, .. })) => f(Incoming::Message(payload)),
                Ok(Some(Event::Close(c))) => {
                    f(Incoming::Closed(c.code.get()));
                    return false;
                }
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}
