//! `fanout`: C subscribers in one room, P publishers, messages of S bytes.
//!
//! Speaks the server's text pub-sub protocol (`sub:<room>` joins,
//! `pub:<room>:<payload>` publishes; publishers are not members) or, as
//! `rooms-fanout`, the room server's: every connection is a member (joined
//! during set-up), publishers send `message` with `exclude_self` and the
//! payload below as `data`, subscribers read it back out of the `message`
//! event ([`super::wire`]).
//!
//! 1. Subscribers join; publishers send `sync` messages every 20 ms until
//!    every subscriber (on every thread) has seen one, so all are subscribed;
//!    `main` then sets the start time.
//! 2. Publishers send `<publisher>:<seq>:<send time ns>:xxx…` (padded to S
//!    bytes) at the target rate, with at most K publishes of this thread not
//!    yet seen by this thread's first subscriber (so the server is never
//!    flooded past what it delivers).
//! 3. Subscribers record publish-to-receive latency and check that every
//!    publisher's sequence numbers arrive in order with no gaps.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use edgews::protocol::OpCode;
use hdrhistogram::Histogram;

use super::wire::Wire;
use super::Shared;
use crate::report::histogram;
use crate::runner::{Io, Scenario};

pub struct Fanout {
    wire: Wire,
    room: String,
    subs: usize,
    pubs: usize,
    first_pub: usize,
    total_pubs: usize,
    size: usize,
    rate_per_pub: f64,
    in_flight: u64,
    warmup_ns: u64,
    duration_ns: u64,
    shared: Arc<Shared>,
    open: Vec<bool>,
    synced: Vec<bool>,
    last_sync_ns: u64,
    /// Next sequence number per local publisher.
    seq: Vec<u64>,
    /// Last sequence seen, per (local subscriber, global publisher).
    last: Vec<u64>,
    /// Publishes of this thread seen by local subscriber 0.
    seen_by_first: u64,
    buf: Vec<u8>,
    pub published: u64,
    pub delivered: u64,
    pub delivered_bytes: u64,
    pub missing: u64,
    pub out_of_order: u64,
    pub closed: u64,
    pub latency: Histogram<u64>,
}

/// Where this thread's connections sit in the run.
pub struct Layout {
    pub subs: usize,
    pub pubs: usize,
    pub first_pub: usize,
    pub total_pubs: usize,
}

impl Fanout {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        wire: Wire,
        room: &str,
        layout: Layout,
        size: usize,
        rate: f64,
        in_flight: usize,
        warmup_ns: u64,
        duration_ns: u64,
        shared: Arc<Shared>,
    ) -> Fanout {
        let Layout {
            subs,
            pubs,
            first_pub,
            total_pubs,
        } = layout;
        Fanout {
            wire,
            room: room.to_owned(),
            subs,
            pubs,
            first_pub,
            total_pubs,
            size,
            rate_per_pub: rate / total_pubs.max(1) as f64,
            in_flight: in_flight.max(1) as u64,
            warmup_ns,
            duration_ns,
            shared,
            open: vec![false; subs + pubs],
            synced: vec![false; subs],
            last_sync_ns: 0,
            seq: vec![0; pubs],
            last: vec![u64::MAX; subs * total_pubs],
            seen_by_first: 0,
            buf: Vec::with_capacity(size + 64),
            published: 0,
            delivered: 0,
            delivered_bytes: 0,
            missing: 0,
            out_of_order: 0,
            closed: 0,
            latency: histogram(),
        }
    }

    fn window(&self, start: u64) -> (u64, u64) {
        let from = start + self.warmup_ns;
        (from, from + self.duration_ns)
    }

    /// Builds a publish of `<publisher>:<seq>:<ts>:` padded so the
    /// delivered payload is `size` bytes.
    fn message(&mut self, publisher: usize, seq: u64, now: u64) {
        self.wire.start_publish(&mut self.buf, &self.room);
        let prefix = self.buf.len();
        let _ = write!(self.buf, "{publisher}:{seq}:{now}:");
        while self.buf.len() - prefix < self.size {
            self.buf.push(b'x');
        }
        self.wire.end_publish(&mut self.buf);
    }

    /// Builds a `sync` publish.
    fn sync(&mut self) {
        self.wire.start_publish(&mut self.buf, &self.room);
        self.buf.extend_from_slice(b"sync");
        self.wire.end_publish(&mut self.buf);
    }
}

