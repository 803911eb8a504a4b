//! Why an opening handshake failed, and what HTTP status says so.

use std::fmt;

/// A rejected or failed opening handshake.
///
/// On the server side, [`HandshakeError::status`] is the HTTP status to answer
/// with and `Display` is the body text; [`super::server::write_error_response`]
/// writes both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeError {
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Malformed(&'static str),
    HeadersTooLarge { limit: usize },
    TooManyHeaders,
    NotGet,
    OldHttp,
    MissingHost,
    NoConnectionUpgrade,
    BadVersion,
    BadKey,
    // Client side.
    Status(u16),
    BadAccept,
    NotUpgraded,
    Extension(&'static str),
    Subprotocol,
}

impl HandshakeError {
    pub(crate) fn malformed(what: &'static str) -> Self {
        Self {
            kind: Kind::Malformed(what),
        }
    }
    pub(crate) fn headers_too_large(limit: usize) -> Self {
        Self {
            kind: Kind::HeadersTooLarge { limit },
        }
    }
    pub(crate) fn too_many_headers() -> Self {
        Self {
            kind: Kind::TooManyHeaders,
        }
    }
    pub(crate) fn not_get() -> Self {
        Self { kind: Kind::NotGet }
    }
    pub(crate) fn old_http() -> Self {
        Self {
            kind: Kind::OldHttp,
        }
    }
    pub(crate) fn missing_host() -> Self {
        Self {
            kind: Kind::MissingHost,
        }
    }
    pub(crate) fn no_connection_upgrade() -> Self {
        Self {
            kind: Kind::NoConnectionUpgrade,
        }
    }
    pub(crate) fn bad_version() -> Self {
        Self {
            kind: Kind::BadVersion,
        }
    }
    pub(crate) fn bad_key() -> Self {
        Self { kind: Kind::BadKey }
    }
    pub(crate) fn status_not_101(status: u16) -> Self {
        Self {
            kind: Kind::Status(status),
        }
    }
    pub(crate) fn bad_accept() -> Self {
        Self {
            kind: Kind::BadAccept,
        }
    }
    pub(crate) fn not_upgraded() -> Self {
        Self {
            kind: Kind::NotUpgraded,
        }
    }
    pub(crate) fn subprotocol() -> Self {
        Self {
            kind: Kind::Subprotocol,
        }
    }
    pub(crate) fn extension(what: &'static str) -> Self {
        Self {
            kind: Kind::Extension(what),
        }
    }

    /// The HTTP status a server answers this error with.
    pub fn status(&self) -> u16 {
        match self.kind {
            Kind::HeadersTooLarge { .. } | Kind::TooManyHeaders => 431,
            Kind::BadVersion => 426,
            Kind::Status(s) => s,
            _ => 400,
        }
    }

    /// A short machine-friendly label, e.g. for a metrics counter.
    pub fn reason_label(&self) -> &'static str {
        match self.kind {
            Kind::Malformed(_) => "malformed",
            Kind::HeadersTooLarge { .. } | Kind::TooManyHeaders => "headers_too_large",
            Kind::NotGet => "method",
            Kind::OldHttp => "http_version",
            Kind::MissingHost => "missing_host",
            Kind::NoConnectionUpgrade => "connection_header",
            Kind::BadVersion => "ws_version",
            Kind::BadKey => "ws_key",
            Kind::Status(_)
            | Kind::BadAccept
            | Kind::NotUpgraded
            | Kind::Extension(_)
            | Kind::Subprotocol => "server_response",
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Malformed(what) => write!(f, "malformed HTTP request: {what}"),
            Kind::HeadersTooLarge { limit } => {
                write!(f, "request headers exceed the limit of {limit} bytes")
            }
            Kind::TooManyHeaders => {
                write!(f, "request has more than {} headers", super::MAX_HEADERS)
            }
            Kind::NotGet => f.write_str("a WebSocket upgrade must use the GET method"),
            Kind::OldHttp => f.write_str("a WebSocket upgrade needs HTTP/1.1 or later"),
            Kind::MissingHost => f.write_str("the Host header is missing"),
            Kind::NoConnectionUpgrade => {
                f.write_str("the Connection header must contain the token \"Upgrade\"")
            }
            Kind::BadVersion => {
                f.write_str("unsupported Sec-WebSocket-Version (this server speaks 13)")
            }
            Kind::BadKey => {
                f.write_str("Sec-WebSocket-Key must be present once and be 16 bytes in base64")
            }
            Kind::Status(s) => write!(f, "server answered with status {s}, not 101"),
            Kind::BadAccept => f.write_str("server sent a wrong Sec-WebSocket-Accept"),
            Kind::NotUpgraded => {
                f.write_str("server response lacks Upgrade: websocket / Connection: Upgrade")
            }
            Kind::Subprotocol => f.write_str("server chose a subprotocol that was not requested"),
            Kind::Extension(what) => {
                write!(
                    f,
                    "server's Sec-WebSocket-Extensions answer refused: {what}"
                )
            }
        }
    }
}

impl std::error::Error for HandshakeError {}
