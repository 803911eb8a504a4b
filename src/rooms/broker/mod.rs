//! Scale-out through Redis (`broker = "redis"`): rooms, presence, `who` and
//! private messages span every node that shares one Redis.
//!
//! The engine's workers are mio loops and never wait for Redis: the room
//! handler hands each operation to [`Broker`] (a bounded queue, `try_send`)
//! and goes on. Two threads talk to Redis with the `redis` crate's blocking
//! connections:
//!
//! - the **link** thread gathers the queued operations of a few hundred
//!   microseconds into one pipeline (publishes, presence scripts, `who`),
//!   answers requests that need the cluster (join/leave acks with the
//!   cluster's member count, `who`, private-message acks) through the
//!   engine's [`ServerHandle`], keeps the node's heartbeat key, removes dead
//!   nodes' users, probes its own subscription and resyncs after an outage;
//! - the **subscriber** thread holds the node's pub/sub connection: rooms
//!   and users are hashed onto `redis.shards` shard channels, and the node
//!   subscribes only to the shards of its local rooms and users. A message
//!   from another node is filtered on receipt (no local member: dropped),
//!   then framed once and fanned out by the engine ([`ServerHandle::publish`]).
//!
//! A node's own messages never come back to it: they were fanned out
//! locally when published. Nothing that could not cross is lost silently:
//! rooms affected by an outage get a [`gap`](GAP_EVENT) event on every node.

mod link;
mod scripts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::runtime::stats::Counter;
use crate::runtime::ConnId;

use super::config::RedisConfig;
use super::directory::{Status, User};
use super::server::Shared;
use super::wire::Id;

/// The `type` of the event that tells a room's members that messages may
/// have been lost (the broker was down, or its queue was full).
pub const GAP_EVENT: &str = "gap";

/// A request's `id`, kept until the reply is sent from the link thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OwnedId {
    Int(i64),
    Str(Box<str>),
}

impl OwnedId {
    fn new(id: Option<Id<'_>>) -> Option<OwnedId> {
        id.map(|id| match id {
            Id::Int(n) => OwnedId::Int(n),
            Id::Str(s) => OwnedId::Str(s.into()),
        })
    }

    fn as_id(&self) -> Id<'_> {
        match self {
            OwnedId::Int(n) => Id::Int(*n),
            OwnedId::Str(s) => Id::Str(s),
        }
    }
}

/// Where the answer to a request goes.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    conn: ConnId,
    id: Option<OwnedId>,
}

/// One operation for Redis.
#[derive(Debug)]
pub(crate) enum Op {
    /// A room event to the other nodes (already fanned out here).
    Publish { room: Box<str>, text: Box<str> },
    /// A private message to `to`'s connections on the other nodes.
    Private {
        to: Box<str>,
        text: Box<str>,
        reply: Reply,
        /// Connections of `to` on this node it was handed to.
        local: u64,
        /// The event's `ts`, repeated in the ack.
        ts: u64,
    },
    /// A connection of `user` opened (+1) or closed (-1).
    Connect {
        user: Arc<User>,
        delta: i64,
        /// The connection (closed with 4029 when it is one too many).
        conn: ConnId,
        /// Order of presence changes (see `Broker::seq`).
        seq: u64,
    },
    /// A connection joined (+1), left (-1) or re-joined (0) `room`.
    Member {
        room: Box<str>,
        user: Arc<User>,
        delta: i64,
        reply: Reply,
        /// Send the ack (false when the connection is closing).
        ack: bool,
        /// More fields of the ack: `(name, raw JSON value)`.
        ack_fields: Vec<(&'static str, String)>,
        /// Order of presence changes (see `Broker::seq`).
        seq: u64,
        /// The shard set this join needs subscribed before its ack (so the
        /// member hears every message published after the ack).
        subs_version: u64,
    },
    /// `user`'s status changed.
    Status { user: Arc<User>, status: Status },
    /// A page of a room's members.
    Who {
        room: Box<str>,
        cursor: Option<Box<str>>,
        limit: usize,
        reply: Reply,
    },
    /// The shard set changed: wake the subscriber through Redis.
    Wake,
}

/// The broker's counters (for `/metrics`).
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// The link connection is up.
    pub link_up: AtomicBool,
    /// The subscription is up.
    pub sub_up: AtomicBool,
    /// The subscription saw no probe for 3 intervals while Redis answered.
    pub wedged: AtomicBool,
    /// Reconnections (link and subscription).
    pub reconnects: Counter,
    /// Operations that could not reach Redis (down, or an error).
    pub publish_failures: Counter,
    /// Operations refused because `redis.max_pending` were waiting.
    pub queue_full: Counter,
    /// Room events sent to Redis.
    pub published: Counter,
    /// Messages received from other nodes (room events and private).
    pub received: Counter,
    /// Received messages dropped because no local member wanted them.
    pub filtered: Counter,
    /// `gap` events sent to rooms.
    pub gaps: Counter,
    /// Wedged subscriptions detected.
    pub wedged_total: Counter,
    /// Redis round trips (pipelines).
    pub pipelines: Counter,
    /// Dead nodes whose users were removed by this node.
    pub nodes_reaped: Counter,
    /// Last probe's publish-to-receive time through Redis, microseconds.
    pub lag_us: AtomicU64,
    /// Operations waiting for the link thread.
    pub pending: AtomicUsize,
    /// Live nodes in the cluster (at the last heartbeat).
    pub cluster_nodes: AtomicU64,
    /// Users with a connection anywhere in the cluster (at the last heartbeat).
    pub cluster_users: AtomicU64,
    /// Authenticated connections over the cluster (at the last heartbeat).
    pub cluster_connections: AtomicU64,
}

