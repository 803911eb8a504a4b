//! A complete data message, borrowed.

/// A complete text or binary message, borrowed from the receive buffer (or
/// from the connection's reassembly buffer for fragmented messages).
///
/// ```
/// use edgews::protocol::Message;
/// let m = Message::Text("hi");
/// assert_eq!((m.as_bytes(), m.is_text(), m.len()), (&b"hi"[..], true, 2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A UTF-8 text message (validated).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The opcode of the frame that carries it.
    pub fn opcode(&self) -> super::OpCode {
        match self {
            Message::Text(_) => super::OpCode::Text,
            Message::Binary(_) => super::OpCode::Binary,
        }
    }

    /// True for a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
