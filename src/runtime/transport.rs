//! The byte stream under a connection. Workers only read plaintext from and
//! write plaintext to a [`Transport`]; what carries it is decided here, so a
//! TLS session is another variant and the workers do not change.
//!
//! The contract a variant keeps:
//! - `read` returns plaintext, `WouldBlock` when there is none yet (a TLS
//!   handshake in progress reads and writes records inside it), `Ok(0)` at EOF.
//! - `write_vectored` takes plaintext; it may keep some output buffered
//!   inside (TLS records the socket did not take), reported by
//!   `has_buffered_output` and pushed on by `flush` when the socket becomes
//!   writable. It returns `WouldBlock` rather than buffer without bound.
//! - `shutdown_write` ends our direction (TLS: close_notify first).

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::TcpStream;

use super::outbox::VectoredWrite;

/// A connection's byte stream.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
}

impl Transport {
    /// Wraps a freshly accepted socket.
    pub fn new(stream: TcpStream) -> Transport {
        Transport::Plain(stream)
    }

    /// Writes output buffered inside the transport; `Ok(true)` when none is left.
    pub fn flush(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
        }
    }

    /// True while output is buffered inside the transport.
    pub fn has_buffered_output(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
        }
    }

    /// Reads plaintext into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
        }
    }

    /// Ends our side of the stream once everything is written.
    pub fn shutdown_write(&mut self) {
        match self {
            Transport::Plain(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
        }
    }

    /// The peer's address (one syscall).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Plain(s) => s.peer_addr().ok(),
        }
    }
}

impl VectoredWrite for Transport {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write_vectored(bufs),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
        }
    }
}
