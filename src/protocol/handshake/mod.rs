//! The opening handshake (RFC 6455 §4): an HTTP/1.1 upgrade, parsed with
//! `httparse` straight from the receive buffer.
//!
//! [`server`] parses and checks a client's request and writes the 101 (or the
//! error status that says what was wrong); [`client`] writes a request and
//! checks the server's answer. Both share the accept-key computation and the
//! header-token matching here.

pub mod client;
mod error;
pub mod server;

pub use error::HandshakeError;

use base64::Engine;
use sha1::{Digest, Sha1};

/// Most headers a request or response may have; more is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// The GUID RFC 6455 appends to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
///
/// ```
/// // The example from RFC 6455 §1.3.
/// let accept = edgews::protocol::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(&accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut out)
        .expect("20 bytes encode to 28");
    debug_assert_eq!(n, 28);
    out
}

/// A parsed HTTP request head, borrowing the receive buffer.
#[derive(Debug)]
pub struct Request<'a> {
    method: &'a str,
    path: &'a str,
    minor_version: u8,
    headers: &'a [httparse::Header<'a>],
}

impl<'a> Request<'a> {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request target, e.g. `/chat?room=1`.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The HTTP minor version (1 for HTTP/1.1).
    pub fn minor_version(&self) -> u8 {
        self.minor_version
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers_named(name).next()
    }

    /// The value of the first header called `name`, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of the headers called `name` (case-insensitive), in order.
    pub fn headers_named<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        let headers: &'a [httparse::Header<'a>] = self.headers;
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// All headers as (name, value) pairs, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        let headers: &'a [httparse::Header<'a>] = self.headers;
        headers.iter().map(|h| (h.name, h.value))
    }

    /// True when a comma-separated header called `name` lists `token`
    /// (both compared case-insensitively, across repeated headers).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name).any(|t| t.eq_ignore_ascii_case(token))
    }

    /// The comma-separated tokens of every header called `name`, trimmed.
    pub fn tokens<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers_named(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }
}

/// Storage for the headers of one parse; lives on the caller's stack.
pub type HeaderBuf<'b> = [httparse::Header<'b>; MAX_HEADERS];

/// An empty [`HeaderBuf`].
pub const fn header_buf<'b>() -> HeaderBuf<'b> {
    [httparse::EMPTY_HEADER; MAX_HEADERS]
}

/// Writes an HTTP/1.1 response head and body, with `Connection: close`.
///
/// `extra` headers are written as given (name, value).
pub fn write_http_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) {
    use std::io::Write;
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status, reason_phrase(status));
    for (name, value) in extra {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(
        out,
        "Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(body);
}

/// The standard reason phrase of the statuses this crate sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
