//! A client connection over a non-blocking mio `TcpStream`: the [`Session`]
//! driven by readiness events of the caller's `mio::Poll`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::session::{Event, Sender, Session, State};
use super::{Config, Error};
use crate::protocol::deflate::DeflateParams;
use crate::protocol::{CloseCode, Message};

/// Bytes read from the socket per `read` call. One buffer per connection:
/// a client holds a few connections, not a million.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// One client connection on the caller's mio loop.
///
/// Register it (it is a [`mio::event::Source`]) for both
/// [`Interest::READABLE`] and [`Interest::WRITABLE`] — or use
/// [`Connection::register`] — call [`Connection::ready`] on each of its
/// events, poll no longer than [`Connection::deadline`] and call
/// [`Connection::ready`] then too. See the [module](super) example.
#[derive(Debug)]
pub struct Connection {
    sock: TcpStream,
    session: Session,
    connected: bool,
    buf: Vec<u8>,
    handshake_deadline: Instant,
    close_timeout: Duration,
    closing_since: Option<Instant>,
    shut: bool,
}

impl Connection {
    /// Starts a non-blocking connect to `addr` and queues the upgrade request
    /// for `path`, with `host` as the `Host` header (e.g. `"example.com:80"`).
    pub fn connect(
        addr: SocketAddr,
        host: &str,
        path: &str,
        config: &Config,
    ) -> Result<Connection, Error> {
        let sock = TcpStream::connect(addr)?;
        sock.set_nodelay(true)?;
        Ok(Connection {
            sock,
            session: Session::new(host, path, config),
            connected: false,
            buf: Vec::new(),
            handshake_deadline: Instant::now() + config.handshake_timeout,
            close_timeout: config.close_timeout,
            closing_since: None,
            shut: false,
        })
    }

    /// Registers the connection with `registry` for readable and writable events.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut self.sock,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// Handles readiness (or a deadline): finishes the connect, reads
    /// everything available and calls `f` for each event, writes what is
    /// queued, enforces the timeouts. Returns the state afterwards; at
    /// [`State::Closed`] the socket is shut and the connection can be
    /// deregistered and dropped ([`Connection::error`] says why, if it failed).
    pub fn ready(&mut self, mut f: impl FnMut(Event<'_>, &mut Sender)) -> State {
        if !self.connected && !self.shut {
            match self.check_connected() {
                Ok(true) => self.connected = true,
                Ok(false) => {}
                Err(e) => self.session.fail(Error::io(e)),
            }
        }
        if self.connected {
            self.read(&mut f);
            self.flush();
        }
        self.check_time(Instant::now());
        self.state()
    }

    /// Queues a message and writes what the socket takes. See [`Sender::send`].
    pub fn send(&mut self, msg: Message<'_>) -> Result<(), Error> {
        self.session.sender().send(msg)?;
        self.flush();
        Ok(())
    }

    /// Starts the close handshake. See [`Sender::close`].
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.session.sender().close(code, reason)?;
        self.flush();
        self.check_time(Instant::now());
        Ok(())
    }

    /// The sending half, to queue several messages before one
    /// [`Connection::flush`].
    pub fn sender(&mut self) -> &mut Sender {
        self.session.sender()
    }

    /// Writes what is queued until the socket would block.
    pub fn flush(&mut self) {
        if !self.connected || self.shut {
            return;
        }
        while !self.session.output().is_empty() {
            match self.sock.write(self.session.output()) {
                Ok(0) => {
                    self.session
                        .fail(Error::io(io::ErrorKind::WriteZero.into()));
                    break;
                }
                Ok(n) => self.session.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.session.fail(Error::io(e));
                    break;
                }
            }
        }
        self.shut_if_closed();
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        match self.session.state() {
            State::Handshaking if !self.connected => State::Connecting,
            s => s,
        }
    }

    /// When [`Connection::ready`] must be called even without an event: the
    /// end of the handshake or close timeout (`None` while open).
    pub fn deadline(&self) -> Option<Instant> {
        match self.state() {
            State::Connecting | State::Handshaking => Some(self.handshake_deadline),
            State::Closing => self.closing_since.map(|t| t + self.close_timeout),
            _ => None,
        }
    }

    /// Why the connection failed, if it did.
    pub fn error(&self) -> Option<&Error> {
        self.session.error()
    }

    /// The code of the server's close frame, once received.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.session.close_code()
    }

    /// The permessage-deflate parameters agreed in the handshake, if any.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.session.deflate()
    }

    fn check_connected(&mut self) -> io::Result<bool> {
        if let Some(e) = self.sock.take_error()? {
            return Err(e);
        }
        match self.sock.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn read(&mut self, f: &mut impl FnMut(Event<'_>, &mut Sender)) {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BUFFER_BYTES];
        }
        while !self.shut && self.session.state() != State::Closed {
            match self.sock.read(&mut self.buf) {
                Ok(0) => self.session.receive_eof(),
                Ok(n) => self.session.receive(&mut self.buf[..n], &mut *f),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.session.fail(Error::io(e)),
            }
        }
    }

    fn check_time(&mut self, now: Instant) {
        if self.session.state() == State::Closing && self.closing_since.is_none() {
            self.closing_since = Some(now);
        }
        if self.deadline().is_some_and(|d| now >= d) {
            let what = if self.state() == State::Closing {
                "the server did not finish the close handshake"
            } else {
                "no handshake response"
            };
            self.session.fail(Error::timeout(what));
        }
        self.shut_if_closed();
    }

    fn shut_if_closed(&mut self) {
        if self.session.state() == State::Closed && !self.shut {
            self.shut = true;
            let _ = self.sock.shutdown(Shutdown::Both);
            // The read buffer is not needed any more.
            self.buf = Vec::new();
        }
    }
}

impl mio::event::Source for Connection {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.sock.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.sock.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.sock.deregister(registry)
    }
}
