//! permessage-deflate in the worker: who compresses with what.
//!
//! Shared mode (no context takeover both ways): one inflater and one
//! compressor per window size per worker serve every connection, so a
//! connection costs one byte of state (its window size, kept in its outbox
//! slot). Dedicated mode: each connection owns a compressor and an inflater,
//! each made when it is first needed (a connection that only receives never
//! holds an inflater; one that stays silent holds neither), on stock zlib
//! and sized by the configured presets (the negotiated windows may shrink
//! them further, never grow them). A connection whose client compresses
//! with a window of at most [`WINDOW_ONLY_MAX_BITS`] keeps only that window
//! instead of an inflater: one [`WindowInflater`] per window size per worker
//! serves them all (zlib's ~7 KB of inflater state is most of the memory at
//! those sizes; the price is copying the window in and out per message).

use std::collections::HashMap;

use crate::protocol::deflate::{
    CompressorPreset, DecompressorPreset, DeflateParams, DeflatePolicy, Deflater, InflateProgress,
    InflateWindow, Inflater, WindowInflater,
};
use crate::protocol::handshake::Request;
use crate::protocol::ProtocolError;

use super::config::Compression;

/// Marks a connection with its own compressor pair in the slot's deflate byte.
pub(crate) const DEDICATED: u8 = 0x80;

/// Largest client window (4 KiB) for which a connection keeps only its
/// window between messages rather than a whole inflater.
pub(crate) const WINDOW_ONLY_MAX_BITS: u8 = 12;

/// How a dedicated connection's incoming messages are inflated.
#[derive(Debug)]
enum Incoming {
    /// Nothing compressed received yet.
    Unused,
    /// Its own inflater (large windows).
    Own(Inflater),
    /// Only its window; the worker's [`WindowInflater`] does the work.
    Window(InflateWindow),
}