/// Local rooms and users per shard: which shard channels to subscribe to.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    rooms: HashMap<u32, usize>,
    users: HashMap<u32, usize>,
    /// Bumped whenever the set of needed shards changes.
    pub version: u64,
}

impl Subscriptions {
    /// The channels this node needs now.
    pub fn channels(&self, names: &Names) -> Vec<String> {
        let mut out: Vec<String> = self.rooms.keys().map(|s| names.room_shard(*s)).collect();
        out.extend(self.users.keys().map(|s| names.user_shard(*s)));
        out.push(names.node_channel());
        out
    }
}

/// Key and channel names.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub prefix: String,
    pub node: String,
    pub shards: u32,
}

impl Names {
    /// FNV-1a: the same shard for the same name on every node.
    pub fn shard(&self, name: &str) -> u32 {
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        (h % u64::from(self.shards)) as u32
    }
    pub fn room_shard(&self, shard: u32) -> String {
        format!("{}:r:{shard}", self.prefix)
    }
    pub fn user_shard(&self, shard: u32) -> String {
        format!("{}:u:{shard}", self.prefix)
    }
    pub fn node_channel(&self) -> String {
        format!("{}:n:{}", self.prefix, self.node)
    }
    pub fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.prefix)
    }
    pub fn node_key(&self, kind: &str, node: &str) -> String {
        format!("{}:{kind}:{node}", self.prefix)
    }
}

/// The Redis broker of one node. Every method is non-blocking: it queues
/// an operation for the link thread (or drops and counts it when
/// `redis.max_pending` are already waiting).
#[derive(Debug)]
pub struct Broker {
    pub(crate) cfg: RedisConfig,
    pub(crate) names: Names,
    tx: SyncSender<Op>,
    rx: Mutex<Option<Receiver<Op>>>,
    /// Counters and gauges.
    pub stats: BrokerStats,
    pub(crate) subs: Mutex<Subscriptions>,
    pub(crate) stop: AtomicBool,
    /// Rooms whose events could not be published (they get a `gap` on the
    /// other nodes once Redis is back); `None`: too many, all rooms.
    pub(crate) lost: Mutex<Option<std::collections::HashSet<Box<str>>>>,
    pub(crate) started: Instant,
    /// This node's presence must be written to Redis again (the
    /// subscription or the link saw Redis go away).
    pub(crate) needs_resync: AtomicBool,
    /// The [`Subscriptions::version`] the subscriber has applied.
    pub(crate) subs_applied: AtomicU64,
    /// The subscription last heard its own probe (ms since `started`).
    pub(crate) probe_seen_ms: AtomicU64,
    /// Numbers presence changes as they are queued: a resync's snapshot
    /// already holds the changes queued before it started, which the link
    /// then skips.
    pub(crate) seq: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Most rooms remembered for `gap` events after an outage, before every
/// room is told instead.
const MAX_LOST_ROOMS: usize = 10_000;

impl Broker {
    /// A broker for `cfg`; nothing connects until [`Broker::start`].
    pub fn new(cfg: RedisConfig) -> Broker {
        let (tx, rx) = sync_channel(cfg.max_pending);
        let node = node_id();
        Broker {
            names: Names {
                prefix: cfg.prefix.clone(),
                node,
                shards: cfg.shards,
            },
            cfg,
            tx,
            rx: Mutex::new(Some(rx)),
            stats: BrokerStats::default(),
            subs: Mutex::default(),
            stop: AtomicBool::new(false),
            lost: Mutex::new(Some(Default::default())),
            started: Instant::now(),
            needs_resync: AtomicBool::new(true),
            subs_applied: AtomicU64::new(0),
            probe_seen_ms: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            threads: Mutex::default(),
        }
    }

