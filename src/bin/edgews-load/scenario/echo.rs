//! `echo`: every connection keeps K messages in flight and sends a new one
//! when an echo comes back. Latency is send-to-echo, measured with a
//! per-connection queue of send times (echoes come back in order), so the
//! payload stays exactly S bytes of filler.
//!
//! With a rate, sends are paced: a connection whose echo came back waits in
//! a queue until the next send is due (one every `1/rate` seconds), so every
//! server is measured at the same throughput and latency compares fairly
//! (it is still measured from the actual send).
//!
//! With the room wire (`rooms-echo`), each request is a `message` with an
//! `id` to the connection's own one-member room; the reply counted is the
//! `ack` (the room's `message` event, which the sender also gets, is not).

use std::collections::VecDeque;
use std::sync::Arc;

use edgews::protocol::OpCode;
use hdrhistogram::Histogram;

use super::wire::Wire;
use super::Shared;
use crate::report::histogram;
use crate::runner::{Io, Scenario};

/// What each connection sends.
#[derive(Clone, Debug)]
pub struct Options {
    /// The protocol.
    pub wire: Wire,
    /// Message size in bytes (for rooms: of the `data` string).
    pub size: usize,
    /// Binary messages (text otherwise).
    pub binary: bool,
    /// Messages in flight per connection.
    pub in_flight: usize,
    /// Messages per second over this thread's connections (0: unpaced).
    pub rate: f64,
}

pub struct Echo {
    opcode: OpCode,
    wire: Wire,
    /// Bytes of filler each request carries.
    size: usize,
    /// Each connection's request.
    requests: Vec<Vec<u8>>,
    in_flight: usize,
    shared: Arc<Shared>,
    warmup_ns: u64,
    duration_ns: u64,
    sent_at: Vec<VecDeque<u64>>,
    /// Nanoseconds between sends (0: not paced, send on every echo).
    interval_ns: u64,
    /// When the next paced send is due (0: not started).
    due_ns: u64,
    /// Connections waiting for their paced send.
    waiting: VecDeque<usize>,
    pub received: u64,
    pub bytes: u64,
    pub latency: Histogram<u64>,
    pub closed: u64,
    pub wrong: u64,
}

impl Echo {
    /// Measures from `warmup_ns` after the shared start time (set once all
    /// connections are open) for `duration_ns`. The connections' global ids
    /// start at `first`.
    pub fn new(
        first: usize,
        conns: usize,
        opts: Options,
        shared: Arc<Shared>,
        warmup_ns: u64,
        duration_ns: u64,
    ) -> Echo {
        let Options {
            wire,
            size,
            binary,
            in_flight,
            rate,
        } = opts;
        Echo {
            opcode: if binary { OpCode::Binary } else { OpCode::Text },
            requests: (0..conns)
                .map(|id| wire.request(first + id, &vec![b'e'; size]))
                .collect(),
            wire,
            size,
            in_flight: in_flight.max(1),
            shared,
            warmup_ns,
            duration_ns,
            sent_at: (0..conns)
                .map(|_| VecDeque::with_capacity(in_flight))
                .collect(),
            interval_ns: if rate > 0.0 {
                (1e9 / rate).max(1.0) as u64
            } else {
                0
            },
            due_ns: 0,
            waiting: VecDeque::new(),
            received: 0,
            bytes: 0,
            latency: histogram(),
            closed: 0,
            wrong: 0,
        }
    }

    /// Adds another thread's counters.
    pub fn merge(&mut self, other: &Echo) {
        self.received += other.received;
        self.bytes += other.bytes;
        self.closed += other.closed;
        self.wrong += other.wrong;
        let _ = self.latency.add(&other.latency);
    }

    /// The measured window, once the start is known.
    fn window(&self) -> Option<(u64, u64)> {
        let start = self.shared.start_ns();
        (start != 0).then(|| {
            (
                start + self.warmup_ns,
                start + self.warmup_ns + self.duration_ns,
            )
        })
    }

    /// Paced mode: sends for waiting connections whose turn has come. A
    /// backlog older than 10 ms is forgiven, so a slow server is not hit by a
    /// burst afterwards.
    fn release(&mut self, io: &mut Io<'_>, now: u64) {
        if self.due_ns == 0 {
            self.due_ns = now;
        }
        self.due_ns = self.due_ns.max(now.saturating_sub(10_000_000));
        while self.due_ns <= now {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            self.send(io, id, now);
            self.due_ns += self.interval_ns;
        }
    }

    fn send(&mut self, io: &mut Io<'_>, id: usize, now: u64) {
        io.send(id, self.opcode, &self.requests[id]);
        self.sent_at[id].push_back(now);
    }
}

impl Scenario for Echo {
    fn on_open(&mut self, io: &mut Io<'_>, id: usize, now: u64) {
        for _ in 0..self.in_flight {
            if self.interval_ns > 0 {
                self.waiting.push_back(id);
            } else {
                self.send(io, id, now);
            }
        }
    }

    fn on_message(&mut self, io: &mut Io<'_>, id: usize, payload: &[u8], now: u64) {
        let Some(right) = self.wire.reply(payload, self.size) else {
            return;
        };
        let Some(sent) = self.sent_at[id].pop_front() else {
            self.wrong += 1;
            return;
        };
        if !right {
            self.wrong += 1;
        }
        let window = self.window();
        if window.is_some_and(|(from, to)| (from..to).contains(&now)) {
            self.received += 1;
            self.bytes += payload.len() as u64;
            let _ = self.latency.record(now.saturating_sub(sent).max(1_000));
        }
        if window.is_none_or(|(_, to)| now < to) {
            if self.interval_ns > 0 {
                self.waiting.push_back(id);
                self.release(io, now);
            } else {
                self.send(io, id, now);
            }
        }
    }

    fn on_closed(&mut self, _id: usize, _code: Option<u16>) {
        self.closed += 1;
    }

    fn tick(&mut self, io: &mut Io<'_>, now: u64) -> bool {
        let running = self.window().is_none_or(|(_, to)| now < to);
        if running {
            self.release(io, now);
        }
        running
    }
}
