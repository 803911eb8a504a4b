//! Compressing and inflating whole messages (RFC 7692 §7.2).
//!
//! A compressed message is the raw DEFLATE data of the payload, flushed with
//! a sync flush and without the final `00 00 FF FF`. With context takeover,
//! the LZ77 window carries over from one message to the next; without, each
//! message starts afresh.
//!
//! Two backends behind one type each:
//! - [`Deflater::new`] / [`Inflater::new`]: zlib-rs through flate2, the
//!   fastest (measured against miniz_oxide: 2.5x faster compression and
//!   3.7-6.6x faster inflation on 100 B-1 KiB messages), but with a fixed
//!   ~320 KB compressor and ~20 KB inflater. Used where one serves many
//!   connections (no context takeover).
//! - [`Deflater::with_preset`] / [`Inflater::with_preset`]: per-connection
//!   state sized by a preset. The small presets run on stock zlib, whose
//!   memory follows `windowBits` and `memLevel` (zlib-rs allocates a fixed
//!   64 Ki-entry hash table and a 32 KiB inflate window whatever is asked);
//!   the largest (32 KiB window and memLevel 8–9, or a 32 KiB inflater) on
//!   zlib-rs, where stock zlib would save little memory and cost 2–4x the
//!   CPU.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::presets::{CompressorPreset, DecompressorPreset};
use super::zlib::{Progress, RawDeflate, RawInflate};
use crate::protocol::ProtocolError;

/// The tail a sync flush ends with; stripped by the sender, re-added by the receiver.
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Compression level: fast. Level 1 compresses typical JSON chat messages to
/// about a quarter at several times the speed of the default level 6.
const LEVEL: u8 = 1;

#[derive(Debug)]
enum DeflateEngine {
    /// zlib-rs (flate2).
    Rs(Compress),
    /// Stock zlib with a chosen memLevel.
    Zlib(RawDeflate),
}

/// Compresses messages for one direction of one connection (context
/// takeover), or for any number of connections (no context takeover).
///
/// ```
/// use edgews::protocol::deflate::{CompressorPreset, Deflater, Inflater};
/// let mut d = Deflater::new(15, true);
/// let mut i = Inflater::new(15, true);
/// let (mut z, mut plain) = (Vec::new(), Vec::new());
/// d.compress(b"hello hello hello hello", &mut z);
/// i.inflate(&z, &mut plain, 1 << 20).unwrap();
/// assert_eq!(plain, b"hello hello hello hello");
/// // A connection's own compressor in ~3 KiB of zlib buffers (512-byte window).
/// let mut small = Deflater::with_preset(CompressorPreset::SIZE_3KB, false);
/// z.clear();
/// small.compress(b"hello hello hello hello", &mut z);
/// ```
#[derive(Debug)]
pub struct Deflater {
    engine: DeflateEngine,
    no_context_takeover: bool,
}

impl Deflater {
    /// A zlib-rs compressor with a window of `2^window_bits` bytes (9–15;
    /// out-of-range values are clamped). With `no_context_takeover`, every
    /// message is compressed on its own.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        let zlib = Compress::new_with_window_bits(
            Compression::new(u32::from(LEVEL)),
            false,
            window_bits.clamp(9, 15),
        );
        Deflater {
            engine: DeflateEngine::Rs(zlib),
            no_context_takeover,
        }
    }

    /// A compressor sized by `preset` (values out of zlib's ranges are
    /// clamped): on zlib-rs for the largest ([`CompressorPreset::uses_zlib_rs`]),
    /// on stock zlib below.
    pub fn with_preset(preset: CompressorPreset, no_context_takeover: bool) -> Self {
        if preset.uses_zlib_rs() {
            return Deflater::new(preset.window_bits, no_context_takeover);
        }
        Deflater {
            engine: DeflateEngine::Zlib(RawDeflate::new(
                LEVEL,
                preset.window_bits,
                preset.mem_level,
            )),
            no_context_takeover,
        }
    }

    /// Appends the compressed form of `message` to `out`.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        if message.is_empty() {
            // RFC 7692 §7.2.3.6: an empty stored block, valid at any point of
            // the stream and leaving both windows as they are. (Stock zlib
            // emits nothing for a second sync flush without input.)
            out.push(0x00);
            return;
        }
        let mut input = message;
        loop {
            out.reserve(input.len() / 2 + 64);
            let used = match &mut self.engine {
                DeflateEngine::Rs(zlib) => {
                    let before = zlib.total_in();
                    // Only misuse of the stream (not the data) can make zlib fail here.
                    zlib.compress_vec(input, out, FlushCompress::Sync)
                        .expect("deflate with a sync flush cannot fail on a healthy stream");
                    (zlib.total_in() - before) as usize
                }
                DeflateEngine::Zlib(zlib) => zlib.compress_sync(input, out),
            };
            input = &input[used..];
            // Spare room left in `out` means the flush is complete.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        debug_assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        if self.no_context_takeover {
            match &mut self.engine {
                DeflateEngine::Rs(zlib) => zlib.reset(),
                DeflateEngine::Zlib(zlib) => zlib.reset(),
            }
        }
    }
}

