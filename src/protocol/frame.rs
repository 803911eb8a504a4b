//! Frame headers (RFC 6455 §5.2): parsed straight from a byte slice, encoded
//! into a 14-byte stack buffer. Payloads are never copied here.

use super::error::ProtocolError;

/// A frame's opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: continues a fragmented data message.
    Continuation = 0x0,
    /// 0x1: first frame of a UTF-8 text message.
    Text = 0x1,
    /// 0x2: first frame of a binary message.
    Binary = 0x2,
    /// 0x8: close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// Decodes the low 4 bits of a frame's first byte; `None` for reserved opcodes.
    pub const fn from_u8(op: u8) -> Option<OpCode> {
        Some(match op {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong are control frames.
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// The longest possible frame header: 2 + 8 (64-bit length) + 4 (mask).
pub const MAX_HEADER_BYTES: usize = 14;

/// The largest payload a control frame may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1 (per-message compressed, when permessage-deflate is negotiated).
    pub rsv1: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, present on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

/// Outcome of an incremental parse: done, or how many more bytes are needed at least.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// Parsed; holds the value.
    Complete(T),
    /// The input ends too early; at least this many more bytes are needed.
    Incomplete(usize),
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns the header and its length in bytes (the payload starts right
    /// after), or [`Parse::Incomplete`] with how many more bytes are needed.
    /// Checks what a header alone can tell: RSV2/RSV3, reserved opcodes,
    /// control-frame rules and the 64-bit length's top bit. Masking and RSV1
    /// depend on the role and the extensions, and are checked by the decoder.
    ///
    /// ```
    /// use edgews::protocol::{FrameHeader, OpCode, Parse};
    /// let bytes = [0x81, 0x85, 1, 2, 3, 4]; // masked text frame, 5-byte payload
    /// let Parse::Complete((h, len)) = FrameHeader::parse(&bytes).unwrap() else { panic!() };
    /// assert_eq!((h.opcode, h.payload_len, h.mask, len), (OpCode::Text, 5, Some([1, 2, 3, 4]), 6));
    /// assert_eq!(FrameHeader::parse(&bytes[..3]).unwrap(), Parse::Incomplete(3));
    /// ```
    pub fn parse(buf: &[u8]) -> Result<Parse<(FrameHeader, usize)>, ProtocolError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(Parse::Incomplete(2 - buf.len())),
        };
        let rsv = b0 & 0x70;
        if rsv & 0x30 != 0 {
            return Err(ProtocolError::reserved_bits(rsv >> 4));
        }
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::unknown_opcode(b0 & 0x0F))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::fragmented_control());
            }
            if len7 > 125 {
                // 126/127 announce an extended length, which a control frame may not have.
                return Err(ProtocolError::control_too_long(u64::from(len7)));
            }
        }
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + ext + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(Parse::Incomplete(header_len - buf.len()));
        }
        let payload_len = match ext {
            0 => u64::from(len7),
            2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
            _ => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(b);
                if len >> 63 != 0 {
                    return Err(ProtocolError::length_overflow());
                }
                len
            }
        };
        let mask = masked.then(|| {
            let m = 2 + ext;
            [buf[m], buf[m + 1], buf[m + 2], buf[m + 3]]
        });
        Ok(Parse::Complete((
            FrameHeader {
                fin,
                rsv1: rsv & 0x40 != 0,
                opcode,
                mask,
                payload_len,
            },
            header_len,
        )))
    }

    /// Encodes the header into `out` and returns how many bytes it used (2 to 14).
    ///
    /// The length uses the minimal encoding, as RFC 6455 requires of senders.
    ///
    /// ```
    /// use edgews::protocol::{FrameHeader, OpCode};
    /// let h = FrameHeader { fin: true, rsv1: false, opcode: OpCode::Binary, mask: None, payload_len: 300 };
    /// let mut out = [0u8; 14];
    /// let n = h.encode(&mut out);
    /// assert_eq!(&out[..n], &[0x82, 126, 1, 44]);
    /// ```
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_BYTES]) -> usize {
        out[0] = (u8::from(self.fin) << 7) | (u8::from(self.rsv1) << 6) | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = if self.payload_len < 126 {
            out[1] = mask_bit | self.payload_len as u8;
            2
        } else if self.payload_len <= u64::from(u16::MAX) {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
            4
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            10
        };
        if let Some(m) = self.mask {
            out[n..n + 4].copy_from_slice(&m);
            n += 4;
        }
        n
    }

    /// Length of the encoded header for a payload of `len` bytes.
    pub const fn encoded_len(len: u64, masked: bool) -> usize {
        let base = if len < 126 {
            2
        } else if len <= u16::MAX as u64 {
            4
        } else {
            10
        };
        if masked {
            base + 4
        } else {
            base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv1: false,
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn round_trip_every_opcode_and_length_class() {
        let ops = [
            OpCode::Continuation,
            OpCode::Text,
            OpCode::Binary,
            OpCode::Close,
            OpCode::Ping,
            OpCode::Pong,
        ];
        for op in ops {
            for len in [0u64, 1, 125, 126, 65535, 65536, 1 << 40] {
                if op.is_control() && len > 125 {
                    continue;
                }
                for mask in [None, Some([9, 8, 7, 6])] {
                    let h = header(op, len, mask);
                    let mut out = [0u8; 14];
                    let n = h.encode(&mut out);
                    assert_eq!(n, FrameHeader::encoded_len(len, mask.is_some()));
                    assert_eq!(
                        FrameHeader::parse(&out[..n]).unwrap(),
                        Parse::Complete((h, n))
                    );
                    for cut in 0..n {
                        match FrameHeader::parse(&out[..cut]).unwrap() {
                            Parse::Incomplete(more) => assert!(more >= 1 && cut + more <= n),
                            Parse::Complete(_) => panic!("complete at {cut} of {n}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn length_encodings_are_minimal() {
        let mut out = [0u8; 14];
        assert_eq!(header(OpCode::Text, 125, None).encode(&mut out), 2);
        assert_eq!(header(OpCode::Text, 126, None).encode(&mut out), 4);
        assert_eq!(header(OpCode::Text, 65535, None).encode(&mut out), 4);
        assert_eq!(header(OpCode::Text, 65536, None).encode(&mut out), 10);
    }

    #[test]
    fn rejects_what_a_header_alone_shows() {
        let err = |b: &[u8]| FrameHeader::parse(b).unwrap_err().to_string();
        assert!(err(&[0xA1, 0x80]).contains("reserved bits")); // RSV2
        assert!(err(&[0x91, 0x80]).contains("reserved bits")); // RSV3
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert!(err(&[0x80 | op, 0x80]).contains("unknown opcode"));
        }
        assert!(err(&[0x09, 0x80]).contains("fragmented control"));
        assert!(err(&[0x89, 0xFE]).contains("control frame"));
        let mut big = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert!(err(&big).contains("most significant bit"));
        big[2] = 0x7F;
        assert!(matches!(
            FrameHeader::parse(&big).unwrap(),
            Parse::Complete(_)
        ));
        big[1] = 0xFF; // masked: 4 more bytes of key needed
        assert_eq!(FrameHeader::parse(&big).unwrap(), Parse::Incomplete(4));
    }

    #[test]
    fn rsv1_is_reported_not_rejected() {
        let Parse::Complete((h, _)) = FrameHeader::parse(&[0xC1, 0x00]).unwrap() else {
            panic!("complete")
        };
        assert!(h.rsv1);
    }
}
