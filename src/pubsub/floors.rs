//! Per-worker "skip up to" floors for sequenced publishes.
//!
//! A connection that joins a room with [`crate::runtime::Conn::subscribe_after`]
//! must not get the room's sequenced publishes up to a given sequence number:
//! the application sends those itself (from its history), and some of them
//! may still be on their way to this worker. The floors live here, in a small
//! side table per worker, not in the connection: the table is empty in steady
//! state (a floor is dropped by the first publish of its room past it, and
//! when its connection leaves the room), so idle connections pay nothing and
//! a fan-out with no floor anywhere pays one `is_empty` check.
//!
//! Dropping a floor once a later sequence number arrived is right because a
//! worker sees one room's sequenced publishes in increasing order: they are
//! sequenced under one lock by the application and every one of them reaches
//! every worker through that worker's FIFO command channel (see
//! [`crate::runtime::ServerHandle::publish_seq`]).

use std::collections::HashMap;

/// Floors by room: `(connection key, skip seq <= this)`.
#[derive(Debug, Default)]
pub(crate) struct Floors {
    rooms: HashMap<Box<str>, Vec<(u32, u64)>>,
}

impl Floors {
    /// True when no connection of this worker has a floor.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Sets (or replaces) `key`'s floor in `room`.
    pub fn set(&mut self, room: &str, key: u32, seq: u64) {
        let list = match self.rooms.get_mut(room) {
            Some(l) => l,
            None => self.rooms.entry(room.into()).or_default(),
        };
        match list.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = seq,
            None => list.push((key, seq)),
        }
    }

    /// Forgets `key`'s floor in `room` (it left the room).
    pub fn remove(&mut self, room: &str, key: u32) {
        if let Some(list) = self.rooms.get_mut(room) {
            list.retain(|(k, _)| *k != key);
            if list.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// Forgets every floor of `key` (it closed). Only walks the table when
    /// it is not empty, which is rare.
    pub fn remove_all(&mut self, key: u32) {
        if self.rooms.is_empty() {
            return;
        }
        self.rooms.retain(|_, list| {
            list.retain(|(k, _)| *k != key);
            !list.is_empty()
        });
    }

    /// For a publish of `room` with sequence number `seq` (> 0): the members
    /// to skip (their floor is at or above `seq`). Floors below `seq` are
    /// dropped: every later publish of the room has a higher number.
    pub fn skip(&mut self, room: &str, seq: u64, skip: &mut Vec<u32>) {
        let Some(list) = self.rooms.get_mut(room) else {
            return;
        };
        list.retain(|&(k, floor)| {
            if seq <= floor {
                skip.push(k);
                true
            } else {
                false
            }
        });
        if list.is_empty() {
            self.rooms.remove(room);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_skips_up_to_its_seq_then_goes_away() {
        let mut f = Floors::default();
        assert!(f.is_empty());
        f.set("r", 7, 10);
        f.set("r", 8, 12);
        let mut skip = Vec::new();
        f.skip("r", 10, &mut skip);
        skip.sort_unstable();
        assert_eq!(skip, [7, 8]);
        skip.clear();
        f.skip("r", 11, &mut skip);
        assert_eq!(skip, [8], "7's floor (10) is passed and dropped");
        skip.clear();
        f.skip("r", 13, &mut skip);
        assert!(skip.is_empty());
        assert!(f.is_empty(), "every floor passed: the table is empty again");
    }

    #[test]
    fn leaving_and_closing_drop_floors() {
        let mut f = Floors::default();
        f.set("a", 1, 5);
        f.set("b", 1, 5);
        f.set("b", 2, 5);
        f.remove("a", 1);
        f.remove_all(1);
        let mut skip = Vec::new();
        f.skip("b", 3, &mut skip);
        assert_eq!(skip, [2]);
        f.remove("b", 2);
        assert!(f.is_empty());
    }
}
