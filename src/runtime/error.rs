//! The runtime's one error type: failures to start or run a server.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Why a server could not start (or a worker stopped).
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Config(String),
    Bind {
        addr: SocketAddr,
        source: io::Error,
    },
    Io {
        what: &'static str,
        source: io::Error,
    },
    WorkerPanicked(usize),
    Tls(String),
}

impl Error {
    pub(crate) fn config(what: String) -> Self {
        Error {
            kind: Kind::Config(what),
        }
    }
    pub(crate) fn bind(addr: SocketAddr, source: io::Error) -> Self {
        Error {
            kind: Kind::Bind { addr, source },
        }
    }
    pub(crate) fn io(what: &'static str, source: io::Error) -> Self {
        Error {
            kind: Kind::Io { what, source },
        }
    }
    pub(crate) fn tls(what: String) -> Self {
        Error {
            kind: Kind::Tls(what),
        }
    }
    pub(crate) fn worker_panicked(index: usize) -> Self {
        Error {
            kind: Kind::WorkerPanicked(index),
        }
    }

    /// True when the configuration was rejected before anything started.
    pub fn is_config(&self) -> bool {
        matches!(self.kind, Kind::Config(_))
    }

    /// True when the listen address could not be bound.
    pub fn is_bind(&self) -> bool {
        matches!(self.kind, Kind::Bind { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Config(what) => write!(f, "invalid configuration: {what}"),
            Kind::Bind { addr, source } => write!(
                f,
                "cannot listen on {addr}: {source} (is another process using the port, or is the address not local?)"
            ),
            Kind::Io { what, source } => write!(f, "{what}: {source}"),
            Kind::WorkerPanicked(i) => write!(f, "worker {i} panicked (see the log above)"),
            Kind::Tls(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Bind { source, .. } | Kind::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
