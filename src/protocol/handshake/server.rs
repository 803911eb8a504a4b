//! The server side of the opening handshake.
//!
//! ```
//! use edgews::protocol::handshake::{header_buf, server};
//! use edgews::protocol::Parse;
//! let raw = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
//!     Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n";
//! let mut headers = header_buf();
//! let Parse::Complete((req, used)) = server::parse_request(raw, &mut headers, 8192).unwrap()
//! else { panic!("complete") };
//! assert_eq!((req.path(), used), ("/chat", raw.len()));
//! let server::RequestKind::Upgrade(up) = server::classify(&req).unwrap() else { panic!() };
//! let mut out = Vec::new();
//! server::write_accept_response(&mut out, up.key, None, None);
//! assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! ```

use base64::Engine;

use super::{accept_key, write_http_response, HandshakeError, HeaderBuf, Request};
use crate::protocol::frame::Parse;

/// Parses a request head from the start of `buf`.
///
/// Returns the request and the length of its head (bytes after it already
/// belong to the WebSocket stream), or [`Parse::Incomplete`] while the head
/// is not complete. A head longer than `max_header_bytes` or with more than
/// [`super::MAX_HEADERS`] headers fails with status 431.
pub fn parse_request<'h, 'b: 'h>(
    buf: &'b [u8],
    headers: &'h mut HeaderBuf<'b>,
    max_header_bytes: usize,
) -> Result<Parse<(Request<'h>, usize)>, HandshakeError> {
    let mut req = httparse::Request::new(headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            if len > max_header_bytes {
                return Err(HandshakeError::headers_too_large(max_header_bytes));
            }
            Ok(Parse::Complete((
                Request {
                    method: req.method.unwrap_or(""),
                    path: req.path.unwrap_or(""),
                    minor_version: req.version.unwrap_or(0),
                    headers: req.headers,
                },
                len,
            )))
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_header_bytes => {
            Err(HandshakeError::headers_too_large(max_header_bytes))
        }
        Ok(httparse::Status::Partial) => Ok(Parse::Incomplete(1)),
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::too_many_headers()),
        Err(e) => Err(HandshakeError::malformed(match e {
            httparse::Error::HeaderName => "invalid header name",
            httparse::Error::HeaderValue => "invalid header value",
            httparse::Error::NewLine => "invalid line ending",
            httparse::Error::Status => "invalid status",
            httparse::Error::Token => "invalid token",
            httparse::Error::Version => "invalid HTTP version",
            _ => "invalid request line",
        })),
    }
}

/// What a request asks for.
#[derive(Debug)]
pub enum RequestKind<'a> {
    /// A valid WebSocket upgrade.
    Upgrade(Upgrade<'a>),
    /// A plain HTTP request (no `Upgrade: websocket`): for the HTTP hook.
    Http,
}

/// The WebSocket-specific parts of a valid upgrade request.
#[derive(Debug, Clone, Copy)]
pub struct Upgrade<'a> {
    /// `Sec-WebSocket-Key` as sent (base64 of 16 bytes).
    pub key: &'a [u8],
}

/// Decides whether `req` is a valid WebSocket upgrade, a plain HTTP request,
/// or a failed upgrade (with the status to answer).
///
/// A request is an upgrade attempt when an `Upgrade` header lists `websocket`.
/// It must then be a `GET` over HTTP/1.1+, with `Host`, `Connection: Upgrade`
/// (token lists and case ignored), `Sec-WebSocket-Version: 13` (else 426) and a
/// key that is 16 bytes of base64.
pub fn classify<'a>(req: &Request<'a>) -> Result<RequestKind<'a>, HandshakeError> {
    if !req.has_token("upgrade", "websocket") {
        return Ok(RequestKind::Http);
    }
    if req.method() != "GET" {
        return Err(HandshakeError::not_get());
    }
    if req.minor_version() < 1 {
        return Err(HandshakeError::old_http());
    }
    if req.header("host").is_none() {
        return Err(HandshakeError::missing_host());
    }
    if !req.has_token("connection", "upgrade") {
        return Err(HandshakeError::no_connection_upgrade());
    }
    let mut versions = req.headers_named("sec-websocket-version");
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.trim_ascii() == b"13" => {}
        _ => return Err(HandshakeError::bad_version()),
    }
    let mut keys = req.headers_named("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k.trim_ascii(),
        _ => return Err(HandshakeError::bad_key()),
    };
    let mut decoded = [0u8; 18];
    match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) {
        Ok(16) => {}
        _ => return Err(HandshakeError::bad_key()),
    }
    Ok(RequestKind::Upgrade(Upgrade { key }))
}

