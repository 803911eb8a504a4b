//! The file store: history in one redb database file, so a single node
//! restarted gracefully keeps every room's history, offsets and epochs, and
//! `join {since}` recovers across the restart.
//!
//! # Durability and crashes
//!
//! A commit that waits for the disk (fsync) per message would cap a busy
//! node at a few hundred messages per second, so each append is its own
//! redb transaction committed without fsync (`Durability::None`: visible to
//! reads at once, written to disk by the next durable commit), and one
//! commit per second, plus the one on graceful shutdown ([`Store::close`]),
//! is durable. A crash can therefore lose the last second of messages —
//! which clients may already have seen. So the node never pretends it did
//! not: a `clean` flag in the file is cleared (durably) when the store
//! opens and set only by a graceful close. Opening a file whose flag is not
//! set bumps the file's generation, which is part of every room's epoch:
//! after a crash every room's epoch changes and `recovered: true` across
//! the possible gap is impossible (clients get `epoch_changed`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, Durability, TableDefinition};

use super::{Entry, HistoryLimits, Position, Slice, Store, StoreError};

/// room → (latest offset, the room's own epoch part).
const ROOMS: TableDefinition<&str, (u64, &str)> = TableDefinition::new("rooms");
/// (room, offset) → (ts_ms, event).
const MSGS: TableDefinition<(&str, u64), (u64, &[u8])> = TableDefinition::new("messages");
/// room → (size, ttl_secs): rooms with their own limits.
const LIMITS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("limits");
/// `clean` (1 after a graceful close), `generation` (bumped after a crash).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Longest time between durable commits while messages are appended.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct RoomMeta {
    /// The room's own epoch part (random at creation).
    own: Arc<str>,
    /// The full epoch (own part + the file's generation).
    epoch: Arc<str>,
    top: u64,
    /// The oldest offset held (top + 1 when none).
    oldest: u64,
    limits: Option<HistoryLimits>,
}

#[derive(Debug)]
struct Inner {
    db: Option<Database>,
    rooms: HashMap<Box<str>, RoomMeta>,
    last_sync: Instant,
}

