//! Message assembly: turns a byte stream into messages and control frames.
//!
//! The decoder works in place over the caller's buffer. A frame whose whole
//! payload is in the buffer is unmasked there and handed out as a borrow, with
//! no copy (the common case for small messages). A frame or message that spans
//! reads is unmasked and UTF-8-checked as its bytes arrive, and collected into
//! a buffer that exists only until the message is complete; an idle decoder
//! holds no heap memory at all (8 bytes inline).
//!
//! The contract is the incremental-parse one: call [`Decoder::decode`] until it
//! returns `Ok(None)`, which means every input byte has been consumed and
//! remembered as needed; the next bytes continue where these stopped.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use super::close::{parse_close_payload, CloseFrame};
use super::error::ProtocolError;
use super::frame::{FrameHeader, OpCode, Parse, MAX_CONTROL_PAYLOAD, MAX_HEADER_BYTES};
use super::mask::apply_mask;
use super::message::Message;
use super::role::Role;
use super::utf8::Utf8Validator;

/// What the decoder accepts; fixed per connection once the handshake is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Largest data message, after reassembly, in bytes. Larger ones fail with 1009
    /// as soon as a frame header announces them, before their payload is read.
    pub max_message_bytes: usize,
    /// Accept RSV1 on the first frame of a data message (permessage-deflate).
    pub allow_rsv1: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            max_message_bytes: 16 << 20,
            allow_rsv1: false,
        }
    }
}