    /// This node's id in Redis (random, per process).
    pub fn node(&self) -> &str {
        &self.names.node
    }

    /// Starts the link and subscriber threads (once).
    pub(crate) fn start(shared: &Arc<Shared>) -> std::io::Result<()> {
        let Some(b) = shared.broker.as_ref() else {
            return Ok(());
        };
        let Some(rx) = lock(&b.rx).take() else {
            return Ok(());
        };
        let s = shared.clone();
        let l = std::thread::Builder::new()
            .name("edgews-redis-link".into())
            .spawn(move || link::run_link(s, rx))?;
        let s = shared.clone();
        let sub = std::thread::Builder::new()
            .name("edgews-redis-sub".into())
            .spawn(move || link::run_subscriber(s))?;
        lock(&b.threads).extend([l, sub]);
        Ok(())
    }

    /// Sends what is queued, removes this node from Redis and stops (waits
    /// up to `timeout` for the link thread).
    pub fn stop(&self, timeout: Duration) {
        self.stop.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *lock(&self.threads));
        let deadline = Instant::now() + timeout;
        for t in threads {
            if t.thread().name() == Some("edgews-redis-link") {
                while !t.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Why the broker is not healthy, if it is not.
    pub fn health(&self) -> Result<(), String> {
        let s = &self.stats;
        if !s.link_up.load(Ordering::Relaxed) {
            return Err("broker down: no connection to Redis".into());
        }
        if !s.sub_up.load(Ordering::Relaxed) {
            return Err("broker down: the Redis subscription is not established".into());
        }
        if self.needs_resync.load(Ordering::Relaxed) {
            return Err("broker resyncing: this node's presence is not in Redis yet".into());
        }
        if s.wedged.load(Ordering::Relaxed) {
            return Err("broker wedged: the Redis subscription receives nothing".into());
        }
        Ok(())
    }

    fn send(&self, op: Op) -> bool {
        match self.tx.try_send(op) {
            Ok(()) => {
                self.stats.pending.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(op) | TrySendError::Disconnected(op)) => {
                self.stats.queue_full.inc();
                match &op {
                    Op::Publish { room, .. } => self.lost_room(room),
                    // Redis's view of this node is now off: rewrite it.
                    Op::Connect { .. } | Op::Member { .. } | Op::Status { .. } => {
                        self.needs_resync.store(true, Ordering::Relaxed);
                    }
                    _ => {}
                }
                false
            }
        }
    }

    /// Remembers that `room` lost an event.
    pub(crate) fn lost_room(&self, room: &str) {
        let mut lost = lock(&self.lost);
        if let Some(set) = lost.as_mut() {
            if set.len() >= MAX_LOST_ROOMS {
                *lost = None;
            } else {
                set.insert(room.into());
            }
        }
    }

    /// A room event (already fanned out on this node) to the other nodes.
    pub fn publish(&self, room: &str, text: &str) {
        self.send(Op::Publish {
            room: room.into(),
            text: text.into(),
        });
    }

    /// Connection `conn` of `user` opened (`delta` 1) or closed (-1).
    pub fn connected(&self, user: &Arc<User>, conn: ConnId, delta: i64) {
        let shard = self.names.shard(user.id());
        self.count(false, shard, delta);
        self.send(Op::Connect {
            user: user.clone(),
            delta,
            conn,
            seq: self.seq.fetch_add(1, Ordering::AcqRel),
        });
    }

    /// A connection joined (`delta` 1), left (-1) or joined again (0)
    /// `room`; the ack (when `ack`) and `user_joined`/`user_left` follow
    /// from the link thread with the cluster's member count. False when
    /// the queue is full: the caller answers from local state.
    pub(crate) fn member(
        &self,
        room: &str,
        user: &Arc<User>,
        delta: i64,
        conn: ConnId,
        id: Option<Id<'_>>,
        ack: bool,
    ) -> bool {
        self.member_with(room, user, delta, conn, id, ack, Vec::new())
    }

    /// [`Broker::member`], with more fields for the ack (`(name, raw JSON
    /// value)`: the join's history position and recovery answer).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn member_with(
        &self,
        room: &str,
        user: &Arc<User>,
        delta: i64,
        conn: ConnId,
        id: Option<Id<'_>>,
        ack: bool,
        ack_fields: Vec<(&'static str, String)>,
    ) -> bool {
        let subs_version = self.count(true, self.names.shard(room), delta);
        self.send(Op::Member {
            room: room.into(),
            user: user.clone(),
            delta,
            reply: Reply {
                conn,
                id: OwnedId::new(id),
            },
            ack,
            ack_fields,
            seq: self.seq.fetch_add(1, Ordering::AcqRel),
            subs_version,
        })
    }

    /// A private message to `to`'s connections on other nodes; the ack (or
    /// `user_offline`) follows from the link thread. False when the queue
    /// is full: the caller answers from what it delivered locally.
    pub(crate) fn private(
        &self,
        to: &str,
        text: &str,
        conn: ConnId,
        id: Option<Id<'_>>,
        local: u64,
        ts: u64,
    ) -> bool {
        self.send(Op::Private {
            to: to.into(),
            text: text.into(),
            reply: Reply {
                conn,
                id: OwnedId::new(id),
            },
            local,
            ts,
        })
    }

    /// `user`'s new status, for `who` on every node.
    pub fn status(&self, user: &Arc<User>, status: Status) {
        self.send(Op::Status {
            user: user.clone(),
            status,
        });
    }

    /// `who` over the cluster; the ack follows from the link thread. False
    /// when the queue is full: the caller answers from local state.
    pub(crate) fn who(
        &self,
        room: &str,
        cursor: Option<&str>,
        limit: usize,
        conn: ConnId,
        id: Option<Id<'_>>,
    ) -> bool {
        self.send(Op::Who {
            room: room.into(),
            cursor: cursor.map(Into::into),
            limit,
            reply: Reply {
                conn,
                id: OwnedId::new(id),
            },
        })
    }

    /// Counts a local room membership or user connection on its shard;
    /// wakes the subscriber when a shard starts or stops being needed.
    /// Returns the shard set's version after the change.
    fn count(&self, room: bool, shard: u32, delta: i64) -> u64 {
        let mut subs = lock(&self.subs);
        if delta == 0 {
            return subs.version;
        }
        let map = if room {
            &mut subs.rooms
        } else {
            &mut subs.users
        };
        let changed = if delta > 0 {
            let n = map.entry(shard).or_insert(0);
            *n += 1;
            *n == 1
        } else {
            match map.get_mut(&shard) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    map.remove(&shard);
                    true
                }
                None => false,
            }
        };
        if changed {
            subs.version += 1;
        }
        let version = subs.version;
        drop(subs);
        if changed {
            self.send(Op::Wake);
        }
        version
    }
}

/// A node id: random enough that two processes never share one.
fn node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_the_same_on_every_node_and_spread() {
        let names = Names {
            prefix: "p".into(),
            node: "a".into(),
            shards: 64,
        };
        assert_eq!(names.shard("lobby"), names.shard("lobby"));
        let used: std::collections::HashSet<u32> = (0..1000)
            .map(|i| names.shard(&format!("room-{i}")))
            .collect();
        assert_eq!(used.len(), 64, "1000 rooms cover every shard");
    }

    #[test]
    fn a_shard_is_subscribed_while_it_has_local_members() {
        let b = Broker::new(RedisConfig::default());
        let rx = lock(&b.rx).take().unwrap();
        b.count(true, 3, 1);
        b.count(true, 3, 1);
        b.count(true, 3, -1);
        assert!(lock(&b.subs).rooms.contains_key(&3));
        b.count(true, 3, -1);
        assert!(!lock(&b.subs).rooms.contains_key(&3));
        let wakes = rx.try_iter().filter(|op| matches!(op, Op::Wake)).count();
        assert_eq!(wakes, 2, "one wake when the shard is needed, one when not");
    }

    #[test]
    fn a_full_queue_drops_and_remembers_the_room() {
        let b = Broker::new(RedisConfig {
            max_pending: 1,
            ..RedisConfig::default()
        });
        b.publish("a", "{}");
        b.publish("b", "{}");
        assert_eq!(b.stats.queue_full.get(), 1);
        assert!(lock(&b.lost).as_ref().unwrap().contains("b"));
    }
}
