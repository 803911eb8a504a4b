//! The byte stream under a connection. Workers only read plaintext from and
//! write plaintext to a [`Transport`]; what carries it is decided here, so a
//! TLS session can be added as another variant without touching the workers.

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
}