#[derive(Debug)]
enum InflateEngine {
    /// zlib-rs (flate2).
    Rs(Decompress),
    /// Stock zlib.
    Zlib(RawInflate),
}

impl InflateEngine {
    /// One inflate call with a sync flush into `out`: input used, output
    /// produced, and whether the deflate stream ended.
    fn step(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, usize, bool), ProtocolError> {
        match self {
            InflateEngine::Rs(zlib) => {
                let (in_before, out_before) = (zlib.total_in(), zlib.total_out());
                let status = zlib.decompress(input, out, FlushDecompress::Sync);
                let used = (zlib.total_in() - in_before) as usize;
                let produced = (zlib.total_out() - out_before) as usize;
                let status = status.map_err(|_| ProtocolError::inflate_failed())?;
                Ok((used, produced, status == Status::StreamEnd))
            }
            InflateEngine::Zlib(zlib) => {
                let (used, produced, progress) = zlib
                    .inflate_sync(input, out)
                    .map_err(|_| ProtocolError::inflate_failed())?;
                Ok((used, produced, progress == Progress::Ended))
            }
        }
    }

    fn reset(&mut self) {
        match self {
            InflateEngine::Rs(zlib) => zlib.reset(false),
            InflateEngine::Zlib(zlib) => zlib.reset(),
        }
    }
}

/// Inflates the messages of one connection (context takeover) or of any
/// number of connections (no context takeover), never producing more than a
/// given limit.
#[derive(Debug)]
pub struct Inflater {
    engine: InflateEngine,
    no_context_takeover: bool,
}

