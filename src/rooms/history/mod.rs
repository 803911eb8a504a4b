//! Room history: every room message gets an `offset` (monotonic per room)
//! and the room an `epoch` (a string that changes whenever the room's
//! history may have been lost), so a client that reconnects with
//! `join {since: {epoch, offset}}` gets exactly what it missed, or is told
//! plainly that it can't (`recovered: false` with a reason).
//!
//! - [`Store`]: the small trait every store implements (per room: position,
//!   append, read a range, limits). Nothing in it assumes one process: a
//!   Redis store (streams with MAXLEN, offsets from INCR, the epoch in a key)
//!   fits it.
//! - [`memory::MemoryStore`] (the default): a ring per room bounded by count
//!   and TTL, a total byte bound; epochs are random per process start and
//!   per room creation.
//! - [`file::FileStore`]: redb on disk; a graceful restart keeps history,
//!   offsets and epochs.
//! - [`History`]: a store plus the per-room ordering lock, and
//!   [`publish_message`], the one function that publishes a room message
//!   (WebSocket path, admin API, Redis scale-out).
//!
//! # Ordering
//!
//! One lock per room (striped: [`LOCK_STRIPES`] mutexes, a room hashes to
//! one) is held across [assign the next offset, append to the store,
//! publish ([`Conn::publish`] or [`ServerHandle::publish`])], and a `join`
//! holds it across [read the position, [`Conn::subscribe_in_order`], ack,
//! send the missed messages]. The engine delivers publishes to each worker
//! through its FIFO command channel and a worker fans out what waits there
//! before it publishes or joins in order, so every member sees a room's
//! messages in offset order, and a joiner gets none at or below its
//! position from the room (those were fanned out before it joined) and
//! every later one after its ack and missed messages. No gap, no
//! duplicate; `tests/rooms_history.rs` fails if either half is removed.

pub mod file;
pub mod memory;

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::protocol::Message;
use crate::runtime::{Conn, ServerHandle};

use super::codes::ErrorCode;
use super::directory::User;
use super::session::Session;
use super::wire::Out;

/// Stripes of the per-room ordering lock (rooms that hash alike share one).
pub const LOCK_STRIPES: usize = 256;

/// Where a room's history stands: its epoch and the offset of its latest
/// message (0 before the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// Changes whenever the room's history may have been lost.
    pub epoch: Arc<str>,
    /// The latest message's offset (offsets start at 1).
    pub offset: u64,
}

/// A room's history limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryLimits {
    /// Messages kept (0: none; offsets are still assigned).
    pub size: usize,
    /// Seconds a message is kept (0: no age limit).
    pub ttl_secs: u64,
}

impl HistoryLimits {
    /// `size` messages for `ttl_secs` seconds.
    pub fn new(size: usize, ttl_secs: u64) -> Self {
        HistoryLimits { size, ttl_secs }
    }
}

/// One stored message: its offset and the `message` event as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The message's offset.
    pub offset: u64,
    /// The serialized `message` event (JSON text).
    pub event: Bytes,
}

/// A read of a room's history.
#[derive(Debug)]
pub struct Slice {
    /// The room's position when read.
    pub position: Position,
    /// The oldest offset still held (`position.offset + 1` when none is).
    pub oldest: u64,
    /// Messages after the asked offset, in order, at most the asked limit.
    pub entries: Vec<Entry>,
    /// The room's history is disabled (its size limit is 0).
    pub disabled: bool,
}

/// A store failed (I/O, a corrupt file, closed).
#[derive(Debug)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "history store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// A history store. Every method is per room and may be called from any
/// worker; the caller serializes a room's calls that must be ordered
/// (see [`History`]).
pub trait Store: Send + Sync + fmt::Debug {
    /// The room's current position (a new room gets a fresh epoch, offset 0).
    fn position(&self, room: &str) -> Result<Position, StoreError>;

    /// Appends the room's next message: the store assigns offset
    /// `position.offset + 1`, calls `write` with the new position to
    /// serialize the event into the buffer, keeps it (unless the room's
    /// history is disabled) and returns the position.
    fn append(
        &self,
        room: &str,
        now_ms: u64,
        write: &mut dyn FnMut(&Position, &mut Vec<u8>),
        buf: &mut Vec<u8>,
    ) -> Result<Position, StoreError>;

    /// Up to `limit` messages with offsets above `after`, in order, skipping
    /// expired ones.
    fn read(&self, room: &str, after: u64, limit: usize, now_ms: u64) -> Result<Slice, StoreError>;

    /// Sets `room`'s own limits (instead of the configured defaults).
    fn set_room_limits(&self, room: &str, limits: HistoryLimits) -> Result<(), StoreError>;

    /// Makes everything appended so far durable and marks a clean stop (a
    /// no-op for stores that keep nothing). Called on graceful shutdown;
    /// later appends fail.
    fn close(&self) -> Result<(), StoreError>;
}

/// Which store `history.store` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum StoreKind {
    /// In memory: lost on restart (the epoch changes).
    #[default]
    Memory,
    /// redb on disk (`history.path`).
    File,
}

/// The `[history]` section of the room server's config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HistoryConfig {
    /// `memory` or `file`.
    pub store: StoreKind,
    /// The file store's database file.
    pub path: std::path::PathBuf,
    /// Messages kept per room (0: history disabled; offsets still assigned).
    pub size: usize,
    /// Seconds a message is kept (0: no age limit).
    pub ttl_secs: u64,
    /// The memory store's bound over all rooms, in bytes (events + overhead).
    pub max_memory_bytes: usize,
    /// Default page size of `history`.
    pub default_limit: usize,
    /// Largest page size of `history`.
    pub max_limit: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            store: StoreKind::Memory,
            path: std::path::PathBuf::from(".edgews/history.redb"),
            size: 100,
            ttl_secs: 3600,
            max_memory_bytes: 64 << 20,
            default_limit: 50,
            max_limit: 1000,
        }
    }
}

