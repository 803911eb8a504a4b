//! A lazy hashed timer wheel: one per worker, no thread or heap node per
//! connection.
//!
//! Each connection has at most one live entry, `(key, generation)` in the slot
//! of its deadline's tick. Activity does not touch the wheel: the connection
//! only records when it last heard from the peer. When an entry's tick comes
//! up, the worker recomputes the connection's real deadline and either acts or
//! schedules it again. So a busy connection costs nothing per message, and an
//! idle one is looked at once per timeout period. An entry remembers its tick,
//! so one for a deadline beyond a turn of the wheel stays in its slot until
//! its turn comes.
//!
//! Time is an input (milliseconds since the worker started, as `u64`: it
//! never wraps), so the wheel is tested without sleeping.

use std::time::Duration;

/// Milliseconds since the worker started.
pub(crate) type Millis = u64;

/// One expired entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expired {
    pub key: u32,
    pub gen: u32,
    /// The tick the entry was scheduled for, low 32 bits (compare with the
    /// connection's own record: an entry for another tick is stale).
    pub tick: u32,
}

#[derive(Debug)]
pub(crate) struct TimerWheel {
    slots: Box<[Vec<Expired>]>,
    tick_ms: u64,
    /// The next tick to process.
    next_tick: u64,
    entries: usize,
}

impl TimerWheel {
    /// A wheel of `slots` slots (a power of two) of `tick_ms` each, starting at time `now`.
    pub fn new(tick_ms: u64, slots: usize, now: Millis) -> Self {
        assert!(slots.is_power_of_two() && tick_ms > 0);
        TimerWheel {
            slots: (0..slots).map(|_| Vec::new()).collect(),
            tick_ms,
            next_tick: now / tick_ms,
            entries: 0,
        }
    }

    /// Schedules `(key, gen)` for `deadline`; returns the tick it will come up
    /// at (to be remembered by the connection: entries for another tick are stale).
    pub fn schedule(&mut self, key: u32, gen: u32, deadline: Millis) -> u64 {
        let tick = deadline.div_ceil(self.tick_ms).max(self.next_tick);
        let mask = self.slots.len() - 1;
        self.slots[tick as usize & mask].push(Expired {
            key,
            gen,
            tick: tick as u32,
        });
        self.entries += 1;
        tick
    }

    /// Moves every entry whose tick is at or before `now` into `out`.
    pub fn expire(&mut self, now: Millis, out: &mut Vec<Expired>) {
        let now_tick = now / self.tick_ms;
        let mask = self.slots.len() - 1;
        let mut turns = 0;
        while self.next_tick <= now_tick && turns < self.slots.len() {
            let now32 = now_tick as u32;
            let slot = &mut self.slots[self.next_tick as usize & mask];
            let before = slot.len();
            // Entries of later turns stay; the ones due by now go out.
            slot.retain(|e| {
                let due = now32.wrapping_sub(e.tick) as i32 >= 0;
                if due {
                    out.push(*e);
                }
                !due
            });
            self.entries -= before - slot.len();
            shrink_emptied(slot);
            self.next_tick += 1;
            turns += 1;
        }
        if turns == self.slots.len() {
            // The loop stalled for more than a whole turn: every slot was visited.
            self.next_tick = self.next_tick.max(now_tick + 1);
        }
    }

    /// Heap bytes held by the slots (capacity, not just entries).
    #[cfg(test)]
    pub fn capacity_bytes(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.capacity() * std::mem::size_of::<Expired>())
            .sum()
    }

    /// How long the event loop may sleep before the next tick needs processing.
    pub fn timeout(&self, now: Millis) -> Option<Duration> {
        if self.entries == 0 {
            return None;
        }
        let next_ms = self.next_tick * self.tick_ms;
        Some(Duration::from_millis(next_ms.saturating_sub(now)))
    }

    /// Entries in the wheel (including stale ones not yet come up).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
    }
}

/// A slot keeps at most this many entries of capacity when it empties.
const SLOT_KEEP: usize = 16;