impl Inflater {
    /// A zlib-rs inflater for a peer that compresses with windows of up to
    /// `2^window_bits` bytes (a larger window than the peer's is fine).
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        let zlib = Decompress::new_with_window_bits(false, window_bits.clamp(9, 15));
        Inflater {
            engine: InflateEngine::Rs(zlib),
            no_context_takeover,
        }
    }

    /// An inflater with the window of `preset`, which must be at least the
    /// peer's window (9–15; clamped). Below 32 KiB it runs on stock zlib,
    /// whose memory follows the window; at 32 KiB on zlib-rs, which always
    /// allocates that much and is faster.
    pub fn with_preset(preset: DecompressorPreset, no_context_takeover: bool) -> Self {
        if preset.window_bits >= 15 {
            return Inflater::new(15, no_context_takeover);
        }
        Inflater {
            engine: InflateEngine::Zlib(RawInflate::new(preset.window_bits)),
            no_context_takeover,
        }
    }

    /// Appends the inflated `message` to `out`.
    ///
    /// Fails with 1009 as soon as the output would pass `limit` bytes (so a
    /// small bomb costs at most `limit` bytes of memory), and with 1007 on
    /// invalid data. After an error the stream is reset, so an inflater
    /// shared by many connections (no context takeover) stays usable for the
    /// others; a connection with context takeover must be closed.
    pub fn inflate(
        &mut self,
        message: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        let mut progress = InflateProgress::default();
        let done = self.inflate_some(&mut progress, message, out, limit, usize::MAX)?;
        debug_assert!(done, "an unbounded slice finishes the message");
        Ok(())
    }

    /// Inflates the next part of `message`: stops once about `slice` more
    /// bytes were appended to `out` and returns `Ok(false)`; call again with
    /// the same `progress`, `message` and `out` to go on. Returns `Ok(true)`
    /// when the message is complete. So a large message can be inflated a
    /// slice per event-loop turn without holding up other connections.
    /// Errors as for [`Inflater::inflate`]. Until the message is complete,
    /// this inflater must not be used for another one.
    pub fn inflate_some(
        &mut self,
        progress: &mut InflateProgress,
        message: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        slice: usize,
    ) -> Result<bool, ProtocolError> {
        let result = self.inflate_stream(progress, message, out, limit, slice);
        match result {
            Err(_) => self.engine.reset(),
            Ok(true) if self.no_context_takeover && !progress.ended => self.engine.reset(),
            Ok(_) => {}
        }
        result
    }

    fn inflate_stream(
        &mut self,
        p: &mut InflateProgress,
        message: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        slice: usize,
    ) -> Result<bool, ProtocolError> {
        let start = *p.start.get_or_insert(out.len());
        let stop = out.len().saturating_add(slice);
        loop {
            if out.len() >= stop {
                return Ok(false);
            }
            // Room for doubling the output, within the limit (plus one byte,
            // to notice a message that passes it) and within the slice. The
            // room is zeroed and handed to zlib as a slice, so a call never
            // writes more than that, whatever the buffer's spare capacity (a
            // reused buffer may have a lot).
            let len = out.len();
            let room = limit - (len - start) + 1;
            let want = (len - start).max(4096).min(room).min(stop - len);
            if out.capacity() - len < want {
                out.reserve_exact(want);
            }
            out.resize(len + want, 0);
            let input = if p.tail_fed {
                &TAIL[p.consumed..]
            } else {
                &message[p.consumed..]
            };
            let step = self.engine.step(input, &mut out[len..]);
            let (used, produced, ended) = match step {
                Ok(step) => step,
                Err(e) => {
                    out.truncate(len);
                    return Err(e);
                }
            };
            out.truncate(len + produced);
            p.consumed += used;
            let input_left = input.len() - used;
            if out.len() - start > limit {
                return Err(ProtocolError::message_too_large(limit));
            }
            if ended {
                // The peer ended the stream (BFINAL): nothing may follow in this message.
                if input_left > 0 {
                    return Err(ProtocolError::inflate_failed());
                }
                self.engine.reset();
                p.ended = true;
                return Ok(true);
            }
            let room_left = produced < want;
            if input_left == 0 && room_left {
                if p.tail_fed {
                    return Ok(true);
                }
                p.tail_fed = true;
                p.consumed = 0;
            } else if produced == 0 && room_left && used == 0 {
                // No progress with input and room available: truncated or corrupt data.
                return Err(ProtocolError::inflate_failed());
            }
        }
    }
}

/// Where an [`Inflater::inflate_some`] of one message stands.
#[derive(Debug, Default, Clone, Copy)]
pub struct InflateProgress {
    /// Input bytes used so far (of the message, then of the deflate tail).
    consumed: usize,
    /// The message is used up and the `00 00 FF FF` tail is being fed.
    tail_fed: bool,
    /// Length of the output buffer when the message started.
    start: Option<usize>,
    /// The message ended the deflate stream (BFINAL): the next one starts
    /// without a window.
    ended: bool,
}

/// What one connection's compressed messages may refer back to: the last
/// window's worth of what it sent. Kept between messages instead of a whole
/// inflater (~7 KB of zlib state) by connections served by a
/// [`WindowInflater`].
#[derive(Debug, Default)]
pub struct InflateWindow {
    bytes: Vec<u8>,
}

impl InflateWindow {
    /// An empty window (a connection that has sent nothing compressed yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held (at most the inflater's window).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True before the first message.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Keeps the last `keep` bytes of the window followed by `produced`.
    fn absorb(&mut self, produced: &[u8], keep: usize) {
        let window = &mut self.bytes;
        if window.capacity() == 0 && !produced.is_empty() {
            window.reserve_exact(keep);
        }
        if produced.len() >= keep {
            window.clear();
            window.extend_from_slice(&produced[produced.len() - keep..]);
        } else {
            let excess = (window.len() + produced.len()).saturating_sub(keep);
            window.drain(..excess);
            window.extend_from_slice(produced);
        }
    }
}

