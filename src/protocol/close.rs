//! Close codes and close-frame payloads (RFC 6455 §5.5.1, §7.4).

use std::fmt;

use super::error::ProtocolError;

/// A WebSocket close status code.
///
/// ```
/// use edgews::protocol::CloseCode;
/// assert!(CloseCode::NORMAL.is_sendable());
/// assert!(!CloseCode::ABNORMAL.is_sendable()); // 1006 never goes on the wire
/// assert_eq!(u16::from(CloseCode::GOING_AWAY), 1001);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, idle timeout).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer violated the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reported locally when a close frame had no code; never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reported locally when the connection dropped without a close frame; never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data was inconsistent with its type (e.g. bad UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: the message violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (e.g. overloaded, slow consumer).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Wraps a raw code without checking it.
    pub const fn new(code: u16) -> Self {
        CloseCode(code)
    }

    /// The numeric value.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// Valid are 1000–1003, 1007–1011 (RFC 6455), 1012–1014 (registered with
    /// IANA since), 3000–3999 (registered) and 4000–4999 (private use).
    /// 1004–1006 and 1015 are reserved or local-only; anything else is
    /// unassigned and must be rejected by the receiver with 1002.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> u16 {
        c.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A received close frame's status: code and UTF-8 reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code ([`CloseCode::NO_STATUS`] when the frame had none).
    pub code: CloseCode,
    /// The reason text (possibly empty).
    pub reason: &'a str,
}

/// The most bytes of reason text a close frame can carry (125 - 2).
pub const MAX_REASON_BYTES: usize = 123;

/// Parses and validates a close frame's (unmasked) payload.
///
/// An empty payload means "no status" (1005). One byte, a code that may not be
/// sent, or a reason that is not UTF-8 are protocol errors.
pub fn parse_close_payload(payload: &[u8]) -> Result<CloseFrame<'_>, ProtocolError> {
    match payload {
        [] => Ok(CloseFrame {
            code: CloseCode::NO_STATUS,
            reason: "",
        }),
        [_] => Err(ProtocolError::close_frame_too_short()),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_sendable() {
                return Err(ProtocolError::invalid_close_code(code.0));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::invalid_utf8())?;
            Ok(CloseFrame { code, reason })
        }
    }
}

/// Writes a close payload (code + reason) into `out` and returns its length.
///
/// The reason is cut to [`MAX_REASON_BYTES`] on a character boundary so the
/// frame stays a valid control frame. [`CloseCode::NO_STATUS`] gives an empty
/// payload.
pub fn encode_close_payload(code: CloseCode, reason: &str, out: &mut [u8; 125]) -> usize {
    if code == CloseCode::NO_STATUS {
        return 0;
    }
    out[..2].copy_from_slice(&code.0.to_be_bytes());
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    2 + end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_class() {
        for code in 0..=u16::MAX {
            let valid = CloseCode(code).is_sendable();
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(valid, expected, "code {code}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let p = [(bad >> 8) as u8, bad as u8];
            let err = parse_close_payload(&p).unwrap_err();
            assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR, "code {bad}");
        }
        for good in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            let p = good.to_be_bytes();
            assert_eq!(parse_close_payload(&p).unwrap().code.get(), good);
        }
    }

    #[test]
    fn payload_shapes() {
        assert_eq!(parse_close_payload(&[]).unwrap().code, CloseCode::NO_STATUS);
        assert_eq!(
            parse_close_payload(&[3]).unwrap_err().close_code(),
            CloseCode::PROTOCOL_ERROR
        );
        let ok = parse_close_payload(b"\x03\xe8bye").unwrap();
        assert_eq!((ok.code, ok.reason), (CloseCode::NORMAL, "bye"));
        let bad = parse_close_payload(b"\x03\xe8\xff").unwrap_err();
        assert_eq!(bad.close_code(), CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn encode_truncates_on_char_boundary() {
        let mut out = [0u8; 125];
        let reason = "é".repeat(100); // 200 bytes
        let n = encode_close_payload(CloseCode::GOING_AWAY, &reason, &mut out);
        assert!(n <= 125);
        let parsed = parse_close_payload(&out[..n]).unwrap();
        assert_eq!(parsed.code, CloseCode::GOING_AWAY);
        assert_eq!(parsed.reason.len(), 122);
        assert_eq!(encode_close_payload(CloseCode::NO_STATUS, "x", &mut out), 0);
    }
}
