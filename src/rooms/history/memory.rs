//! The memory store: a ring of events per room, bounded by the room's
//! message count and TTL, and all rooms together by a byte budget.
//!
//! Epochs are random per process start and per room creation: a restart,
//! or a room evicted to stay within the budget and created again, gets a
//! new epoch, so a client's old position is refused (`epoch_changed`),
//! never silently wrong.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{Entry, HistoryLimits, Position, Slice, Store, StoreError};

/// Shards of the room map (a room's calls lock one shard).
const SHARDS: usize = 16;
/// Bytes counted per message beyond its event text (ring slot, `Bytes`
/// header, allocation rounding).
pub const ENTRY_OVERHEAD: usize = 64;
/// Bytes counted per room beyond its name (map entry, epoch, ring header).
pub const ROOM_OVERHEAD: usize = 160;

#[derive(Debug)]
struct RoomLog {
    epoch: Arc<str>,
    top: u64,
    /// `(offset, ts_ms, event)`, oldest first.
    ring: VecDeque<(u64, u64, Bytes)>,
    /// Own limits (`None`: the defaults).
    limits: Option<HistoryLimits>,
    /// Bytes counted for this room.
    bytes: usize,
    /// Recency of use, for eviction.
    touched: u64,
}

#[derive(Debug, Default)]
struct Shard {
    rooms: HashMap<Box<str>, RoomLog>,
    bytes: usize,
}

/// The in-memory [`Store`].
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    defaults: HistoryLimits,
    shard_budget: usize,
    seed: u64,
    rooms_made: AtomicU64,
    clock: AtomicU64,
}

impl MemoryStore {
    /// A store keeping `defaults` per room and at most about `max_bytes` in all.
    pub fn new(defaults: HistoryLimits, max_bytes: usize) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            defaults,
            shard_budget: (max_bytes / SHARDS).max(1),
            seed: super::random_u64(0),
            rooms_made: AtomicU64::new(0),
            clock: AtomicU64::new(0),
        }
    }

    fn shard(&self, room: &str) -> MutexGuard<'_, Shard> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        room.hash(&mut h);
        let at = (h.finish() as usize) % self.shards.len();
        self.shards[at].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_room(&self, name: &str) -> RoomLog {
        let n = self.rooms_made.fetch_add(1, Ordering::Relaxed);
        let mix = super::random_u64(self.seed ^ n);
        RoomLog {
            epoch: format!("{:016x}", mix).into(),
            top: 0,
            ring: VecDeque::new(),
            limits: None,
            bytes: ROOM_OVERHEAD + name.len(),
            touched: 0,
        }
    }

    /// Bytes counted over all rooms (events, per-message and per-room overhead).
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).bytes)
            .sum()
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }
}

/// Drops messages over the room's count or past its TTL.
fn trim(log: &mut RoomLog, limits: HistoryLimits, now_ms: u64, shard_bytes: &mut usize) {
    let ttl_ms = limits.ttl_secs.saturating_mul(1000);
    while let Some(&(_, ts, ref ev)) = log.ring.front() {
        let expired = ttl_ms > 0 && ts.saturating_add(ttl_ms) <= now_ms;
        if log.ring.len() <= limits.size && !expired {
            break;
        }
        let n = ev.len() + ENTRY_OVERHEAD;
        log.bytes -= n;
        *shard_bytes -= n;
        log.ring.pop_front();
    }
}

impl Store for MemoryStore {
    fn position(&self, room: &str) -> Result<Position, StoreError> {
        let mut shard = self.shard(room);
        let shard = &mut *shard;
        let log = match shard.rooms.get(room) {
            Some(l) => l,
            None => {
                let log = self.new_room(room);
                shard.bytes += log.bytes;
                shard.rooms.entry(room.into()).or_insert(log)
            }
        };
        Ok(Position {
            epoch: log.epoch.clone(),
            offset: log.top,
        })
    }

    fn append(
        &self,
        room: &str,
        now_ms: u64,
        write: &mut dyn FnMut(&Position, &mut Vec<u8>),
        buf: &mut Vec<u8>,
    ) -> Result<Position, StoreError> {
        let touched = self.tick();
        let mut guard = self.shard(room);
        let shard = &mut *guard;
        if !shard.rooms.contains_key(room) {
            let log = self.new_room(room);
            shard.bytes += log.bytes;
            shard.rooms.insert(room.into(), log);
        }
        let log = shard.rooms.get_mut(room).expect("inserted above");
        log.top += 1;
        log.touched = touched;
        let pos = Position {
            epoch: log.epoch.clone(),
            offset: log.top,
        };
        buf.clear();
        write(&pos, buf);
        let limits = log.limits.unwrap_or(self.defaults);
        if limits.size > 0 {
            let n = buf.len() + ENTRY_OVERHEAD;
            log.ring
                .push_back((pos.offset, now_ms, Bytes::copy_from_slice(buf)));
            log.bytes += n;
            shard.bytes += n;
        }
        trim(log, limits, now_ms, &mut shard.bytes);
        // Over budget: evict the least recently used other rooms whole (a
        // client of theirs gets `epoch_changed`), then this room's oldest.
        if shard.bytes > self.shard_budget {
            let mut others: Vec<(u64, Box<str>)> = shard
                .rooms
                .iter()
                .filter(|(name, _)| &***name != room)
                .map(|(name, l)| (l.touched, name.clone()))
                .collect();
            others.sort_unstable();
            let target = self.shard_budget - self.shard_budget / 10;
            for (_, name) in others {
                if shard.bytes <= target {
                    break;
                }
                if let Some(l) = shard.rooms.remove(&name) {
                    shard.bytes -= l.bytes;
                }
            }
            let log = shard.rooms.get_mut(room).expect("not evicted");
            while shard.bytes > self.shard_budget {
                let Some((_, _, ev)) = log.ring.pop_front() else {
                    break;
                };
                log.bytes -= ev.len() + ENTRY_OVERHEAD;
                shard.bytes -= ev.len() + ENTRY_OVERHEAD;
            }
        }
        Ok(pos)
    }