/// One stock-zlib inflater serving any number of connections that keep
/// context (context takeover), each of which holds only its
/// [`InflateWindow`]: the window is loaded before each message and saved
/// after it. Costs two copies of at most one window per message, so it pays
/// for small windows, where zlib's state is most of an inflater's memory.
///
/// ```
/// use edgews::protocol::deflate::{
///     CompressorPreset, DecompressorPreset, Deflater, InflateWindow, WindowInflater,
/// };
/// let mut shared = WindowInflater::new(DecompressorPreset::SIZE_512B);
/// let (mut alice, mut bob) = (Deflater::with_preset(CompressorPreset::SIZE_3KB, false), Deflater::with_preset(CompressorPreset::SIZE_3KB, false));
/// let (mut alice_window, mut bob_window) = (InflateWindow::new(), InflateWindow::new());
/// for text in [&b"hello hello hello"[..], b"hello again, hello"] {
///     let (mut a, mut b, mut out) = (Vec::new(), Vec::new(), Vec::new());
///     alice.compress(text, &mut a);
///     bob.compress(b"something else entirely", &mut b);
///     shared.inflate(&mut alice_window, &a, &mut out, 1 << 20).unwrap();
///     assert_eq!(out, text);
///     out.clear();
///     shared.inflate(&mut bob_window, &b, &mut out, 1 << 20).unwrap();
///     assert_eq!(out, b"something else entirely");
/// }
/// ```
#[derive(Debug)]
pub struct WindowInflater {
    inflater: Inflater,
    window_bytes: usize,
}

impl WindowInflater {
    /// An inflater for peers whose window is at most `preset`'s.
    pub fn new(preset: DecompressorPreset) -> Self {
        let bits = preset.window_bits.clamp(9, 15);
        WindowInflater {
            inflater: Inflater {
                engine: InflateEngine::Zlib(RawInflate::new(bits)),
                no_context_takeover: false,
            },
            window_bytes: 1 << bits,
        }
    }

    /// Inflates one message of the connection whose window is `window`,
    /// like [`Inflater::inflate`]; on success `window` is updated. After an
    /// error the connection must be closed (its window is no longer valid);
    /// the inflater itself stays usable for the others.
    pub fn inflate(
        &mut self,
        window: &mut InflateWindow,
        message: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        let mut progress = InflateProgress::default();
        let done = self.inflate_some(window, &mut progress, message, out, limit, usize::MAX)?;
        debug_assert!(done, "an unbounded slice finishes the message");
        Ok(())
    }

