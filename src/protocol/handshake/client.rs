//! The client side of the opening handshake (used by [`crate::client`], the
//! load generator and tests).
//!
//! ```
//! use edgews::protocol::handshake::{accept_key, client};
//! use edgews::protocol::Parse;
//! let key = client::generate_key();
//! let mut req = Vec::new();
//! client::write_request(&mut req, "127.0.0.1:9001", "/", &key, &[]);
//! let resp = format!(
//!     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//!      Sec-WebSocket-Accept: {}\r\n\r\n",
//!     std::str::from_utf8(&accept_key(key.as_bytes())).unwrap()
//! );
//! let Parse::Complete((r, used)) = client::parse_response(resp.as_bytes(), &key).unwrap()
//! else { panic!() };
//! assert_eq!((r.protocol, used), (None, resp.len()));
//! ```

use std::io::Write;

use base64::Engine;

use super::{accept_key, header_buf, HandshakeError};
use crate::protocol::frame::Parse;

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64.
pub fn generate_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut bytes = [0u8; 16];
    for (i, half) in bytes.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Writes an upgrade request for `path` on `host` with `key`, plus `extra` headers.
pub fn write_request(out: &mut Vec<u8>, host: &str, path: &str, key: &str, extra: &[(&str, &str)]) {
    let _ = write!(
        out,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in extra {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What the server agreed to in its 101 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The subprotocol the server chose.
    pub protocol: Option<String>,
    /// The extensions the server agreed to: every `Sec-WebSocket-Extensions`
    /// value, joined with `, ` (`None` when there is no such header).
    pub extensions: Option<String>,
}

/// Parses and checks the server's answer to a request sent with `key`.
pub fn parse_response(buf: &[u8], key: &str) -> Result<Parse<(Response, usize)>, HandshakeError> {
    let mut headers = header_buf();
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(Parse::Incomplete(1)),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::too_many_headers()),
        Err(_) => return Err(HandshakeError::malformed("invalid response")),
    };
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        return Err(HandshakeError::status_not_101(status));
    }
    let get = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let has_token = |name: &str, token: &str| {
        resp.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .any(|h| {
                std::str::from_utf8(h.value)
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            })
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(HandshakeError::not_upgraded());
    }
    let expected = accept_key(key.as_bytes());
    if get("sec-websocket-accept").map(str::as_bytes) != Some(&expected[..]) {
        return Err(HandshakeError::bad_accept());
    }
    let mut extensions: Option<String> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| HandshakeError::malformed("Sec-WebSocket-Extensions is not UTF-8"))?
                .trim();
            match extensions.as_mut() {
                None => extensions = Some(value.to_owned()),
                Some(all) => {
                    all.push_str(", ");
                    all.push_str(value);
                }
            }
        }
    }
    Ok(Parse::Complete((
        Response {
            protocol: get("sec-websocket-protocol").map(str::to_owned),
            extensions,
        },
        len,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_16_bytes_and_fresh() {
        let a = generate_key();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        assert_eq!(decoded.len(), 16);
        assert_ne!(a, generate_key());
    }

    #[test]
    fn rejects_wrong_answers() {
        let key = generate_key();
        let status = parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n", &key).unwrap_err();
        assert_eq!(status.status(), 404);
        let no_up = parse_response(b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: x\r\n\r\n", &key);
        assert!(no_up.unwrap_err().to_string().contains("Upgrade"));
        let bad = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(parse_response(bad, &key)
            .unwrap_err()
            .to_string()
            .contains("Accept"));
        assert!(matches!(
            parse_response(b"HTTP/1.1 101", &key),
            Ok(Parse::Incomplete(_))
        ));
    }
}