    fn read(&self, room: &str, after: u64, limit: usize, now_ms: u64) -> Result<Slice, StoreError> {
        let mut guard = self.shard(room);
        let shard = &mut *guard;
        if !shard.rooms.contains_key(room) {
            let log = self.new_room(room);
            shard.bytes += log.bytes;
            shard.rooms.insert(room.into(), log);
        }
        let log = shard.rooms.get_mut(room).expect("inserted above");
        let limits = log.limits.unwrap_or(self.defaults);
        trim(log, limits, now_ms, &mut shard.bytes);
        let oldest = log.ring.front().map_or(log.top + 1, |e| e.0);
        // Offsets in the ring are consecutive: index by arithmetic.
        let skip = after.saturating_add(1).saturating_sub(oldest) as usize;
        let entries = log
            .ring
            .iter()
            .skip(skip)
            .take(limit)
            .map(|(offset, _, ev)| Entry {
                offset: *offset,
                event: ev.clone(),
            })
            .collect();
        Ok(Slice {
            position: Position {
                epoch: log.epoch.clone(),
                offset: log.top,
            },
            oldest,
            entries,
            disabled: limits.size == 0,
        })
    }

    fn set_room_limits(&self, room: &str, limits: HistoryLimits) -> Result<(), StoreError> {
        let mut guard = self.shard(room);
        let shard = &mut *guard;
        if !shard.rooms.contains_key(room) {
            let log = self.new_room(room);
            shard.bytes += log.bytes;
            shard.rooms.insert(room.into(), log);
        }
        let log = shard.rooms.get_mut(room).expect("inserted above");
        log.limits = Some(limits);
        trim(log, limits, 0, &mut shard.bytes);
        Ok(())
    }

    fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(s: &MemoryStore, room: &str, now: u64) -> Position {
        let mut buf = Vec::new();
        s.append(
            room,
            now,
            &mut |p, b| b.extend_from_slice(format!("m{}", p.offset).as_bytes()),
            &mut buf,
        )
        .unwrap()
    }

    #[test]
    fn offsets_count_up_and_the_ring_keeps_the_last_size() {
        let s = MemoryStore::new(HistoryLimits::new(3, 0), 1 << 20);
        let p0 = s.position("r").unwrap();
        assert_eq!(p0.offset, 0);
        for i in 1..=5 {
            assert_eq!(append(&s, "r", 0).offset, i);
        }
        let sl = s.read("r", 0, 10, 0).unwrap();
        assert_eq!(sl.oldest, 3);
        assert_eq!(sl.position.epoch, p0.epoch);
        let offs: Vec<u64> = sl.entries.iter().map(|e| e.offset).collect();
        assert_eq!(offs, [3, 4, 5]);
        assert_eq!(&sl.entries[0].event[..], b"m3");
        let sl = s.read("r", 4, 10, 0).unwrap();
        assert_eq!(sl.entries.len(), 1);
        assert!(s.read("r", 5, 10, 0).unwrap().entries.is_empty());
        assert_ne!(s.position("other").unwrap().epoch, p0.epoch);
    }

    #[test]
    fn ttl_expires_and_disabled_rooms_keep_offsets_only() {
        let s = MemoryStore::new(HistoryLimits::new(10, 1), 1 << 20);
        append(&s, "r", 1_000);
        append(&s, "r", 1_500);
        let sl = s.read("r", 0, 10, 2_100).unwrap();
        assert_eq!(sl.oldest, 2, "the first is past its TTL");
        s.set_room_limits("d", HistoryLimits::new(0, 0)).unwrap();
        append(&s, "d", 0);
        let sl = s.read("d", 0, 10, 0).unwrap();
        assert!(sl.disabled && sl.entries.is_empty());
        assert_eq!((sl.position.offset, sl.oldest), (1, 2));
    }

    #[test]
    fn the_byte_budget_evicts_whole_cold_rooms() {
        let s = MemoryStore::new(HistoryLimits::new(1000, 0), 16 * 2_000);
        for r in 0..200 {
            append(&s, &format!("room{r}"), 0);
        }
        assert!(s.bytes() <= 16 * 2_000, "{} bytes", s.bytes());
        // The latest room is still there, with its epoch.
        let p = s.position("room199").unwrap();
        assert_eq!(p.offset, 1);
    }
}
