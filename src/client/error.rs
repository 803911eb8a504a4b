//! The client layer's one error type.

use std::fmt;
use std::io;

use crate::protocol::handshake::HandshakeError;
use crate::protocol::{CloseCode, ProtocolError};

/// Why a client connection failed, or why a call was refused.
///
/// Ask with the predicates; `Display` says what happened in words a user can
/// act on.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Io(io::Error),
    Handshake(HandshakeError),
    Protocol(ProtocolError),
    HeadersTooLarge { limit: usize },
    Timeout(&'static str),
    Abnormal,
    NotOpen,
    QueueFull { limit: usize },
}

impl Error {
    pub(crate) fn io(e: io::Error) -> Self {
        Self { kind: Kind::Io(e) }
    }
    pub(crate) fn handshake(e: HandshakeError) -> Self {
        Self {
            kind: Kind::Handshake(e),
        }
    }
    pub(crate) fn protocol(e: ProtocolError) -> Self {
        Self {
            kind: Kind::Protocol(e),
        }
    }
    pub(crate) fn headers_too_large(limit: usize) -> Self {
        Self {
            kind: Kind::HeadersTooLarge { limit },
        }
    }
    pub(crate) fn timeout(what: &'static str) -> Self {
        Self {
            kind: Kind::Timeout(what),
        }
    }
    pub(crate) fn abnormal() -> Self {
        Self {
            kind: Kind::Abnormal,
        }
    }
    pub(crate) fn not_open() -> Self {
        Self {
            kind: Kind::NotOpen,
        }
    }
    pub(crate) fn queue_full(limit: usize) -> Self {
        Self {
            kind: Kind::QueueFull { limit },
        }
    }

    /// A socket error (connect refused, reset, ...).
    pub fn is_io(&self) -> bool {
        matches!(self.kind, Kind::Io(_))
    }

    /// The server's handshake response was refused (status, accept key,
    /// extensions, size).
    pub fn is_handshake(&self) -> bool {
        matches!(self.kind, Kind::Handshake(_) | Kind::HeadersTooLarge { .. })
    }

    /// The server broke RFC 6455 (or a limit); we closed with
    /// [`Error::close_code`].
    pub fn is_protocol(&self) -> bool {
        matches!(self.kind, Kind::Protocol(_))
    }

    /// The handshake or the close handshake took too long.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(_))
    }

    /// The TCP connection ended without a close frame from the server.
    pub fn is_abnormal(&self) -> bool {
        matches!(self.kind, Kind::Abnormal)
    }

    /// A call that needs an open connection came before the handshake
    /// finished or after the close started.
    pub fn is_not_open(&self) -> bool {
        matches!(self.kind, Kind::NotOpen)
    }

    /// A send was refused because too many bytes wait for the socket.
    pub fn is_queue_full(&self) -> bool {
        matches!(self.kind, Kind::QueueFull { .. })
    }

    /// For a protocol error, the close code we sent the server.
    pub fn close_code(&self) -> Option<CloseCode> {
        match &self.kind {
            Kind::Protocol(e) => Some(e.close_code()),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Io(e) => write!(f, "socket error: {e}"),
            Kind::Handshake(e) => write!(f, "handshake failed: {e}"),
            Kind::Protocol(e) => write!(f, "server broke the protocol: {e}"),
            Kind::HeadersTooLarge { limit } => write!(
                f,
                "handshake failed: response head larger than {limit} bytes"
            ),
            Kind::Timeout(what) => write!(f, "timed out: {what}"),
            Kind::Abnormal => f.write_str("connection closed without a close frame (1006)"),
            Kind::NotOpen => f.write_str("connection is not open"),
            Kind::QueueFull { limit } => {
                write!(f, "more than {limit} bytes would wait for the socket")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Io(e) => Some(e),
            Kind::Handshake(e) => Some(e),
            Kind::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::io(e)
    }
}