/// Where one connection's compressed messages are inflated.
enum Route<'a> {
    /// The worker's no-context-takeover inflater.
    Shared(&'a mut Inflater),
    /// The connection's own inflater.
    Own(&'a mut Inflater),
    /// The connection's window, on the worker's window inflater of that
    /// size (the slot, made on first use), for windows of `bits`.
    Window(&'a mut InflateWindow, &'a mut Option<WindowInflater>, u8),
}

/// A worker's inflater handed to a connection whose message is inflated
/// over several loop turns (see [`Compressors::detach`]).
#[derive(Debug)]
pub(crate) enum Detached {
    /// The shared (no context takeover) inflater.
    Shared(Inflater),
    /// A window inflater, the connection's window loaded.
    Window(WindowInflater),
}

/// A connection's own compressor and inflater (dedicated mode), made on
/// first use.
#[derive(Debug)]
struct Pair {
    params: DeflateParams,
    /// The configured compressor's memLevel (its window is the negotiated one).
    mem_level: u8,
    deflater: Option<Deflater>,
    incoming: Incoming,
}

impl Pair {
    fn deflater(&mut self) -> &mut Deflater {
        let (p, mem_level) = (self.params, self.mem_level);
        self.deflater.get_or_insert_with(|| {
            let preset = CompressorPreset::new(p.server_window_bits, mem_level);
            Deflater::with_preset(preset, p.server_no_context_takeover)
        })
    }

    /// The client's window, which negotiation kept within the preset when
    /// the client let it; zlib needs at least 9.
    fn client_window_bits(&self) -> u8 {
        self.params.client_window_bits.clamp(9, 15)
    }
}

/// The compression state of one worker.
#[derive(Debug)]
pub(crate) struct Compressors {
    mode: Compression,
    threshold: usize,
    /// No-context-takeover compressors by window bits 9..=15, made on first use.
    shared: [Option<Deflater>; 7],
    shared_inflater: Inflater,
    /// Window-only connections' inflaters by window bits 9..=WINDOW_ONLY_MAX_BITS.
    window_inflaters: [Option<WindowInflater>; (WINDOW_ONLY_MAX_BITS - 8) as usize],
    dedicated: HashMap<u32, Box<Pair>>,
    /// Output of the last compression.
    pub scratch: Vec<u8>,
}

impl Compressors {
    pub fn new(mode: Compression, threshold: usize) -> Self {
        Compressors {
            mode,
            threshold,
            shared: Default::default(),
            shared_inflater: Inflater::new(15, true),
            window_inflaters: Default::default(),
            dedicated: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// Negotiates for a new connection `key`. Returns the slot's deflate byte
    /// (0: uncompressed) and the `Sec-WebSocket-Extensions` answer.
    pub fn negotiate(&mut self, key: usize, req: &Request<'_>) -> (u8, Option<String>) {
        let policy = match self.mode {
            Compression::Off => return (0, None),
            Compression::Shared => DeflatePolicy {
                no_context_takeover: true,
                max_window_bits: 15,
                max_client_window_bits: 15,
            },
            Compression::Dedicated {
                compressor,
                decompressor,
            } => DeflatePolicy {
                no_context_takeover: false,
                max_window_bits: compressor.window_bits,
                max_client_window_bits: decompressor.window_bits,
            },
        };
        let offers = req
            .headers_named("sec-websocket-extensions")
            .filter_map(|v| std::str::from_utf8(v).ok());
        let Some((params, answer)) = crate::protocol::deflate::negotiate(offers, policy) else {
            return (0, None);
        };
        let byte = self.adopt(key, params);
        (byte, Some(answer))
    }

    fn adopt(&mut self, key: usize, p: DeflateParams) -> u8 {
        if p.server_no_context_takeover && p.client_no_context_takeover {
            return p.server_window_bits;
        }
        let mem_level = match self.mode {
            Compression::Dedicated { compressor, .. } => compressor.mem_level,
            _ => CompressorPreset::SIZE_256KB.mem_level,
        };
        let pair = Pair {
            params: p,
            mem_level,
            deflater: None,
            incoming: Incoming::Unused,
        };
        self.dedicated.insert(key as u32, Box::new(pair));
        DEDICATED | p.server_window_bits
    }

    /// Forgets a closed connection's compressors.
    pub fn forget(&mut self, key: usize, byte: u8) {
        if byte & DEDICATED != 0 {
            self.dedicated.remove(&(key as u32));
        }
    }

    /// How connection `key`'s compressed messages are inflated; makes its
    /// window or inflater on first use.
    fn route(&mut self, key: usize, byte: u8) -> Route<'_> {
        let pair = match self.dedicated.get_mut(&(key as u32)) {
            Some(pair) if byte & DEDICATED != 0 => pair,
            _ => return Route::Shared(&mut self.shared_inflater),
        };
        if pair.params.client_no_context_takeover {
            return Route::Shared(&mut self.shared_inflater);
        }
        let bits = pair.client_window_bits();
        if matches!(pair.incoming, Incoming::Unused) {
            pair.incoming = if bits <= WINDOW_ONLY_MAX_BITS {
                Incoming::Window(InflateWindow::new())
            } else {
                Incoming::Own(Inflater::with_preset(DecompressorPreset::new(bits), false))
            };
        }
        match &mut pair.incoming {
            Incoming::Own(inflater) => Route::Own(inflater),
            Incoming::Window(window) => {
                let slot = &mut self.window_inflaters[usize::from(bits - 9)];
                Route::Window(window, slot, bits)
            }
            Incoming::Unused => unreachable!("set just above"),
        }
    }

    /// Inflates up to `slice` bytes of a compressed message of connection
    /// `key` into `out` (see [`Inflater::inflate_some`]); true when done.
    /// When it is not, [`Compressors::detach`] must be called before any
    /// other connection's message is inflated, and the message goes on with
    /// [`Compressors::resume_some`].
    #[allow(clippy::too_many_arguments)]
    pub fn inflate_some(
        &mut self,
        key: usize,
        byte: u8,
        progress: &mut InflateProgress,
        payload: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        slice: usize,
    ) -> Result<bool, ProtocolError> {
        match self.route(key, byte) {
            Route::Shared(inflater) | Route::Own(inflater) => {
                inflater.inflate_some(progress, payload, out, limit, slice)
            }
            Route::Window(window, slot, bits) => slot
                .get_or_insert_with(|| WindowInflater::new(DecompressorPreset::new(bits)))
                .inflate_some(window, progress, payload, out, limit, slice),
        }
    }

    /// Goes on with a message that [`Compressors::inflate_some`] left
    /// unfinished, on the inflater [`Compressors::detach`] handed over
    /// (`own`) or the connection's own.
    #[allow(clippy::too_many_arguments)]
    pub fn resume_some(
        &mut self,
        key: usize,
        byte: u8,
        own: Option<&mut Detached>,
        progress: &mut InflateProgress,
        payload: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        slice: usize,
    ) -> Result<bool, ProtocolError> {
        match (own, self.route(key, byte)) {
            (Some(Detached::Shared(inflater)), _) | (None, Route::Own(inflater)) => {
                inflater.inflate_some(progress, payload, out, limit, slice)
            }
            (Some(Detached::Window(inflater)), Route::Window(window, ..)) => {
                inflater.inflate_some(window, progress, payload, out, limit, slice)
            }
            // The message started on an inflater that is not there to go on with.
            _ => Err(ProtocolError::inflate_failed()),
        }
    }

    /// For a message that will be finished over several turns: a worker's
    /// inflater (the shared one, or the window inflater of the connection's
    /// window size), now mid-message, is handed over and replaced by a fresh
    /// one, so other connections can go on inflating meanwhile. None for a
    /// connection with its own inflater, which simply keeps it.
    pub fn detach(&mut self, key: usize, byte: u8) -> Option<Box<Detached>> {
        match self.route(key, byte) {
            Route::Own(_) => None,
            Route::Shared(inflater) => {
                let fresh = Inflater::new(15, true);
                Some(Box::new(Detached::Shared(std::mem::replace(
                    inflater, fresh,
                ))))
            }
            Route::Window(_, slot, _) => slot.take().map(|w| Box::new(Detached::Window(w))),
        }
    }

    /// Compresses a message for connection `key` into `scratch`, or returns
    /// false when it goes uncompressed (compression off or the message is short).
    pub fn compress(&mut self, key: usize, byte: u8, payload: &[u8]) -> bool {
        if byte == 0 || payload.len() < self.threshold {
            return false;
        }
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let deflater = if byte & DEDICATED != 0 {
            match self.dedicated.get_mut(&(key as u32)) {
                Some(pair) => pair.deflater(),
                None => return false,
            }
        } else {
            self.shared_for(byte)
        };
        deflater.compress(payload, &mut out);
        self.scratch = out;
        true
    }

    /// Compresses with the shared (no context takeover) compressor of
    /// `window_bits`, for a broadcast; false when the message is too short.
    pub fn compress_shared(&mut self, window_bits: u8, payload: &[u8]) -> bool {
        if payload.len() < self.threshold {
            return false;
        }
        self.scratch.clear();
        let mut out = std::mem::take(&mut self.scratch);
        self.shared_for(window_bits).compress(payload, &mut out);
        self.scratch = out;
        true
    }

    fn shared_for(&mut self, window_bits: u8) -> &mut Deflater {
        let bits = window_bits.clamp(9, 15);
        self.shared[usize::from(bits - 9)].get_or_insert_with(|| Deflater::new(bits, true))
    }

    /// True when the slot byte names a dedicated connection.
    pub fn is_dedicated(byte: u8) -> bool {
        byte & DEDICATED != 0
    }
}
