//! [`ServerHandle`]: talk to a running server from any thread.
//!
//! Every worker has a command channel and a `mio::Waker`. A command is sent
//! on the channel and the worker is woken only if it is not already due to
//! look at its channel, so a burst of commands costs one wake-up.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::{server_frame, CloseCode, Message};
use crate::pubsub::{Published, RoomStats};

use super::config::Config;
use super::handler::ConnId;
use super::stats::WorkerStats;

/// A request to a worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Fan a framed message out to the worker's members of `room`.
    Publish {
        room: Arc<str>,
        msg: Arc<Published>,
        exclude: Option<ConnId>,
    },
    /// Queue a framed message for one connection.
    Send { id: ConnId, frame: Bytes },
    /// Hand an application payload to the handler of one connection
    /// ([`super::Handler::on_notify`]).
    Notify { id: ConnId, payload: Bytes },
    /// Close one connection.
    Close {
        id: ConnId,
        code: CloseCode,
        reason: Box<str>,
    },
    /// Report the worker's member count and counters of a room.
    RoomStats {
        room: Arc<str>,
        reply: mpsc::Sender<(usize, RoomStats)>,
    },
    /// Describe the worker's open connections among `ids` (the others are
    /// left out of the answer).
    Describe {
        ids: Vec<ConnId>,
        reply: mpsc::Sender<Vec<ConnectionInfo>>,
    },
    /// Stop accepting and close every connection.
    Shutdown,
}

/// What the engine knows about one open connection, from
/// [`ServerHandle::describe`]. Nothing of it is stored for the purpose: the
/// worker reads it from the socket, the slot and its room index when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The connection.
    pub id: ConnId,
    /// The peer's address (the proxy's, behind a proxy), if the socket knows it.
    pub peer: Option<std::net::SocketAddr>,
    /// The client's address: the forwarded client's when the peer is a
    /// trusted proxy and the per-IP limit counted it, else the peer's.
    pub client_ip: Option<std::net::IpAddr>,
    /// Time since the connection was accepted (wraps after 49.7 days).
    pub age: Duration,
    /// The rooms it is a member of.
    pub rooms: Vec<String>,
}

/// The sending side of one worker's command channel.
#[derive(Debug)]
pub(crate) struct Link {
    tx: mpsc::Sender<Command>,
    waker: mio::Waker,
    /// Set when a wake-up is already on its way.
    notified: AtomicBool,
}

impl Link {
    pub fn new(tx: mpsc::Sender<Command>, waker: mio::Waker) -> Self {
        Link {
            tx,
            waker,
            notified: AtomicBool::new(false),
        }
    }

    fn send(&self, cmd: Command) -> bool {
        if self.tx.send(cmd).is_err() {
            return false;
        }
        if !self.notified.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
        true
    }

    /// Called by the worker before it drains its channel.
    pub fn clear_notified(&self) {
        self.notified.store(false, Ordering::Release);
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub links: Vec<Link>,
    pub stats: Vec<Arc<WorkerStats>>,
    pub cfg: Arc<Config>,
    pub shutting_down: AtomicBool,
    /// Every worker has exited.
    pub stopped: AtomicBool,
    /// Open connections over all workers (checked against `max_connections` on accept).
    pub open: AtomicUsize,
    /// Open connections per client address (when limited).
    pub ips: super::ip_limit::IpCounts,
    pub started: Instant,
    pub local_addr: std::net::SocketAddr,
    pub admin_addr: Option<std::net::SocketAddr>,
}

/// A cloneable, `Send + Sync` handle to a running server.
///
/// ```no_run
/// use edgews::runtime::{Config, Server};
/// # use edgews::runtime::{Accept, Conn, Handler, Reject, Request};
/// # struct H;
/// # impl Handler for H {
/// #     type Data = ();
/// #     fn on_upgrade(&mut self, _: &Request<'_>) -> Result<Accept<()>, Reject> { Ok(Accept::new(())) }
/// #     fn on_message(&mut self, _: &mut Conn<'_, ()>, _: edgews::protocol::Message<'_>) {}
/// # }
/// let server = Server::bind(Config::default(), |_| H)?;
/// let handle = server.handle();
/// std::thread::spawn(move || {
///     handle.publish("news", edgews::protocol::Message::Text("hello from another thread"));
/// });
/// server.run()?;
/// # Ok::<(), edgews::runtime::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ServerHandle {
    /// Publishes to every member of `room` on every worker (framed once).
    ///
    /// It reaches every worker through the worker's FIFO command channel,
    /// and a worker fans out what waits there before its own publishes, so
    /// publishes sent one after the other (under one lock, or from one
    /// thread) reach every member in that order.
    pub fn publish(&self, room: &str, msg: Message<'_>) {
        self.publish_except(room, msg, None);
    }

    /// Publishes to every member of `room` on every worker but `exclude`
    /// (framed once).
    pub fn publish_except(&self, room: &str, msg: Message<'_>, exclude: Option<ConnId>) {
        let published = Arc::new(Published::new(msg.opcode(), msg.as_bytes()));
        let room: Arc<str> = room.into();
        for link in &self.shared.links {
            link.send(Command::Publish {
                room: room.clone(),
                msg: published.clone(),
                exclude,
            });
        }
    }