    /// Inflates the next part of one message of the connection whose window
    /// is `window`, like [`Inflater::inflate_some`]; `window` is updated when
    /// the message is complete. Until then this inflater must not be used
    /// for another message (a worker hands a half-done one to the
    /// connection and makes a fresh one).
    pub fn inflate_some(
        &mut self,
        window: &mut InflateWindow,
        progress: &mut InflateProgress,
        message: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        slice: usize,
    ) -> Result<bool, ProtocolError> {
        if progress.start.is_none() {
            self.inflater.engine.reset();
            if let InflateEngine::Zlib(zlib) = &mut self.inflater.engine {
                zlib.set_window(&window.bytes);
            }
        }
        let start = progress.start.unwrap_or(out.len());
        match self
            .inflater
            .inflate_some(progress, message, out, limit, slice)
        {
            Ok(true) if progress.ended => {
                // A new stream follows: nothing to refer back to.
                window.bytes = Vec::new();
                Ok(true)
            }
            Ok(true) => {
                window.absorb(&out[start..], self.window_bytes);
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                window.bytes = Vec::new();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CloseCode;
    use proptest::prelude::*;

    #[test]
    fn rfc7692_examples() {
        // §7.2.3.1: "Hello", no context takeover.
        let mut i = Inflater::new(15, true);
        let mut out = Vec::new();
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.2: a second "Hello" referring back to the first.
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        out.clear();
        i.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.3: a stored block.
        let mut out = Vec::new();
        Inflater::new(15, true)
            .inflate(
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00,
                ],
                &mut out,
                100,
            )
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.6: an empty message compresses to a single 0x00 byte.
        let mut z = Vec::new();
        Deflater::new(15, true).compress(b"", &mut z);
        assert_eq!(z, [0x00]);
        let mut out = Vec::new();
        Inflater::new(15, true).inflate(&z, &mut out, 100).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn context_takeover_shrinks_repeated_messages() {
        let msg =
            b"{\"type\":\"chat\",\"room\":\"lobby\",\"text\":\"the same words again and again\"}";
        let (mut with, mut without) = (Deflater::new(15, false), Deflater::new(15, true));
        let mut inflater = Inflater::new(15, false);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..20 {
            a.clear();
            b.clear();
            with.compress(msg, &mut a);
            without.compress(msg, &mut b);
            let mut plain = Vec::new();
            inflater.inflate(&a, &mut plain, 1 << 20).unwrap();
            assert_eq!(plain, msg);
            if round > 0 {
                assert!(
                    a.len() < b.len() / 2,
                    "round {round}: {} vs {}",
                    a.len(),
                    b.len()
                );
            }
        }
    }

    #[test]
    fn small_windows_round_trip() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect();
        for bits in 9..=15 {
            let mut d = Deflater::new(bits, false);
            let mut i = Inflater::new(bits, false);
            for _ in 0..3 {
                let mut z = Vec::new();
                d.compress(&data, &mut z);
                let mut out = Vec::new();
                i.inflate(&z, &mut out, data.len()).unwrap();
                assert!(out == data, "window bits {bits}");
            }
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        // 64 MiB of zeros, compressed as an attacker would (best ratio, ~1000:1).
        let zeros = vec![0u8; 64 << 20];
        let mut z = Vec::with_capacity(128 << 10);
        Compress::new(Compression::best(), false)
            .compress_vec(&zeros, &mut z, FlushCompress::Sync)
            .unwrap();
        z.truncate(z.len() - 4);
        assert!(z.len() < 100 << 10, "{}", z.len());
        let limit = 1 << 20;
        let mut out = Vec::new();
        let err = Inflater::new(15, true)
            .inflate(&z, &mut out, limit)
            .unwrap_err();
        assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
        assert!(
            out.capacity() <= limit + 1 + 4096,
            "buffer grew to {}",
            out.capacity()
        );
        // Exactly at the limit is fine.
        let mut out = Vec::new();
        let mut z = Vec::new();
        Deflater::new(15, true).compress(&zeros[..limit], &mut z);
        Inflater::new(15, true)
            .inflate(&z, &mut out, limit)
            .unwrap();
        assert_eq!(out.len(), limit);
    }

    #[test]
    fn a_shared_inflater_recovers_after_a_failed_message() {
        // One inflater serves every no-context-takeover connection of a worker:
        // a bomb or garbage from one must not poison the next one's message.
        let mut shared = Inflater::new(15, true);
        let zeros = vec![0u8; 4 << 20];
        let mut bomb = Vec::new();
        Deflater::new(15, true).compress(&zeros, &mut bomb);
        let mut out = Vec::new();
        assert!(shared.inflate(&bomb, &mut out, 1 << 16).is_err());
        assert!(shared
            .inflate(&[0xff; 32], &mut Vec::new(), 1 << 16)
            .is_err());
        let mut good = Vec::new();
        Deflater::new(15, true).compress(b"hello again", &mut good);
        let mut out = Vec::new();
        shared.inflate(&good, &mut out, 1 << 16).unwrap();
        assert_eq!(out, b"hello again");
    }

    #[test]
    fn corrupt_data_is_1007() {
        let mut out = Vec::new();
        let err = Inflater::new(15, true)
            .inflate(&[0xff, 0xff, 0xff, 0x00], &mut out, 100)
            .unwrap_err();
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
        // Data after a final block (BFINAL).
        let mut fin = Vec::with_capacity(64);
        Compress::new(Compression::new(1), false)
            .compress_vec(b"abc", &mut fin, FlushCompress::Finish)
            .unwrap();
        fin.push(0x42);
        let err = Inflater::new(15, true)
            .inflate(&fin, &mut out, 100)
            .unwrap_err();
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
        // A final block alone is a valid message.
        fin.pop();
        out.clear();
        Inflater::new(15, false)
            .inflate(&fin, &mut out, 100)
            .unwrap();
        assert_eq!(out, b"abc");
    }

    #[test]
    fn slices_give_the_same_result_and_stop_bombs() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i % 7) as u8 * (i / 100_000) as u8)
            .collect();
        // zlib-rs, and stock zlib below a 32 KiB window.
        for bits in [15, 14, 9] {
            let mut z = Vec::new();
            Deflater::new(bits, true).compress(&data, &mut z);
            let mut i = Inflater::with_preset(DecompressorPreset::new(bits), true);
            // A reused buffer with room for everything: slices stay slices.
            let (mut p, mut out, mut calls) =
                (InflateProgress::default(), Vec::with_capacity(8 << 20), 0);
            while !i
                .inflate_some(&mut p, &z, &mut out, data.len(), 256 << 10)
                .unwrap()
            {
                calls += 1;
                assert!(
                    out.len() <= calls * (256 << 10) + (256 << 10),
                    "slice overrun at {bits} bits"
                );
            }
            assert!(calls >= 10, "{calls}");
            assert!(out == data, "{bits} bits");
            // The inflater is clean for the next message.
            let mut again = Vec::new();
            i.inflate(&z, &mut again, data.len()).unwrap();
            assert!(again == data);
            // A bomb fails at the limit, slice by slice.
            let zeros = vec![0u8; 8 << 20];
            let mut bomb = Vec::new();
            Deflater::new(bits, true).compress(&zeros, &mut bomb);
            let (mut p, mut out) = (InflateProgress::default(), Vec::new());
            let err = loop {
                match i.inflate_some(&mut p, &bomb, &mut out, 4 << 20, 1 << 20) {
                    Ok(false) => {}
                    Ok(true) => panic!("a bomb past the limit was accepted"),
                    Err(e) => break e,
                }
            };
            assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
            assert!(
                out.capacity() <= (4 << 20) + (1 << 20) + 1,
                "{}",
                out.capacity()
            );
        }
    }

