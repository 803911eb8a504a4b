//! The sans-IO protocol core: bytes in, events out; events in, bytes out.
//!
//! Nothing here touches a socket, a thread or a clock. The runtime (and the
//! load generator, and the tests) drive it: they hand it received bytes and
//! write out what it encodes. That is what makes it easy to unit-test, fuzz
//! and benchmark on its own.
//!
//! - [`frame`]: frame headers, parsed from a slice and encoded to the stack.
//! - [`mask`]: payload masking, with SIMD picked at run time.
//! - [`utf8`]: streaming UTF-8 validation.
//! - [`decoder`]: message assembly (fragments, control frames, limits).
//! - [`encoder`]: frames out, for either [`role`].
//! - [`close`]: close codes and close payloads.
//! - [`handshake`]: the HTTP upgrade, both sides.

pub mod close;
pub mod decoder;
pub mod deflate;
pub mod encoder;
mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
mod message;
pub mod role;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use decoder::{Decoder, DecoderConfig, Event, Input};
pub use encoder::{server_frame, server_frame_with, Encoder};
pub use error::ProtocolError;
pub use frame::{FrameHeader, OpCode, Parse};
pub use mask::apply_mask;
pub use message::Message;
pub use role::{Client, Role, Server};