/// The redb [`Store`].
#[derive(Debug)]
pub struct FileStore {
    inner: Mutex<Inner>,
    defaults: HistoryLimits,
    generation: u64,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl FileStore {
    /// Opens (or creates) the database at `path`; `defaults` are the limits
    /// of rooms without their own.
    pub fn open(path: &Path, defaults: HistoryLimits) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let (clean, mut generation) = {
            let r = db.begin_read().map_err(err)?;
            match r.open_table(META) {
                Ok(t) => (
                    t.get("clean").map_err(err)?.map(|v| v.value()),
                    t.get("generation").map_err(err)?.map_or(0, |v| v.value()),
                ),
                Err(redb::TableError::TableDoesNotExist(_)) => (None, 0),
                Err(e) => return Err(err(e)),
            }
        };
        if clean == Some(0) {
            generation += 1;
            tracing::warn!(
                path = %path.display(),
                generation,
                "history file was not closed cleanly: every room's epoch changes"
            );
        }
        let mut w = db.begin_write().map_err(err)?;
        w.set_durability(Durability::Immediate);
        {
            let mut t = w.open_table(META).map_err(err)?;
            t.insert("clean", 0).map_err(err)?;
            t.insert("generation", generation).map_err(err)?;
            w.open_table(ROOMS).map_err(err)?;
            w.open_table(MSGS).map_err(err)?;
            w.open_table(LIMITS).map_err(err)?;
        }
        w.commit().map_err(err)?;
        Ok(FileStore {
            inner: Mutex::new(Inner {
                db: Some(db),
                rooms: HashMap::new(),
                last_sync: Instant::now(),
            }),
            defaults,
            generation,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The room's metadata, read from the file on first use (or made new).
    fn meta(&self, inner: &mut Inner, room: &str) -> Result<RoomMeta, StoreError> {
        if let Some(m) = inner.rooms.get(room) {
            return Ok(m.clone());
        }
        let db = inner.db.as_ref().ok_or_else(|| err("closed"))?;
        let r = db.begin_read().map_err(err)?;
        let rooms = r.open_table(ROOMS).map_err(err)?;
        let limits = r
            .open_table(LIMITS)
            .map_err(err)?
            .get(room)
            .map_err(err)?
            .map(|v| {
                let (size, ttl) = v.value();
                HistoryLimits::new(size as usize, ttl)
            });
        let (top, own) = match rooms.get(room).map_err(err)? {
            Some(v) => {
                let (top, own) = v.value();
                (top, Arc::<str>::from(own))
            }
            None => (
                0,
                Arc::<str>::from(format!("{:016x}", super::random_u64(self.generation))),
            ),
        };
        let msgs = r.open_table(MSGS).map_err(err)?;
        let oldest = msgs
            .range((room, 0)..=(room, u64::MAX))
            .map_err(err)?
            .next()
            .transpose()
            .map_err(err)?
            .map_or(top + 1, |(k, _)| k.value().1);
        let m = RoomMeta {
            epoch: format!("{own}-{}", self.generation).into(),
            own,
            top,
            oldest,
            limits,
        };
        inner.rooms.insert(room.into(), m.clone());
        Ok(m)
    }
}

impl Store for FileStore {
    fn position(&self, room: &str) -> Result<Position, StoreError> {
        let mut inner = self.lock();
        let m = self.meta(&mut inner, room)?;
        Ok(Position {
            epoch: m.epoch,
            offset: m.top,
        })
    }

    fn append(
        &self,
        room: &str,
        now_ms: u64,
        write: &mut dyn FnMut(&Position, &mut Vec<u8>),
        buf: &mut Vec<u8>,
    ) -> Result<Position, StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut m = self.meta(inner, room)?;
        let pos = Position {
            epoch: m.epoch.clone(),
            offset: m.top + 1,
        };
        buf.clear();
        write(&pos, buf);
        let limits = m.limits.unwrap_or(self.defaults);
        let sync = inner.last_sync.elapsed() >= SYNC_INTERVAL;
        let db = inner.db.as_ref().ok_or_else(|| err("closed"))?;
        let mut w = db.begin_write().map_err(err)?;
        w.set_durability(if sync {
            Durability::Immediate
        } else {
            Durability::None
        });
        let mut oldest = m.oldest;
        {
            let mut rooms = w.open_table(ROOMS).map_err(err)?;
            rooms.insert(room, (pos.offset, &*m.own)).map_err(err)?;
            let mut msgs = w.open_table(MSGS).map_err(err)?;
            if limits.size > 0 {
                msgs.insert((room, pos.offset), (now_ms, buf.as_slice()))
                    .map_err(err)?;
            }
            // Keep the last `size`: drop what fell out (usually one).
            let keep_from = (pos.offset + 1).saturating_sub(limits.size as u64).max(1);
            while oldest < keep_from {
                msgs.remove((room, oldest)).map_err(err)?;
                oldest += 1;
            }
            if limits.size == 0 {
                oldest = pos.offset + 1;
            }
        }
        w.commit().map_err(err)?;
        if sync {
            inner.last_sync = Instant::now();
        }
        m.top = pos.offset;
        m.oldest = if limits.size == 0 {
            m.top + 1
        } else {
            oldest.max(1)
        };
        inner.rooms.insert(room.into(), m);
        Ok(pos)
    }

    fn read(&self, room: &str, after: u64, limit: usize, now_ms: u64) -> Result<Slice, StoreError> {
        let mut guard = self.lock();
        let m = self.meta(&mut guard, room)?;
        let limits = m.limits.unwrap_or(self.defaults);
        let db = guard.db.as_ref().ok_or_else(|| err("closed"))?;
        let r = db.begin_read().map_err(err)?;
        let msgs = r.open_table(MSGS).map_err(err)?;
        let ttl_ms = limits.ttl_secs.saturating_mul(1000);
        let live = |ts: u64| ttl_ms == 0 || ts.saturating_add(ttl_ms) > now_ms;
        // The oldest offset still held and not expired.
        let mut oldest = m.top + 1;
        for item in msgs.range((room, m.oldest)..=(room, m.top)).map_err(err)? {
            let (k, v) = item.map_err(err)?;
            if live(v.value().0) {
                oldest = k.value().1;
                break;
            }
        }
        let from = after.saturating_add(1).max(oldest);
        let mut entries = Vec::new();
        if from <= m.top && limit > 0 {
            for item in msgs.range((room, from)..=(room, m.top)).map_err(err)? {
                let (k, v) = item.map_err(err)?;
                let (_, event) = v.value();
                entries.push(Entry {
                    offset: k.value().1,
                    event: Bytes::copy_from_slice(event),
                });
                if entries.len() == limit {
                    break;
                }
            }
        }
        Ok(Slice {
            position: Position {
                epoch: m.epoch,
                offset: m.top,
            },
            oldest,
            entries,
            disabled: limits.size == 0,
        })
    }

    fn set_room_limits(&self, room: &str, limits: HistoryLimits) -> Result<(), StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut m = self.meta(inner, room)?;
        let db = inner.db.as_ref().ok_or_else(|| err("closed"))?;
        let mut w = db.begin_write().map_err(err)?;
        w.set_durability(Durability::None);
        {
            let mut t = w.open_table(LIMITS).map_err(err)?;
            t.insert(room, (limits.size as u64, limits.ttl_secs))
                .map_err(err)?;
            let mut msgs = w.open_table(MSGS).map_err(err)?;
            let keep_from = (m.top + 1).saturating_sub(limits.size as u64).max(1);
            while m.oldest < keep_from {
                msgs.remove((room, m.oldest)).map_err(err)?;
                m.oldest += 1;
            }
        }
        w.commit().map_err(err)?;
        m.limits = Some(limits);
        inner.rooms.insert(room.into(), m);
        Ok(())
    }

    fn close(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let Some(db) = inner.db.take() else {
            return Ok(());
        };
        let mut w = db.begin_write().map_err(err)?;
        w.set_durability(Durability::Immediate);
        w.open_table(META)
            .map_err(err)?
            .insert("clean", 1)
            .map_err(err)?;
        w.commit().map_err(err)?;
        inner.rooms.clear();
        Ok(())
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the history file failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(s: &FileStore, room: &str) -> Position {
        let mut buf = Vec::new();
        s.append(
            room,
            0,
            &mut |p, b| b.extend_from_slice(format!("m{}", p.offset).as_bytes()),
            &mut buf,
        )
        .unwrap()
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("edgews-{name}-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn a_clean_reopen_keeps_history_and_epoch() {
        let path = tmp("clean");
        let s = FileStore::open(&path, HistoryLimits::new(3, 0)).unwrap();
        for _ in 0..5 {
            append(&s, "r");
        }
        let before = s.position("r").unwrap();
        s.close().unwrap();
        drop(s);
        let s = FileStore::open(&path, HistoryLimits::new(3, 0)).unwrap();
        assert_eq!(s.position("r").unwrap(), before);
        let sl = s.read("r", 0, 10, 0).unwrap();
        let offs: Vec<u64> = sl.entries.iter().map(|e| e.offset).collect();
        assert_eq!(offs, [3, 4, 5]);
        assert_eq!(sl.oldest, 3);
        assert_eq!(&sl.entries[2].event[..], b"m5");
        assert_eq!(append(&s, "r").offset, 6);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_unclean_stop_changes_the_epoch() {
        let path = tmp("crash");
        let s = FileStore::open(&path, HistoryLimits::new(3, 0)).unwrap();
        append(&s, "r");
        let before = s.position("r").unwrap();
        // A crash: the database goes away without the clean close.
        drop(s.lock().db.take());
        std::mem::forget(s);
        let s = FileStore::open(&path, HistoryLimits::new(3, 0)).unwrap();
        let after = s.position("r").unwrap();
        assert_ne!(after.epoch, before.epoch, "a crash must change the epoch");
        drop(s);
        let _ = std::fs::remove_file(&path);
    }
}
