//! The protocol layer's one error type, and the single place where a protocol
//! error is mapped to the close code that tells the peer what went wrong.

use std::fmt;

use super::close::CloseCode;

/// A violation of RFC 6455 (or of a configured limit) by the peer.
///
/// The connection must be failed with [`ProtocolError::close_code`]. The
/// `Display` text is meant for logs and for the close frame's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    ReservedBits(u8),
    UnknownOpcode(u8),
    FragmentedControl,
    ControlTooLong(u64),
    UnmaskedFrame,
    MaskedFrame,
    UnexpectedContinuation,
    ExpectedContinuation,
    LengthOverflow,
    MessageTooLarge { limit: usize },
    InvalidUtf8,
    InvalidCloseCode(u16),
    CloseFrameTooShort,
    InflateFailed,
}

impl ProtocolError {
    pub(crate) fn reserved_bits(bits: u8) -> Self {
        Self {
            kind: Kind::ReservedBits(bits),
        }
    }
    pub(crate) fn unknown_opcode(op: u8) -> Self {
        Self {
            kind: Kind::UnknownOpcode(op),
        }
    }
    pub(crate) fn fragmented_control() -> Self {
        Self {
            kind: Kind::FragmentedControl,
        }
    }
    pub(crate) fn control_too_long(len: u64) -> Self {
        Self {
            kind: Kind::ControlTooLong(len),
        }
    }
    pub(crate) fn unmasked_frame() -> Self {
        Self {
            kind: Kind::UnmaskedFrame,
        }
    }
    pub(crate) fn masked_frame() -> Self {
        Self {
            kind: Kind::MaskedFrame,
        }
    }
    pub(crate) fn unexpected_continuation() -> Self {
        Self {
            kind: Kind::UnexpectedContinuation,
        }
    }
    pub(crate) fn expected_continuation() -> Self {
        Self {
            kind: Kind::ExpectedContinuation,
        }
    }
    pub(crate) fn length_overflow() -> Self {
        Self {
            kind: Kind::LengthOverflow,
        }
    }
    /// The message (after reassembly or inflation) exceeds `limit` bytes.
    pub fn message_too_large(limit: usize) -> Self {
        Self {
            kind: Kind::MessageTooLarge { limit },
        }
    }
    /// A text message (or close reason) is not valid UTF-8.
    pub fn invalid_utf8() -> Self {
        Self {
            kind: Kind::InvalidUtf8,
        }
    }
    pub(crate) fn invalid_close_code(code: u16) -> Self {
        Self {
            kind: Kind::InvalidCloseCode(code),
        }
    }
    pub(crate) fn close_frame_too_short() -> Self {
        Self {
            kind: Kind::CloseFrameTooShort,
        }
    }
    /// A compressed message could not be inflated (corrupt deflate data).
    pub fn inflate_failed() -> Self {
        Self {
            kind: Kind::InflateFailed,
        }
    }

    /// The close code to fail the connection with (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self.kind {
            Kind::MessageTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            Kind::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            Kind::InflateFailed => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// True when the error is a size limit being exceeded, not malformed input.
    pub fn is_limit(&self) -> bool {
        matches!(self.kind, Kind::MessageTooLarge { .. })
    }

    /// True when the error is invalid UTF-8 in a text message or close reason.
    pub fn is_invalid_utf8(&self) -> bool {
        matches!(self.kind, Kind::InvalidUtf8)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::ReservedBits(b) => {
                write!(
                    f,
                    "reserved bits set without a negotiated extension (0x{b:x})"
                )
            }
            Kind::UnknownOpcode(op) => write!(f, "unknown opcode 0x{op:x}"),
            Kind::FragmentedControl => f.write_str("fragmented control frame"),
            Kind::ControlTooLong(n) => write!(f, "control frame payload of {n} bytes (max 125)"),
            Kind::UnmaskedFrame => f.write_str("client frame is not masked"),
            Kind::MaskedFrame => f.write_str("server frame is masked"),
            Kind::UnexpectedContinuation => f.write_str("continuation frame without a message"),
            Kind::ExpectedContinuation => f.write_str("new data frame inside a fragmented message"),
            Kind::LengthOverflow => f.write_str("payload length has its most significant bit set"),
            Kind::MessageTooLarge { limit } => write!(f, "message larger than {limit} bytes"),
            Kind::InvalidUtf8 => f.write_str("invalid UTF-8 in text"),
            Kind::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            Kind::CloseFrameTooShort => f.write_str("close frame with a 1-byte payload"),
            Kind::InflateFailed => f.write_str("compressed message could not be inflated"),
        }
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_by_error_class() {
        assert_eq!(
            ProtocolError::invalid_utf8().close_code(),
            CloseCode::INVALID_PAYLOAD
        );
        assert_eq!(
            ProtocolError::message_too_large(10).close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
        assert_eq!(
            ProtocolError::unknown_opcode(3).close_code(),
            CloseCode::PROTOCOL_ERROR
        );
        assert!(ProtocolError::message_too_large(1).is_limit());
        assert_eq!(
            ProtocolError::message_too_large(1024).to_string(),
            "message larger than 1024 bytes"
        );
    }
}
