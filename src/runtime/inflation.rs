//! A compressed message too big to inflate in one go: inflated a slice per
//! loop turn, so the other connections of the worker keep their latency
//! while one peer sends a 16 MiB message (or a deflate bomb).
//!
//! While it lasts, the connection's input is paused: the bytes that came
//! after the message in the same read wait in `rest` and are decoded once
//! the message has been delivered.

use super::compression::Detached;
use crate::protocol::deflate::InflateProgress;

/// Output appended per turn for one message (about a millisecond of work).
pub(crate) const SLICE_BYTES: usize = 1 << 20;
/// What an inflater's state is counted as (zlib state plus a 32 KiB window).
const INFLATER_BYTES: usize = 48 << 10;

/// One message being inflated over several turns.
#[derive(Debug)]
pub(crate) struct Inflation {
    /// Text (validated as UTF-8 when complete) or binary.
    pub binary: bool,
    /// The compressed payload.
    pub input: Vec<u8>,
    pub progress: InflateProgress,
    /// The message so far.
    pub out: Vec<u8>,
    /// The inflater the message started on, when it was one of the worker's
    /// (a connection with its own inflater keeps using that).
    pub own: Option<Box<Detached>>,
    /// Input that followed the message in the same read.
    pub rest: Vec<u8>,
    /// Bytes charged to the worker's input budget for this message.
    pub charged: usize,
}

impl Inflation {
    /// Heap bytes this message holds (of its output buffer, what is used:
    /// the buffer may be the worker's reused one, with more capacity).
    pub fn bytes(&self) -> usize {
        self.input.capacity()
            + self.out.len()
            + self.rest.capacity()
            + self.own.as_ref().map_or(0, |_| INFLATER_BYTES)
    }
}
