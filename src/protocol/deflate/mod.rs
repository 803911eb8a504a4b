//! permessage-deflate (RFC 7692): negotiation and message compression.
//!
//! - [`negotiate`] picks the first acceptable offer from the client's
//!   `Sec-WebSocket-Extensions` under a [`DeflatePolicy`] and gives the
//!   [`DeflateParams`] and the answer header; a client makes a
//!   [`DeflateOffer`] and checks the server's answer with it.
//! - [`Deflater`] and [`Inflater`] compress and inflate whole messages
//!   (the decoder reassembles fragments first), the inflater with a hard
//!   output limit so a decompression bomb costs no more than the message
//!   size limit.
//!
//! Who holds what: without context takeover both ways (the runtime's
//! "shared" mode) one `Deflater` and one `Inflater` per worker serve every
//! connection, and a broadcast is compressed once. With context takeover
//! ("dedicated") each connection has its own pair, and every message to it
//! must go through its own `Deflater`: the peer's inflater window holds the
//! connection's earlier messages, and a frame compressed elsewhere would
//! shift it under our compressor's back-references.
//!
//! Dedicated pairs are sized by a [`CompressorPreset`] and a
//! [`DecompressorPreset`] (uWebSockets-style, 3 KiB to 256 KiB and 512 B to
//! 32 KiB) and run on stock zlib, whose memory follows them (module `zlib`,
//! the only `unsafe` of this layer); shared ones run on zlib-rs.

mod codec;
mod negotiation;
mod presets;
mod zlib;

pub use codec::{Deflater, InflateProgress, InflateWindow, Inflater, WindowInflater};
pub use negotiation::{negotiate, DeflateOffer, DeflateParams, DeflatePolicy};
pub use presets::{CompressorPreset, DecompressorPreset};