impl HistoryConfig {
    /// The default limits of every room.
    pub fn limits(&self) -> HistoryLimits {
        HistoryLimits::new(self.size, self.ttl_secs)
    }
}

/// A store plus the per-room ordering lock.
#[derive(Debug)]
pub struct History {
    store: Box<dyn Store>,
    locks: Box<[Mutex<()>]>,
}

impl History {
    /// History over `store`.
    pub fn new(store: Box<dyn Store>) -> Self {
        History {
            store,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Opens the store `cfg` names.
    pub fn open(cfg: &HistoryConfig) -> Result<Self, StoreError> {
        let store: Box<dyn Store> = match cfg.store {
            StoreKind::Memory => {
                Box::new(memory::MemoryStore::new(cfg.limits(), cfg.max_memory_bytes))
            }
            StoreKind::File => Box::new(file::FileStore::open(&cfg.path, cfg.limits())?),
        };
        Ok(History::new(store))
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Locks `room`'s ordering lock (see the module docs). Hold it across
    /// numbering + publishing, and across join + recovery.
    pub fn lock(&self, room: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        room.hash(&mut h);
        let at = (h.finish() as usize) % self.locks.len();
        self.locks[at].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets `room`'s own limits (the `create {history}` request, the admin API).
    pub fn set_room_limits(&self, room: &str, limits: HistoryLimits) -> Result<(), StoreError> {
        self.store.set_room_limits(room, limits)
    }

    /// Flushes and closes the store (graceful shutdown).
    pub fn close(&self) -> Result<(), StoreError> {
        self.store.close()
    }
}

/// The `data` of a room message.
#[derive(Clone, Copy, Debug)]
pub enum Data<'a> {
    /// A value parsed from a client's request.
    Parsed(&'a simd_json::BorrowedValue<'a>),
    /// JSON text (the caller guarantees it is valid JSON), e.g. from the admin API.
    Raw(&'a str),
}

/// Who gets a room message published through [`publish_message`].
#[derive(Debug)]
pub enum Origin<'c, 'a> {
    /// Published by a connection (a worker callback); `exclude_self` leaves
    /// that connection out.
    Conn(&'c mut Conn<'a, Session>, bool),
    /// Published from another thread (admin API, Redis): every member.
    Handle(&'c ServerHandle),
    /// Published by the admin API: every member, the event marked
    /// `"admin": true` (which no client can set).
    Admin(&'c ServerHandle),
}

/// Publishes a room message: numbers it (the next offset of `room`),
/// appends it to the history store and publishes the `message` event to
/// every member on every worker, all under the room's ordering lock. The
/// event is serialized once and framed once.
///
/// `from` is the sender (a connection's user, or a detached user for the
/// admin API: [`super::directory::Directory::detached`]); `ts_ms` is the
/// event's `ts` (Unix milliseconds). Returns the message's position, or
/// `internal` when the store failed (nothing was published then: a member
/// never sees a message that history does not have).
pub fn publish_message(
    history: &History,
    origin: Origin<'_, '_>,
    room: &str,
    from: &User,
    data: Data<'_>,
    ts_ms: u64,
) -> Result<Position, ErrorCode> {
    publish_message_then(history, origin, room, from, data, ts_ms, &mut |_| {})
}

/// [`publish_message`], and `then` gets the event's text after the local
/// publish, still under the room's ordering lock (the Redis broker sends
/// it to the other nodes from there).
pub fn publish_message_then(
    history: &History,
    origin: Origin<'_, '_>,
    room: &str,
    from: &User,
    data: Data<'_>,
    ts_ms: u64,
    then: &mut dyn FnMut(&str),
) -> Result<Position, ErrorCode> {
    let _order = history.lock(room);
    let admin = matches!(origin, Origin::Admin(_));
    let mut out = Out::default();
    let mut write = |pos: &Position, buf: &mut Vec<u8>| {
        out.buf = std::mem::take(buf);
        let o = out
            .start("message", None)
            .str("room", room)
            .user("from", from.id(), from.name());
        match data {
            Data::Parsed(v) => o.value("data", v),
            Data::Raw(json) => o.raw("data", json),
        };
        o.num("ts", ts_ms)
            .num("offset", pos.offset)
            .str("epoch", &pos.epoch);
        if admin {
            o.bool("admin", true);
        }
        o.finish();
        *buf = std::mem::take(&mut out.buf);
    };
    let mut buf = Vec::new();
    let pos = history
        .store
        .append(room, ts_ms, &mut write, &mut buf)
        .map_err(|e| {
            tracing::error!(room, error = %e, "history append failed: message not published");
            ErrorCode::Internal
        })?;
    // Only valid UTF-8 was written (see `Out::finish`).
    let text = std::str::from_utf8(&buf).unwrap_or("{}");
    match origin {
        Origin::Conn(conn, true) => conn.publish_others(room, Message::Text(text)),
        Origin::Conn(conn, false) => conn.publish(room, Message::Text(text)),
        Origin::Handle(h) | Origin::Admin(h) => h.publish(room, Message::Text(text)),
    }
    then(text);
    Ok(pos)
}

/// A random 64-bit value from the standard library's per-process hash seed
/// (itself from the OS), mixed with `salt`.
pub(crate) fn random_u64(salt: u64) -> u64 {
    use std::hash::BuildHasher;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    salt.hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    std::process::id().hash(&mut h);
    h.finish()
}