/// One decoded item. Borrows either the input buffer or the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete data message (text already validated as UTF-8).
    Message(Message<'a>),
    /// A complete message sent with RSV1 set (permessage-deflate): the payload
    /// still has to be inflated and, for text, validated.
    Compressed {
        /// True for a binary message, false for text.
        binary: bool,
        /// The compressed payload, unmasked, without the 4-byte deflate tail.
        payload: &'a [u8],
    },
    /// A ping with its application data (0–125 bytes).
    Ping(&'a [u8]),
    /// A pong with its application data (0–125 bytes).
    Pong(&'a [u8]),
    /// A close frame, validated.
    Close(CloseFrame<'a>),
}

/// A cursor over the bytes still to decode. Decoded payloads are split off
/// its front, so events can borrow them while decoding goes on.
#[derive(Debug)]
pub struct Input<'a> {
    rest: &'a mut [u8],
}

impl<'a> Input<'a> {
    /// Wraps a mutable buffer (payloads are unmasked in place).
    pub fn new(buf: &'a mut [u8]) -> Self {
        Input { rest: buf }
    }

    /// Bytes not yet consumed.
    pub fn len(&self) -> usize {
        self.rest.len()
    }

    /// True when everything was consumed.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The unconsumed bytes (for a caller that stops decoding early).
    pub fn remaining(&self) -> &[u8] {
        self.rest
    }

    fn take(&mut self, n: usize) -> &'a mut [u8] {
        let rest = std::mem::take(&mut self.rest);
        let (head, tail) = rest.split_at_mut(n);
        self.rest = tail;
        head
    }
}

/// Incremental frame and message decoder for role `R`.
///
/// ```
/// use edgews::protocol::{Decoder, DecoderConfig, Event, Input, Message, Server};
/// let mut dec = Decoder::<Server>::new();
/// let cfg = DecoderConfig::default();
/// // "Hi" as a masked text frame, delivered in two reads.
/// let mut frame = vec![0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2];
/// let (a, b) = frame.split_at_mut(5);
/// assert!(dec.decode(&mut Input::new(a), &cfg).unwrap().is_none());
/// let mut input = Input::new(b);
/// let ev = dec.decode(&mut input, &cfg).unwrap();
/// assert_eq!(ev, Some(Event::Message(Message::Text("Hi"))));
/// ```
#[derive(Debug)]
pub struct Decoder<R: Role> {
    partial: Option<Box<Partial>>,
    _role: PhantomData<R>,
}

impl<R: Role> Default for Decoder<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything kept between reads. Allocated only while something is incomplete.
#[derive(Debug)]
struct Partial {
    header: [u8; MAX_HEADER_BYTES],
    header_len: u8,
    frame: Option<FrameState>,
    message: Option<MessageState>,
    control: [u8; MAX_CONTROL_PAYLOAD],
    control_len: u8,
    /// What the last returned event borrowed, released on the next call.
    lent: Lent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lent {
    Nothing,
    Message,
    Control,
}

#[derive(Clone, Copy, Debug)]
struct FrameState {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    done: u64,
    remaining: u64,
}

#[derive(Debug)]
struct MessageState {
    binary: bool,
    compressed: bool,
    buf: Vec<u8>,
    utf8: Utf8Validator,
}

/// What the parsing loop found ready, resolved into an event after the loop
/// (so borrows of the decoder are only taken once the loop is done).
enum Ready<'a> {
    Whole(FrameHeader, &'a mut [u8]),
    Control(OpCode),
    Message,
}

impl<R: Role> Decoder<R> {
    /// A decoder at the start of a stream.
    pub const fn new() -> Self {
        Decoder {
            partial: None,
            _role: PhantomData,
        }
    }

    /// True when no partial frame or message is held (no heap memory in use).
    pub fn is_idle(&self) -> bool {
        self.partial.is_none()
    }

    /// Bytes of heap memory held for partial input (0 when idle).
    pub fn buffered_bytes(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| {
            std::mem::size_of::<Partial>() + p.message.as_ref().map_or(0, |m| m.buf.capacity())
        })
    }

    /// Room to read the rest of the current data frame's payload into
    /// directly, skipping the copy from a receive buffer: the message
    /// buffer's spare capacity, at most the bytes the frame still has and at
    /// most `max` (the buffer grows as [`Decoder::decode`] would grow it for
    /// a read of that size). `None` unless a data frame with at least `min`
    /// payload bytes to come is in progress. Pass what was read to
    /// [`Decoder::payload_filled`], then call [`Decoder::decode`] (with
    /// empty input) for the events it completed.
    pub fn payload_room(
        &mut self,
        min: usize,
        max: usize,
        cfg: &DecoderConfig,
    ) -> Option<&mut [MaybeUninit<u8>]> {
        let p = self.partial.as_deref_mut()?;
        p.release_loan();
        let f = p.frame.as_ref()?;
        let m = p.message.as_mut()?;
        if f.opcode.is_control() || f.remaining < min.max(1) as u64 {
            return None;
        }
        // Bounded by the message limit, checked against the frame header.
        let remaining = usize::try_from(f.remaining).unwrap_or(usize::MAX);
        let chunk = remaining.min(max.max(1));
        reserve_for(
            &mut m.buf,
            chunk,
            (remaining - chunk) as u64,
            f.fin,
            cfg.max_message_bytes,
        );
        let room = (m.buf.capacity() - m.buf.len()).min(remaining);
        Some(&mut m.buf.spare_capacity_mut()[..room])
    }

    /// Takes the first `n` bytes of the room [`Decoder::payload_room`] gave
    /// as the frame's next payload bytes: unmasks them in place and checks
    /// them as UTF-8 in a text message.
    ///
    /// # Safety
    ///
    /// Since that call, nothing else was called on the decoder, and the
    /// first `n` bytes of the room it returned were initialised (written by
    /// a read); `n` is at most the room's length.
    pub unsafe fn payload_filled(&mut self, n: usize) -> Result<(), ProtocolError> {
        let p = self
            .partial
            .as_deref_mut()
            .expect("payload_filled without payload_room");
        let (Some(f), Some(m)) = (p.frame.as_mut(), p.message.as_mut()) else {
            panic!("payload_filled without payload_room");
        };
        let start = m.buf.len();
        assert!(
            n as u64 <= f.remaining && n <= m.buf.capacity() - start,
            "payload_filled past the room"
        );
        // SAFETY: the caller initialised these n bytes of spare capacity,
        // which the assertion above bounds to the buffer's capacity.
        unsafe { m.buf.set_len(start + n) };
        let chunk = &mut m.buf[start..];
        if let Some(mask) = f.mask {
            apply_mask(chunk, mask, (f.done & 3) as usize);
        }
        f.done += n as u64;
        f.remaining -= n as u64;
        if !m.binary && !m.compressed {
            m.utf8.feed(&m.buf[start..])?;
        }
        Ok(())
    }

    /// Decodes the next event from `input`.
    ///
    /// Returns `Ok(None)` once `input` is used up (partial data is kept for the
    /// next call). The event borrows `input` or the decoder, so it must be
    /// dropped before the next call. After an error the stream is unusable.
    pub fn decode<'s, 'a: 's>(
        &'s mut self,
        input: &mut Input<'a>,
        cfg: &DecoderConfig,
    ) -> Result<Option<Event<'s>>, ProtocolError> {
        if let Some(p) = self.partial.as_deref_mut() {
            p.release_loan();
        }
        let Some(ready) = self.next_ready(input, cfg)? else {
            if self.partial.as_deref().is_some_and(Partial::is_empty) {
                self.partial = None;
            }
            return Ok(None);
        };
        match ready {
            Ready::Whole(h, payload) => {
                if let Some(m) = h.mask {
                    apply_mask(payload, m, 0);
                }
                let payload: &'s [u8] = payload;
                Ok(Some(match h.opcode {
                    OpCode::Text | OpCode::Binary if h.rsv1 => Event::Compressed {
                        binary: h.opcode == OpCode::Binary,
                        payload,
                    },
                    OpCode::Text => Event::Message(Message::Text(
                        simdutf8::basic::from_utf8(payload)
                            .map_err(|_| ProtocolError::invalid_utf8())?,
                    )),
                    OpCode::Binary => Event::Message(Message::Binary(payload)),
                    op => control_event(op, payload)?,
                }))
            }
            Ready::Control(op) => {
                let p = self.partial.as_deref_mut().expect("control frame state");
                p.lent = Lent::Control;
                control_event(op, &p.control[..usize::from(p.control_len)]).map(Some)
            }
            Ready::Message => {
                let p = self.partial.as_deref_mut().expect("message state");
                p.lent = Lent::Message;
                let m = p.message.as_ref().expect("message state");
                Ok(Some(if m.compressed {
                    Event::Compressed {
                        binary: m.binary,
                        payload: &m.buf,
                    }
                } else if m.binary {
                    Event::Message(Message::Binary(&m.buf))
                } else {
                    // Already validated piece by piece; checking again keeps this free of `unsafe`.
                    let text = simdutf8::basic::from_utf8(&m.buf)
                        .map_err(|_| ProtocolError::invalid_utf8())?;
                    Event::Message(Message::Text(text))
                }))
            }
        }
    }

    fn next_ready<'a>(
        &mut self,
        input: &mut Input<'a>,
        cfg: &DecoderConfig,
    ) -> Result<Option<Ready<'a>>, ProtocolError> {
        loop {
            let in_frame = self.partial.as_ref().is_some_and(|p| p.frame.is_some());
            if !in_frame {
                let Some(h) = self.take_header(input)? else {
                    return Ok(None);
                };
                self.check_header(&h, cfg)?;
                let in_message = self.partial.as_ref().is_some_and(|p| p.message.is_some());
                let whole = h.payload_len <= input.len() as u64;
                if whole && (h.opcode.is_control() || (h.fin && !in_message)) {
                    // The payload length was bounded by check_header, so it fits in usize.
                    let payload = input.take(h.payload_len as usize);
                    return Ok(Some(Ready::Whole(h, payload)));
                }
                let p = self.partial.get_or_insert_with(Partial::new);
                match h.opcode {
                    OpCode::Text | OpCode::Binary => {
                        p.message = Some(MessageState {
                            binary: h.opcode == OpCode::Binary,
                            compressed: h.rsv1,
                            buf: Vec::new(),
                            utf8: Utf8Validator::new(),
                        });
                    }
                    OpCode::Continuation => {}
                    _ => p.control_len = 0,
                }
                p.frame = Some(FrameState {
                    opcode: h.opcode,
                    fin: h.fin,
                    mask: h.mask,
                    done: 0,
                    remaining: h.payload_len,
                });
            }

            let p = self.partial.as_deref_mut().expect("frame in progress");
            let f = p.frame.as_mut().expect("frame in progress");
            let n = f.remaining.min(input.len() as u64) as usize;
            if n == 0 && f.remaining > 0 {
                return Ok(None);
            }
            let chunk = input.take(n);
            if let Some(m) = f.mask {
                apply_mask(chunk, m, (f.done & 3) as usize);
            }
            f.done += n as u64;
            f.remaining -= n as u64;
            let (finished, fin, opcode, left) = (f.remaining == 0, f.fin, f.opcode, f.remaining);
            if opcode.is_control() {
                let at = usize::from(p.control_len);
                p.control[at..at + n].copy_from_slice(chunk);
                p.control_len += n as u8;
                if finished {
                    p.frame = None;
                    return Ok(Some(Ready::Control(opcode)));
                }
            } else {
                let m = p.message.as_mut().expect("data frame belongs to a message");
                if !m.binary && !m.compressed {
                    m.utf8.feed(chunk)?;
                }
                reserve_for(&mut m.buf, chunk.len(), left, fin, cfg.max_message_bytes);
                m.buf.extend_from_slice(chunk);
                if finished {
                    p.frame = None;
                    if fin {
                        if !m.binary && !m.compressed {
                            m.utf8.finish()?;
                        }
                        return Ok(Some(Ready::Message));
                    }
                }
            }
        }
    }

    /// Parses the next header, completing one that an earlier read cut short.
    fn take_header(&mut self, input: &mut Input<'_>) -> Result<Option<FrameHeader>, ProtocolError> {
        if let Some(p) = self.partial.as_deref_mut().filter(|p| p.header_len > 0) {
            let have = usize::from(p.header_len);
            let n = (MAX_HEADER_BYTES - have).min(input.len());
            p.header[have..have + n].copy_from_slice(&input.remaining()[..n]);
            return match FrameHeader::parse(&p.header[..have + n])? {
                Parse::Complete((h, len)) => {
                    input.take(len - have);
                    p.header_len = 0;
                    Ok(Some(h))
                }
                Parse::Incomplete(_) => {
                    input.take(n);
                    p.header_len = (have + n) as u8;
                    Ok(None)
                }
            };
        }
        match FrameHeader::parse(input.remaining())? {
            Parse::Complete((h, len)) => {
                input.take(len);
                Ok(Some(h))
            }
            Parse::Incomplete(_) => {
                let rest = input.take(input.len());
                if !rest.is_empty() {
                    let p = self.partial.get_or_insert_with(Partial::new);
                    p.header[..rest.len()].copy_from_slice(rest);
                    p.header_len = rest.len() as u8;
                }
                Ok(None)
            }
        }
    }

    /// The checks that need the role, the extensions or the message state.
    fn check_header(&self, h: &FrameHeader, cfg: &DecoderConfig) -> Result<(), ProtocolError> {
        match (R::IS_SERVER, h.mask.is_some()) {
            (true, false) => return Err(ProtocolError::unmasked_frame()),
            (false, true) => return Err(ProtocolError::masked_frame()),
            _ => {}
        }
        let message = self.partial.as_ref().and_then(|p| p.message.as_ref());
        if h.rsv1 && (!cfg.allow_rsv1 || !matches!(h.opcode, OpCode::Text | OpCode::Binary)) {
            return Err(ProtocolError::reserved_bits(4));
        }
        let so_far = match (h.opcode, message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::unexpected_continuation()),
            (OpCode::Continuation, Some(m)) => m.buf.len() as u64,
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::expected_continuation())
            }
            _ => 0,
        };
        if !h.opcode.is_control() && so_far + h.payload_len > cfg.max_message_bytes as u64 {
            return Err(ProtocolError::message_too_large(cfg.max_message_bytes));
        }
        Ok(())
    }
}