    /// Sends the local fan-out's frame on to every other worker.
    pub(crate) fn forward_publish(
        &self,
        from: u16,
        room: &str,
        msg: Arc<Published>,
        exclude: Option<ConnId>,
    ) {
        if self.shared.links.len() < 2 {
            return;
        }
        let room: Arc<str> = room.into();
        for (i, link) in self.shared.links.iter().enumerate() {
            if i != usize::from(from) {
                link.send(Command::Publish {
                    room: room.clone(),
                    msg: msg.clone(),
                    exclude,
                });
            }
        }
    }

    /// Sends a message to one connection. False when its worker is gone; a
    /// stale id is ignored by the worker.
    pub fn send(&self, id: ConnId, msg: Message<'_>) -> bool {
        let frame = server_frame(msg.opcode(), msg.as_bytes());
        self.link(id)
            .is_some_and(|l| l.send(Command::Send { id, frame }))
    }

    /// Hands `payload` to the handler of connection `id`: its own worker
    /// calls [`super::Handler::on_notify`] with it, in that connection's
    /// context, so the application can act on a connection of another worker
    /// through its normal paths (leave a room, update its state, close it).
    ///
    /// Asynchronous: the call returns at once and the handler runs on the
    /// target's worker after the current callback (if called from one).
    /// Commands to one worker are carried out in the order they were sent
    /// from one thread, so a [`ServerHandle::publish`] followed by a
    /// `notify` reaches the target's worker in that order. Returns false when
    /// the target's worker is gone; a stale id (the connection closed
    /// meanwhile) is ignored by the worker.
    pub fn notify(&self, id: ConnId, payload: &[u8]) -> bool {
        let payload = Bytes::copy_from_slice(payload);
        self.link(id)
            .is_some_and(|l| l.send(Command::Notify { id, payload }))
    }

    /// Closes one connection with `code` and `reason`.
    pub fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        self.link(id).is_some_and(|l| {
            l.send(Command::Close {
                id,
                code,
                reason: reason.into(),
            })
        })
    }

    fn link(&self, id: ConnId) -> Option<&Link> {
        self.shared.links.get(usize::from(id.worker))
    }

    /// Members of `room` across all workers.
    ///
    /// Asks every worker and waits for the answers, so call it from a thread
    /// of your own, never from a handler callback (which runs on a worker:
    /// use [`super::Conn::local_room_size`] there). Returns `None` if a worker
    /// did not answer within a second.
    pub fn room_size(&self, room: &str) -> Option<usize> {
        self.room_stats(room).map(|(members, _)| members)
    }

    /// Members of `room` and its counters over all workers: delivered,
    /// dropped and slow-consumer closes are summed; `published` is the most
    /// any worker saw (every worker with members counts each publish once).
    /// Same rules as [`ServerHandle::room_size`].
    pub fn room_stats(&self, room: &str) -> Option<(usize, RoomStats)> {
        let (tx, rx) = mpsc::channel();
        let room: Arc<str> = room.into();
        for link in &self.shared.links {
            link.send(Command::RoomStats {
                room: room.clone(),
                reply: tx.clone(),
            });
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut members = 0;
        let mut total = RoomStats::default();
        for _ in &self.shared.links {
            let left = deadline.saturating_duration_since(Instant::now());
            let (n, s) = rx.recv_timeout(left).ok()?;
            members += n;
            total.published = total.published.max(s.published);
            total.delivered += s.delivered;
            total.dropped += s.dropped;
            total.slow_closes += s.slow_closes;
        }
        Some((members, total))
    }

    /// Describes the open connections among `ids` (peer, client address,
    /// age, rooms); ids of closed connections are left out. Same rules as
    /// [`ServerHandle::room_size`]: it waits for the workers, so never call
    /// it from a handler callback; `None` if a worker did not answer within
    /// a second.
    pub fn describe(&self, ids: &[ConnId]) -> Option<Vec<ConnectionInfo>> {
        let (tx, rx) = mpsc::channel();
        let mut asked = 0;
        for (w, link) in self.shared.links.iter().enumerate() {
            let mine: Vec<ConnId> = ids
                .iter()
                .filter(|id| usize::from(id.worker) == w)
                .copied()
                .collect();
            if !mine.is_empty()
                && link.send(Command::Describe {
                    ids: mine,
                    reply: tx.clone(),
                })
            {
                asked += 1;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut all = Vec::with_capacity(ids.len());
        for _ in 0..asked {
            let left = deadline.saturating_duration_since(Instant::now());
            all.extend(rx.recv_timeout(left).ok()?);
        }
        all.sort_by_key(|c| c.id);
        Some(all)
    }

    /// Starts a graceful shutdown: stop accepting, close every connection
    /// with 1001, wait up to `shutdown_timeout`, then the workers exit.
    pub fn shutdown(&self) {
        if !self.shared.shutting_down.swap(true, Ordering::AcqRel) {
            for link in &self.shared.links {
                link.send(Command::Shutdown);
            }
        }
    }

    /// True once [`ServerHandle::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Acquire)
    }

    /// Open connections over all workers.
    pub fn connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.shared.local_addr
    }

    /// The address of the separate admin listener, if there is one.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.admin_addr
    }

    /// Each worker's counters.
    pub fn worker_stats(&self) -> &[Arc<WorkerStats>] {
        &self.shared.stats
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.shared.cfg
    }

    /// Time since the server started.
    pub fn uptime(&self) -> Duration {
        self.shared.started.elapsed()
    }
}
