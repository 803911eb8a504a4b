//! One connection's state, as stored in the worker's slab.
//!
//! Kept small on purpose: an idle open connection is this struct and nothing
//! else (its socket, an 8-byte decoder with no buffer, a few counters). Rarely
//! needed state (a request head split over several reads) lives in a side
//! table of the worker.

use crate::protocol::{Decoder, Server};

use super::timer::Millis;
use super::transport::Transport;

/// Lifecycle of a connection. The transitions are
/// `Handshake → Open → Closing → Draining → (removed)`, and
/// `Handshake → Closing` for an HTTP answer or a refused upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading the HTTP request.
    Handshake,
    /// WebSocket open: messages flow.
    Open,
    /// Our close frame (or HTTP response) is queued. Once it is written:
    /// if the peer's close frame came too, the socket is closed; otherwise the
    /// write side is shut down and input is decoded only to see the peer's close.
    Closing,
    /// After a protocol error or an HTTP answer: everything is sent and the
    /// write side is shut; reading and discarding until the peer closes (so
    /// the kernel never answers with a reset that could destroy our last bytes).
    Draining,
}

/// Bit flags of a connection.
pub(crate) mod flag {
    /// A ping was sent after `ping_interval` of silence; no data since.
    pub const PINGED: u8 = 1;
    /// Input is paused while the send queue is over the backpressure limit.
    pub const READ_PAUSED: u8 = 2;
    /// A readable event arrived while paused: read when resumed.
    pub const READ_PENDING: u8 = 4;
    /// The peer's close frame was received.
    pub const CLOSE_RECEIVED: u8 = 8;
    /// In `Closing`, ignore input entirely (after a protocol error or an HTTP answer).
    pub const DISCARD_INPUT: u8 = 16;
    /// The handler called `close`: the close follows right after the callback.
    pub const CLOSE_REQUESTED: u8 = 32;
    /// Our write side is shut down (everything we will ever send is out).
    pub const WRITE_SHUT: u8 = 64;
    /// The handler's `on_close` has run (it runs exactly once).
    pub const CLOSE_NOTIFIED: u8 = 128;
}

/// The part of a connection that callbacks may touch (the decoder and the
/// user data are borrowed separately, so a message can borrow the decoder
/// while the callback holds this).
#[derive(Debug)]
pub(crate) struct Core {
    /// Which use of this slab slot this is (for [`super::ConnId`]).
    pub gen: u32,
    /// Milliseconds (low 32 bits) of the last input in `Open`, of the accept in
    /// `Handshake`, of the close in `Closing`/`Draining`.
    pub stamp: u32,
    /// Milliseconds (low 32 bits) of the accept, for the lifetime histogram.
    pub opened: u32,
    /// The handler's timer ([`super::Conn::set_timer`]): the wheel tick it is
    /// due at, 0 when none is set.
    pub alarm: u32,
    /// Which wheel tick this connection's live timer entry is for, as
    /// [`timer_mark`] of it; [`NO_TIMER`] when it has none. 16 bits are
    /// enough: entries are never scheduled more than [`MAX_TIMER_AHEAD_TICKS`]
    /// ahead, and an entry that matches by chance only makes the worker
    /// recompute the deadline.
    pub timer_tick: u16,
    pub phase: Phase,
    pub flags: u8,
}

impl Core {
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    pub fn set(&mut self, f: u8) {
        self.flags |= f;
    }

    pub fn clear(&mut self, f: u8) {
        self.flags &= !f;
    }

    /// Milliseconds since `stamp`, given the current time.
    pub fn since_stamp(&self, now: Millis) -> u64 {
        u64::from((now as u32).wrapping_sub(self.stamp))
    }

    /// Restarts the phase clock.
    pub fn touch(&mut self, now: Millis) {
        self.stamp = now as u32;
    }
}

/// `timer_tick` of a connection with no live wheel entry.
pub(crate) const NO_TIMER: u16 = 0;

/// The furthest ahead a wheel entry is scheduled (in ticks); a later deadline
/// is looked at again then. Keeps 16-bit tick comparisons exact.
pub(crate) const MAX_TIMER_AHEAD_TICKS: u64 = 16_000;

/// The 16-bit mark of a wheel tick (never [`NO_TIMER`]).
pub(crate) fn timer_mark(tick: u64) -> u16 {
    (tick % u64::from(u16::MAX)) as u16 + 1
}

/// A connection in the worker's slab.
#[derive(Debug)]
pub(crate) struct Connection<D> {
    pub io: Transport,
    pub decoder: Decoder<Server>,
    pub core: Core,
    /// The handler's data; `Some` from the accepted upgrade on.
    pub data: Option<D>,
}

#[cfg(test)]
mod tests {
    /// The memory budget of an idle connection: slab entry + outbox slot +
    /// timer entry must stay under uWebSockets' 104 bytes (measured RSS per
    /// idle connection is in the README). Debug builds of mio add 8 bytes of
    /// selector id to the socket, hence the slack here.
    #[test]
    fn idle_connection_stays_small() {
        let conn = std::mem::size_of::<super::Connection<()>>();
        let slot = std::mem::size_of::<crate::runtime::outbox::Slot>();
        assert!(conn <= 56, "Connection<()> grew to {conn} bytes");
        assert!(slot <= 24, "outbox Slot grew to {slot} bytes");
        assert_eq!(
            std::mem::size_of::<crate::protocol::Decoder<crate::protocol::Server>>(),
            8
        );
    }
}