/// Parses `<publisher>:<seq>:<ts>:...`.
pub fn parse(payload: &[u8]) -> Option<(usize, u64, u64)> {
    let mut it = payload.splitn(4, |&b| b == b':');
    let num = |f: Option<&[u8]>| -> Option<u64> { std::str::from_utf8(f?).ok()?.parse().ok() };
    let publisher = num(it.next())? as usize;
    let seq = num(it.next())?;
    let ts = num(it.next())?;
    Some((publisher, seq, ts))
}

impl Scenario for Fanout {
    fn on_open(&mut self, io: &mut Io<'_>, id: usize, _now: u64) {
        self.open[id] = true;
        if id < self.subs {
            if let Some(msg) = self.wire.subscribe(&self.room) {
                io.send(id, OpCode::Text, &msg);
            }
        }
    }

    fn on_message(&mut self, _io: &mut Io<'_>, id: usize, payload: &[u8], now: u64) {
        if id >= self.subs {
            return;
        }
        let Some(payload) = self.wire.delivery(payload) else {
            return;
        };
        if payload == b"sync" {
            if !self.synced[id] {
                self.synced[id] = true;
                self.shared.synced.fetch_add(1, Ordering::AcqRel);
            }
            return;
        }
        let Some((publisher, seq, ts)) = parse(payload) else {
            return;
        };
        if publisher >= self.total_pubs {
            return;
        }
        let last = &mut self.last[id * self.total_pubs + publisher];
        if *last != u64::MAX {
            if seq <= *last {
                self.out_of_order += 1;
            } else {
                self.missing += seq - *last - 1;
            }
        }
        *last = seq;
        if id == 0 && (self.first_pub..self.first_pub + self.pubs).contains(&publisher) {
            self.seen_by_first += 1;
        }
        let start = self.shared.start_ns();
        let (from, to) = self.window(start);
        if start != 0 && (from..to).contains(&now) {
            self.delivered += 1;
            self.delivered_bytes += payload.len() as u64;
            let _ = self.latency.record(now.saturating_sub(ts).max(1_000));
        }
    }

    fn on_closed(&mut self, id: usize, _code: Option<u16>) {
        self.closed += 1;
        if let Some(o) = self.open.get_mut(id) {
            *o = false;
        }
    }

    fn tick(&mut self, io: &mut Io<'_>, now: u64) -> bool {
        let start = self.shared.start_ns();
        if start == 0 || now < start {
            // Barrier: sync until every subscriber of the run is in the room.
            if self.pubs > 0
                && self.open[self.subs]
                && now.saturating_sub(self.last_sync_ns) > 20_000_000
            {
                self.last_sync_ns = now;
                self.sync();
                io.send(self.subs, OpCode::Text, &self.buf);
            }
            return true;
        }
        let (from, to) = self.window(start);
        if now >= to {
            return false;
        }
        let elapsed = (now - start) as f64 / 1e9;
        for k in 0..self.pubs {
            let id = self.subs + k;
            if !self.open[id] {
                continue;
            }
            let allowed = if self.rate_per_pub > 0.0 {
                (elapsed * self.rate_per_pub) as u64
            } else {
                u64::MAX
            };
            while self.seq[k] < allowed {
                let outstanding = self.published_total().saturating_sub(self.seen_by_first);
                if self.subs > 0 && outstanding >= self.in_flight {
                    break;
                }
                let seq = self.seq[k];
                self.message(self.first_pub + k, seq, now);
                io.send(id, OpCode::Text, &self.buf);
                self.seq[k] += 1;
                if (from..to).contains(&now) {
                    self.published += 1;
                }
                if self.rate_per_pub <= 0.0 && self.subs == 0 {
                    break;
                }
            }
        }
        true
    }
}

impl Fanout {
    fn published_total(&self) -> u64 {
        self.seq.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_have_the_requested_size() {
        let shared = Arc::new(Shared::default());
        let layout = Layout {
            subs: 1,
            pubs: 1,
            first_pub: 3,
            total_pubs: 4,
        };
        let mut f = Fanout::new(Wire::Plain, "room", layout, 64, 0.0, 1, 0, 1, shared);
        f.message(3, 17, 123_456_789);
        let delivered = &f.buf["pub:room:".len()..];
        assert_eq!(delivered.len(), 64);
        assert_eq!(parse(delivered), Some((3, 17, 123_456_789)));
        f.sync();
        assert_eq!(f.buf, b"pub:room:sync");
        assert_eq!(parse(b"sync"), None);
        assert_eq!(parse(b"1:2:x:"), None);
    }
}