    #[test]
    fn a_window_inflater_goes_on_across_slices() {
        // Messages of two connections, one of them sliced, with a message of
        // the other in between on a fresh inflater (as a worker does when it
        // hands the half-done one to the sliced connection).
        let big: Vec<u8> = (0..600_000u32)
            .map(|i| (i % 13) as u8 ^ (i / 5000) as u8)
            .collect();
        let mut alice = Deflater::with_preset(CompressorPreset::SIZE_3KB, false);
        let mut bob = Deflater::with_preset(CompressorPreset::SIZE_3KB, false);
        let (mut aw, mut bw) = (InflateWindow::new(), InflateWindow::new());
        let mut worker = WindowInflater::new(DecompressorPreset::SIZE_512B);
        for round in 0..3 {
            let (mut za, mut zb) = (Vec::new(), Vec::new());
            alice.compress(&big, &mut za);
            bob.compress(format!("bob says {round} {round}").as_bytes(), &mut zb);
            let (mut p, mut out) = (InflateProgress::default(), Vec::new());
            assert!(!worker
                .inflate_some(&mut aw, &mut p, &za, &mut out, big.len(), 64 << 10)
                .unwrap());
            let mut handed = std::mem::replace(
                &mut worker,
                WindowInflater::new(DecompressorPreset::SIZE_512B),
            );
            let mut bob_out = Vec::new();
            worker.inflate(&mut bw, &zb, &mut bob_out, 1 << 10).unwrap();
            assert_eq!(bob_out, format!("bob says {round} {round}").as_bytes());
            while !handed
                .inflate_some(&mut aw, &mut p, &za, &mut out, big.len(), 64 << 10)
                .unwrap()
            {}
            assert!(out == big, "round {round}");
            assert_eq!(aw.len(), 512);
        }
    }

