//! The byte stream under a connection. Workers only read plaintext from and
//! write plaintext to a [`Transport`]; what carries it is decided here.
//!
//! The contract every variant keeps:
//! - `read` returns plaintext, `WouldBlock` when there is none yet (a TLS
//!   handshake in progress reads and writes records inside it), `Ok(0)` at
//!   EOF. A read shorter than the buffer means the socket is drained.
//! - `write`/`write_vectored` take plaintext; a variant may keep some output
//!   inside (TLS records the socket did not take), reported by
//!   `has_buffered_output` and pushed on by `flush` when the socket becomes
//!   writable. It returns `WouldBlock` rather than buffer without bound.
//! - `shutdown_write` ends our direction (TLS: close_notify first).

use std::io::{self, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use mio::net::TcpStream;

use super::outbox::VectoredWrite;
use super::tls::TlsStream;

/// A connection's byte stream.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the rustls state is large and most servers run
    /// plain behind a terminating proxy, or all-TLS where the box is one more
    /// pointer among the session's buffers).
    Tls(Box<TlsStream>),
}

impl Transport {
    /// Wraps a freshly accepted (and registered) socket.
    pub fn new(
        stream: TcpStream,
        tls: Option<&Arc<rustls::ServerConfig>>,
    ) -> io::Result<Transport> {
        Ok(match tls {
            None => Transport::Plain(stream),
            Some(config) => Transport::Tls(Box::new(TlsStream::new(stream, config)?)),
        })
    }

    /// Writes output buffered inside the transport; `Ok(true)` when none is left.
    pub fn flush(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(t) => t.flush(),
        }
    }

    /// True while output is buffered inside the transport.
    pub fn has_buffered_output(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.has_buffered_output(),
        }
    }

    /// Reads plaintext into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }

    /// Reads plaintext into memory that may be uninitialised, for a read
    /// straight into a message buffer's spare capacity. `None` over TLS
    /// (its plaintext is copied out of the session's buffer anyway: read
    /// with [`Transport::read`]).
    pub fn read_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> Option<io::Result<usize>> {
        match self {
            Transport::Plain(s) => {
                // SAFETY: `buf` is valid for writes of `buf.len()` bytes and
                // recv writes at most that many; the descriptor is owned by
                // `s`, which is alive for the call.
                let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                Some(if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                })
            }
            Transport::Tls(_) => None,
        }
    }

    /// Ends our side of the stream once everything is written.
    pub fn shutdown_write(&mut self) {
        match self {
            Transport::Plain(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            Transport::Tls(t) => t.shutdown_write(),
        }
    }

    /// The peer's address (one syscall).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Plain(s) => s.peer_addr().ok(),
            Transport::Tls(t) => t.socket().peer_addr().ok(),
        }
    }
}

impl VectoredWrite for Transport {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write_vectored(bufs),
            Transport::Tls(t) => t.write_vectored(bufs),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.write_vectored(&[IoSlice::new(buf)]),
        }
    }
}