/// Gives back most of a slot's capacity once its entries have gone out: a
/// burst of connections fills a few slots with thousands of entries each,
/// and as the burst's timers move on (handshake, then authentication, then
/// the token's expiry) every slot they passed through would otherwise keep
/// its high-water capacity for good, 12 bytes per entry per slot. Shrinks
/// only below a quarter of the capacity, so a slot that refills every turn
/// does not reallocate every turn.
fn shrink_emptied(slot: &mut Vec<Expired>) {
    if slot.capacity() > SLOT_KEEP && slot.len() < slot.capacity() / 4 {
        slot.shrink_to(slot.len().saturating_mul(2).max(SLOT_KEEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_up_at_their_tick_not_before() {
        let mut w = TimerWheel::new(10, 8, 0);
        let t = w.schedule(1, 7, 25);
        assert_eq!(t, 3);
        let mut out = Vec::new();
        w.expire(29, &mut out);
        assert!(out.is_empty());
        w.expire(30, &mut out);
        assert_eq!(
            out,
            [Expired {
                key: 1,
                gen: 7,
                tick: 3
            }]
        );
        assert_eq!(w.len(), 0);
        assert_eq!(w.timeout(30), None);
    }

    #[test]
    fn far_deadlines_wait_for_their_turn() {
        let mut w = TimerWheel::new(10, 8, 0);
        let tick = w.schedule(1, 0, 1000); // 100 ticks away, the wheel spans 8
        assert_eq!(tick, 100);
        let mut out = Vec::new();
        let mut now = 0;
        while out.is_empty() {
            now += 10;
            w.expire(now, &mut out);
        }
        assert_eq!(now, 1000, "comes up at its own tick, not a turn early");
        assert_eq!(
            out,
            [Expired {
                key: 1,
                gen: 0,
                tick: 100
            }]
        );
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn past_deadlines_come_up_next() {
        let mut w = TimerWheel::new(10, 8, 100);
        assert_eq!(w.schedule(5, 0, 3), 10);
        let mut out = Vec::new();
        w.expire(100, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_long_stall_expires_everything_once() {
        let mut w = TimerWheel::new(10, 8, 0);
        for k in 0..20u32 {
            w.schedule(k, 0, u64::from(k) * 10);
        }
        w.schedule(99, 0, 200_000); // far in the future: must survive the stall
        let mut out = Vec::new();
        w.expire(100_000, &mut out);
        assert_eq!(out.len(), 20);
        assert_eq!(w.len(), 1);
        out.clear();
        w.expire(199_990, &mut out);
        assert!(out.is_empty());
        w.expire(200_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(w.timeout(200_000), None);
        let tick = w.schedule(1, 1, 200_005);
        assert_eq!(tick, 20_001);
        out.clear();
        w.expire(200_009, &mut out);
        assert!(out.is_empty());
        w.expire(200_010, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn timeout_points_at_the_next_tick() {
        let mut w = TimerWheel::new(100, 64, 0);
        w.schedule(1, 0, 5000);
        assert_eq!(w.timeout(0), Some(Duration::from_millis(0)));
        let mut out = Vec::new();
        w.expire(50, &mut out);
        assert_eq!(w.timeout(50), Some(Duration::from_millis(50)));
    }

    #[test]
    fn slots_give_back_a_burst_once_it_has_gone_out() {
        let mut w = TimerWheel::new(10, 8, 0);
        for k in 0..10_000u32 {
            w.schedule(k, 0, 30);
        }
        assert!(w.capacity_bytes() >= 10_000 * std::mem::size_of::<Expired>());
        let mut out = Vec::new();
        w.expire(30, &mut out);
        assert_eq!(out.len(), 10_000);
        assert!(
            w.capacity_bytes() <= 8 * SLOT_KEEP * std::mem::size_of::<Expired>(),
            "an emptied slot keeps {} bytes",
            w.capacity_bytes()
        );
        // Entries of a later turn in the same slot stay, and so does room for them.
        for k in 0..1000u32 {
            w.schedule(k, 1, 110);
        }
        w.schedule(5000, 1, 30 + 80 * 3);
        out.clear();
        w.expire(110, &mut out);
        assert_eq!(out.len(), 1000);
        assert_eq!(w.len(), 1);
    }
}