    /// Stock zlib and zlib-rs speak the same format: every pairing works.
    #[test]
    fn backends_interoperate() {
        let data: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("{{\"i\":{},\"room\":\"r{}\"}}", i % 977, i % 7).into_bytes())
            .take(150_000)
            .collect();
        for stock_deflate in [false, true] {
            for stock_inflate in [false, true] {
                let mut d = if stock_deflate {
                    Deflater::with_preset(CompressorPreset::new(14, 7), false)
                } else {
                    Deflater::new(14, false)
                };
                let mut i = if stock_inflate {
                    Inflater::with_preset(DecompressorPreset::SIZE_16KB, false)
                } else {
                    Inflater::new(14, false)
                };
                for chunk in data.chunks(7000) {
                    let (mut z, mut out) = (Vec::new(), Vec::new());
                    d.compress(chunk, &mut z);
                    i.inflate(&z, &mut out, chunk.len()).unwrap();
                    assert!(out == chunk, "{stock_deflate} {stock_inflate}");
                }
            }
        }
    }

    #[test]
    fn preset_inflater_rejects_bombs_and_garbage_and_recovers() {
        let zeros = vec![0u8; 4 << 20];
        let mut bomb = Vec::new();
        Deflater::new(15, true).compress(&zeros, &mut bomb);
        let mut i = Inflater::with_preset(DecompressorPreset::SIZE_16KB, true);
        let mut out = Vec::new();
        let err = i.inflate(&bomb, &mut out, 1 << 16).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
        assert!(out.capacity() <= (1 << 16) + 1 + 4096, "{}", out.capacity());
        let err = i
            .inflate(&[0xff; 32], &mut Vec::new(), 1 << 16)
            .unwrap_err();
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
        // RFC 7692 §7.2.3.1 after the failures: the stream was reset.
        let mut out = Vec::new();
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
        // Data after a final block.
        let mut fin = Vec::with_capacity(64);
        Compress::new(Compression::new(1), false)
            .compress_vec(b"abc", &mut fin, FlushCompress::Finish)
            .unwrap();
        fin.push(0x42);
        let err = i.inflate(&fin, &mut Vec::new(), 100).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
        // A window larger than the inflater's is refused, not misread.
        let far: Vec<u8> = (0..4000u32).map(|n| (n * 7 % 251) as u8).collect();
        let mut twice = far.clone();
        twice.extend_from_slice(&far);
        let mut z = Vec::new();
        Deflater::new(15, true).compress(&twice, &mut z);
        let err = Inflater::with_preset(DecompressorPreset::SIZE_512B, true)
            .inflate(&z, &mut Vec::new(), 1 << 20)
            .unwrap_err();
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn smaller_presets_cost_ratio() {
        // Chat-like JSON, one message at a time with context takeover.
        let messages: Vec<Vec<u8>> = (0..300)
            .map(|i| {
                format!(
                    "{{\"type\":\"message\",\"room\":\"lobby-{}\",\"user\":\"user{}\",\"text\":\"hello number {i}, how are you today?\"}}",
                    i % 5,
                    i % 11
                )
                .into_bytes()
            })
            .collect();
        let total = |preset: CompressorPreset| {
            let mut d = Deflater::with_preset(preset, false);
            let mut i = Inflater::with_preset(DecompressorPreset::new(preset.window_bits), false);
            let mut sum = 0;
            for m in &messages {
                let (mut z, mut out) = (Vec::new(), Vec::new());
                d.compress(m, &mut z);
                i.inflate(&z, &mut out, m.len()).unwrap();
                assert_eq!(&out, m);
                sum += z.len();
            }
            sum
        };
        let plain: usize = messages.iter().map(Vec::len).sum();
        let (small, large) = (
            total(CompressorPreset::SIZE_3KB),
            total(CompressorPreset::SIZE_256KB),
        );
        assert!(small < plain / 2, "3kb: {small} of {plain}");
        assert!(large < small, "256kb {large} vs 3kb {small}");
    }

    #[test]
    fn empty_messages_between_others_keep_the_stream_valid() {
        // Stock zlib writes nothing for a sync flush with no new input, so an
        // empty message after another one once produced no output at all.
        for stock in [false, true] {
            let mut d = if stock {
                Deflater::with_preset(CompressorPreset::SIZE_3KB, false)
            } else {
                Deflater::new(9, false)
            };
            let mut i = Inflater::with_preset(DecompressorPreset::SIZE_512B, false);
            for m in [&b"hello hello"[..], b"", b"", b"hello again", b""] {
                let (mut z, mut out) = (Vec::new(), Vec::new());
                d.compress(m, &mut z);
                if m.is_empty() {
                    assert_eq!(z, [0x00]);
                }
                i.inflate(&z, &mut out, 100).unwrap();
                assert_eq!(out, m, "stock {stock}");
            }
        }
    }

    #[test]
    fn a_window_inflater_survives_errors_and_bfinal() {
        let mut shared = WindowInflater::new(DecompressorPreset::SIZE_512B);
        let mut good = Deflater::with_preset(CompressorPreset::SIZE_3KB, false);
        let mut window = InflateWindow::new();
        // Another connection's garbage and bomb first.
        let mut bad = InflateWindow::new();
        let err = shared
            .inflate(&mut bad, &[0xff; 32], &mut Vec::new(), 1 << 16)
            .unwrap_err();
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
        let mut bomb = Vec::new();
        Deflater::new(9, true).compress(&vec![0u8; 1 << 20], &mut bomb);
        let mut out = Vec::new();
        let err = shared
            .inflate(&mut bad, &bomb, &mut out, 1 << 12)
            .unwrap_err();
        assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
        assert!(out.capacity() <= (1 << 12) + 1 + 4096, "{}", out.capacity());
        for round in 0..5 {
            let text = format!("round {round}: the same words again and again and again");
            let (mut z, mut out) = (Vec::new(), Vec::new());
            good.compress(text.as_bytes(), &mut z);
            shared.inflate(&mut window, &z, &mut out, 1 << 16).unwrap();
            assert_eq!(out, text.as_bytes());
            assert!(window.len() <= 512);
        }
        // A message ending the stream (BFINAL): the window starts over.
        let mut fin = Vec::with_capacity(64);
        Compress::new(Compression::new(1), false)
            .compress_vec(b"abc", &mut fin, FlushCompress::Finish)
            .unwrap();
        let mut out = Vec::new();
        shared.inflate(&mut window, &fin, &mut out, 100).unwrap();
        assert_eq!(out, b"abc");
        assert!(window.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Connections taking turns on one window inflater read exactly what
        /// each would with its own inflater.
        #[test]
        fn a_window_inflater_matches_own_inflaters(
            turns in proptest::collection::vec((0usize..3, proptest::collection::vec(0u8..8, 0..2500)), 1..24),
            bits in 9u8..=12,
        ) {
            let preset = DecompressorPreset::new(bits);
            let mut shared = WindowInflater::new(preset);
            let mut conns: Vec<(Deflater, InflateWindow)> = (0..3)
                .map(|_| (Deflater::with_preset(CompressorPreset::new(bits, 8), false), InflateWindow::new()))
                .collect();
            for (who, bytes) in &turns {
                // Few distinct bytes: plenty of back-references into the window.
                let (deflater, window) = &mut conns[*who];
                let mut z = Vec::new();
                deflater.compress(bytes, &mut z);
                let mut out = Vec::new();
                shared.inflate(window, &z, &mut out, 4000).unwrap();
                prop_assert_eq!(&out, bytes);
                prop_assert!(window.len() <= 1 << bits);
            }
        }


        #[test]
        fn round_trips_any_sequence(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..8),
            takeover in any::<bool>(),
            bits in 9u8..=15,
            mem_level in 1u8..=9,
            stock_deflate in any::<bool>(),
            stock_inflate in any::<bool>(),
        ) {
            let mut d = if stock_deflate {
                Deflater::with_preset(CompressorPreset::new(bits, mem_level), !takeover)
            } else {
                Deflater::new(bits, !takeover)
            };
            let mut i = if stock_inflate {
                Inflater::with_preset(DecompressorPreset::new(bits), !takeover)
            } else {
                Inflater::new(bits, !takeover)
            };
            for m in &messages {
                let mut z = Vec::new();
                d.compress(m, &mut z);
                let mut out = Vec::new();
                i.inflate(&z, &mut out, 4000).unwrap();
                prop_assert_eq!(&out, m);
            }
        }
    }
}