impl Partial {
    fn new() -> Box<Partial> {
        Box::new(Partial {
            header: [0; MAX_HEADER_BYTES],
            header_len: 0,
            frame: None,
            message: None,
            control: [0; MAX_CONTROL_PAYLOAD],
            control_len: 0,
            lent: Lent::Nothing,
        })
    }

    /// Ends the loan of the last event (its buffer is reused or dropped).
    fn release_loan(&mut self) {
        match std::mem::replace(&mut self.lent, Lent::Nothing) {
            Lent::Nothing => {}
            Lent::Message => self.message = None,
            Lent::Control => self.control_len = 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.header_len == 0 && self.frame.is_none() && self.message.is_none()
    }
}

/// Frames up to this size get their whole buffer at their first bytes.
const EAGER_RESERVE_BYTES: usize = 1 << 20;

/// Makes room in a message buffer for `chunk` more bytes, with `left` bytes
/// of the frame still to come: a frame of up to [`EAGER_RESERVE_BYTES`] gets
/// its exact size at once (one allocation per message, no copying as it
/// grows); past that the buffer doubles, but never beyond the end of the
/// last frame (so a large message ends up with no spare capacity) or the
/// message limit.
fn reserve_for(buf: &mut Vec<u8>, chunk: usize, left: u64, fin: bool, max: usize) {
    let need = buf.len() + chunk;
    if need <= buf.capacity() {
        return;
    }
    // Bounded by the message limit, checked against the frame header.
    let frame_end = need.saturating_add(usize::try_from(left).unwrap_or(usize::MAX));
    let cap = if fin { frame_end } else { max.max(need) };
    let mut target = need.max(buf.capacity().saturating_mul(2).min(cap));
    if frame_end - buf.len() <= EAGER_RESERVE_BYTES {
        target = target.max(frame_end);
    }
    buf.reserve_exact(target - buf.len());
}

fn control_event(op: OpCode, payload: &[u8]) -> Result<Event<'_>, ProtocolError> {
    Ok(match op {
        OpCode::Ping => Event::Ping(payload),
        OpCode::Pong => Event::Pong(payload),
        _ => Event::Close(parse_close_payload(payload)?),
    })
}

#[cfg(test)]
mod tests;