/// Writes the `101 Switching Protocols` answer to an upgrade with `key`,
/// naming the chosen subprotocol and the agreed extensions, if any.
pub fn write_accept_response(
    out: &mut Vec<u8>,
    key: &[u8],
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&accept_key(key));
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(e) = extensions {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        out.extend_from_slice(e.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the HTTP error response for a failed handshake: its status, a
/// plain-text body saying what was wrong, and `Sec-WebSocket-Version: 13`
/// on a 426.
pub fn write_error_response(out: &mut Vec<u8>, err: &HandshakeError) {
    let body = format!("{err}\n");
    let extra: &[(&str, &str)] = if err.status() == 426 {
        &[("Sec-WebSocket-Version", "13")]
    } else {
        &[]
    };
    write_http_response(
        out,
        err.status(),
        "text/plain; charset=utf-8",
        extra,
        body.as_bytes(),
    );
}

#[cfg(test)]
mod tests {
    use super::super::header_buf;
    use super::*;

    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn outcome(raw: &str) -> Result<&'static str, u16> {
        let mut headers = header_buf();
        let parsed = parse_request(raw.as_bytes(), &mut headers, 8192).map_err(|e| e.status())?;
        let Parse::Complete((req, _)) = parsed else {
            return Ok("incomplete");
        };
        match classify(&req).map_err(|e| e.status())? {
            RequestKind::Upgrade(_) => Ok("upgrade"),
            RequestKind::Http => Ok("http"),
        }
    }

    #[test]
    fn accepts_the_rfc_example_and_variants() {
        assert_eq!(outcome(GOOD), Ok("upgrade"));
        let loose = GOOD
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("Connection: Upgrade", "connection: keep-alive, UPGRADE");
        assert_eq!(outcome(&loose), Ok("upgrade"));
        let split = GOOD.replace(
            "Connection: Upgrade",
            "Connection: keep-alive\r\nConnection: upgrade",
        );
        assert_eq!(outcome(&split), Ok("upgrade"));
    }

    #[test]
    fn bad_upgrades_get_their_status() {
        assert_eq!(outcome(&GOOD.replace("GET", "POST")), Err(400));
        assert_eq!(outcome(&GOOD.replace("HTTP/1.1", "HTTP/1.0")), Err(400));
        assert_eq!(
            outcome(&GOOD.replace("Host: server.example.com\r\n", "")),
            Err(400)
        );
        assert_eq!(
            outcome(&GOOD.replace("Connection: Upgrade", "Connection: close")),
            Err(400)
        );
        assert_eq!(
            outcome(&GOOD.replace("Version: 13", "Version: 8")),
            Err(426)
        );
        assert_eq!(
            outcome(&GOOD.replace("Sec-WebSocket-Version: 13\r\n", "")),
            Err(426)
        );
        assert_eq!(
            outcome(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")),
            Err(400)
        );
        assert_eq!(
            outcome(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!")),
            Err(400)
        );
        assert_eq!(
            outcome(&GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
            Err(400)
        );
        assert_eq!(outcome("GET / HTTP/1.1\r\nHo st: x\r\n\r\n"), Err(400));
    }

    #[test]
    fn plain_http_goes_to_the_hook() {
        assert_eq!(
            outcome("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok("http")
        );
        assert_eq!(
            outcome("GET /healthz HTTP/1.1\r\nHost: x\r\n"),
            Ok("incomplete")
        );
    }

    #[test]
    fn header_limits_give_431() {
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert_eq!(outcome(&big), Err(431));
        let partial = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(9000));
        assert_eq!(outcome(&partial), Err(431));
        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(outcome(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Err(431));
    }

    #[test]
    fn error_responses_say_what_is_wrong() {
        let mut out = Vec::new();
        write_error_response(&mut out, &HandshakeError::bad_version());
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(text.ends_with("unsupported Sec-WebSocket-Version (this server speaks 13)\n"));
    }

    #[test]
    fn accept_response_lists_protocol_and_extensions() {
        let mut out = Vec::new();
        write_accept_response(
            &mut out,
            b"dGhlIHNhbXBsZSBub25jZQ==",
            Some("chat"),
            Some("permessage-deflate"),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(text.contains("Sec-WebSocket-Extensions: permessage-deflate\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
