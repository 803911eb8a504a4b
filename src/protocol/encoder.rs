//! Frame encoding for either role: the server writes payloads as they are, the
//! client masks them with a fresh key per frame.

use std::marker::PhantomData;

use bytes::{BufMut, Bytes};

use super::close::{encode_close_payload, CloseCode};
use super::frame::{FrameHeader, OpCode, MAX_HEADER_BYTES};
use super::mask::apply_mask;
use super::role::Role;

/// Writes frames for role `R` into any [`BufMut`] (a `Vec<u8>`, a `BytesMut`).
///
/// ```
/// use edgews::protocol::{Encoder, OpCode, Server};
/// let mut out = Vec::new();
/// Encoder::<Server>::new().frame(&mut out, OpCode::Text, b"hi");
/// assert_eq!(out, [0x81, 2, b'h', b'i']);
/// ```
#[derive(Debug)]
pub struct Encoder<R: Role> {
    rng: u64,
    _role: PhantomData<R>,
}

impl<R: Role> Default for Encoder<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Role> Encoder<R> {
    /// A new encoder. A client encoder seeds its masking-key generator from
    /// the process's random hash keys.
    pub fn new() -> Self {
        let rng = if R::IS_SERVER { 0 } else { random_seed() };
        Encoder {
            rng,
            _role: PhantomData,
        }
    }

    /// Appends one whole, final frame.
    pub fn frame(&mut self, out: &mut impl BufMut, opcode: OpCode, payload: &[u8]) {
        self.frame_with(out, true, false, opcode, payload);
    }

    /// Appends one frame with explicit FIN and RSV1 bits (fragments, compressed messages).
    pub fn frame_with(
        &mut self,
        out: &mut impl BufMut,
        fin: bool,
        rsv1: bool,
        opcode: OpCode,
        payload: &[u8],
    ) {
        let mask = (!R::IS_SERVER).then(|| self.next_mask());
        let header = FrameHeader {
            fin,
            rsv1,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_BYTES];
        let n = header.encode(&mut head);
        out.put_slice(&head[..n]);
        match mask {
            None => out.put_slice(payload),
            Some(key) => {
                // Mask through a small stack buffer: works for any BufMut, and the
                // copy stays in L1.
                let mut chunk = [0u8; 1024];
                for (i, piece) in payload.chunks(chunk.len()).enumerate() {
                    let c = &mut chunk[..piece.len()];
                    c.copy_from_slice(piece);
                    apply_mask(c, key, i * 1024);
                    out.put_slice(c);
                }
            }
        }
    }

    /// Appends a close frame with `code` and `reason` (cut to 123 bytes).
    pub fn close(&mut self, out: &mut impl BufMut, code: CloseCode, reason: &str) {
        let mut payload = [0u8; 125];
        let n = encode_close_payload(code, reason, &mut payload);
        self.frame(out, OpCode::Close, &payload[..n]);
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64*: unpredictable enough for masking keys of a test and load client.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32).to_le_bytes()[..4]
            .try_into()
            .expect("4 bytes")
    }
}

/// Frames a whole server message once into one shared buffer, ready to be
/// queued to any number of connections (broadcast).
///
/// ```
/// use edgews::protocol::{server_frame, OpCode};
/// let f = server_frame(OpCode::Binary, &[1, 2, 3]);
/// assert_eq!(&f[..], &[0x82, 3, 1, 2, 3]);
/// ```
pub fn server_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    server_frame_with(opcode, false, payload)
}

/// Like [`server_frame`], with RSV1 set when `compressed`.
pub fn server_frame_with(opcode: OpCode, compressed: bool, payload: &[u8]) -> Bytes {
    let len = payload.len() as u64;
    let mut v = Vec::with_capacity(FrameHeader::encoded_len(len, false) + payload.len());
    let header = FrameHeader {
        fin: true,
        rsv1: compressed,
        opcode,
        mask: None,
        payload_len: len,
    };
    let mut head = [0u8; MAX_HEADER_BYTES];
    let n = header.encode(&mut head);
    v.extend_from_slice(&head[..n]);
    v.extend_from_slice(payload);
    Bytes::from(v)
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Client, Decoder, DecoderConfig, Event, Input, Message, Server};

    #[test]
    fn client_frames_decode_on_the_server() {
        let mut enc = Encoder::<Client>::new();
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        enc.frame(&mut out, OpCode::Binary, &payload);
        enc.frame(&mut out, OpCode::Text, "héllo".as_bytes());
        enc.close(&mut out, CloseCode::NORMAL, "bye");
        let mut dec = Decoder::<Server>::new();
        let cfg = DecoderConfig::default();
        let mut input = Input::new(&mut out);
        assert_eq!(
            dec.decode(&mut input, &cfg).unwrap(),
            Some(Event::Message(Message::Binary(&payload)))
        );
        assert_eq!(
            dec.decode(&mut input, &cfg).unwrap(),
            Some(Event::Message(Message::Text("héllo")))
        );
        match dec.decode(&mut input, &cfg).unwrap() {
            Some(Event::Close(c)) => assert_eq!((c.code, c.reason), (CloseCode::NORMAL, "bye")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_masks_differ_per_frame() {
        let mut enc = Encoder::<Client>::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        enc.frame(&mut a, OpCode::Text, b"x");
        enc.frame(&mut b, OpCode::Text, b"x");
        assert_ne!(a[2..6], b[2..6]);
    }

    #[test]
    fn server_frames_decode_on_the_client() {
        let mut frame = server_frame(OpCode::Text, b"abc").to_vec();
        let mut dec = Decoder::<Client>::new();
        let ev = dec
            .decode(&mut Input::new(&mut frame), &DecoderConfig::default())
            .unwrap();
        assert_eq!(ev, Some(Event::Message(Message::Text("abc"))));
    }
}
