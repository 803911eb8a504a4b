//! One event loop: its own `mio::Poll`, its own SO_REUSEPORT listener, its own
//! connections. Nothing here is shared with another worker except the
//! command channel.
//!
//! One turn of the loop: wait for events; accept, read and handle every ready
//! connection (reads land in the worker's one receive buffer; messages are
//! handed to the handler straight from it); run the timers; then write, once
//! per connection, everything that was sent during the turn.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::protocol::close::encode_close_payload;
use crate::protocol::deflate::InflateProgress;
use crate::protocol::handshake::{self, header_buf, server, HandshakeError};
use crate::protocol::{
    CloseCode, Decoder, DecoderConfig, Event, Input, Message, OpCode, Parse, ProtocolError,
};

use super::compression::Compressors;
use super::conn::{CloseRequest, Conn, Ctx};
use super::connection::{
    flag, timer_mark, Connection, Core, Phase, MAX_TIMER_AHEAD_TICKS, NO_TIMER,
};
use super::handle::{Command, Link, ServerHandle};
use super::handler::{CloseInfo, ConnId, Handler, Request};
use super::inflation::{self, Inflation};
use super::memory;
use super::outbox::Outbox;
use super::stats::{close_code_slot, RejectReason};
use super::timer::{Expired, Millis, TimerWheel};
use super::transport::Transport;

pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);

/// Timer resolution and wheel size: 100 ms ticks, 51 s per turn.
pub(crate) const TICK_MS: u64 = 100;
const WHEEL_SLOTS: usize = 512;
/// Most connections accepted per listener event, so a flood of connects
/// cannot starve the connections already open.
const ACCEPTS_PER_EVENT: usize = 256;
/// Most reads from one connection in one loop turn.
const READS_PER_TURN: usize = 4;
/// The rest of a data frame is read straight into its message buffer when at
/// least this much of it is still to come (smaller remainders are read into
/// the receive buffer with whatever follows them).
const DIRECT_READ_MIN_BYTES: usize = 16 << 10;

/// The most connections a worker reserves table space for at start (the
/// tables grow past it if needed).
const MAX_RESERVED_CONNECTIONS: usize = 1 << 21;
/// Freeing a buffer at least this big counts towards handing memory back.
const BIG_FREE_BYTES: usize = 64 << 10;
/// Once this much was freed in big buffers, the worker hands free memory
/// back to the system [`TRIM_DELAY_MS`] after the last big free.
const TRIM_AFTER_FREED_BYTES: usize = 256 << 10;
const TRIM_DELAY_MS: Millis = 500;
/// Memory is also handed back after this many new connections (once they
/// stop coming for [`TRIM_DELAY_MS`]).
const TRIM_AFTER_OPENED: usize = 1024;

pub(crate) struct Worker<H: Handler> {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Connection<H::Data>>,
    handler: H,
    ctx: Ctx,
    rbuf: Vec<u8>,
    /// Where compressed messages are inflated (one per worker, like `rbuf`).
    inflated: Vec<u8>,
    wheel: TimerWheel,
    started: Instant,
    next_gen: u32,
    expired: Vec<Expired>,
    keys: Vec<usize>,
    /// Connections whose paused input may be read again.
    resume: Vec<usize>,
    /// Request heads that did not arrive in one read, by connection (rare:
    /// kept out of the connection so an idle one stays small).
    partial_heads: HashMap<usize, Vec<u8>>,
    /// The client address each connection is counted under in the per-IP
    /// table, by slab key (only used when `max_connections_per_ip` is set).
    client_ips: Vec<Option<IpAddr>>,
    /// Accepting failed for lack of file descriptors: retry on the next tick.
    accept_retry: bool,
    shutdown_deadline: Option<Millis>,
    /// The most bytes of buffered input (partial messages, inflations in
    /// progress, split request heads) this worker holds.
    budget: usize,
    /// Bytes of buffered input held now.
    buffered: usize,
    /// What each connection's decoder holds, as last counted into `buffered`
    /// (only connections with a partial frame or message have an entry).
    charged: HashMap<usize, usize>,
    /// Compressed messages being inflated a slice per turn, by connection.
    inflating: HashMap<usize, Box<Inflation>>,
    inflating_keys: Vec<usize>,
    /// Bytes freed in big buffers since memory was last handed back.
    freed: usize,
    /// When to hand free memory back to the system.
    trim_at: Option<Millis>,
    /// Connections opened since memory was last handed back: a burst of
    /// them grows the handler's and the rooms' tables, whose old copies are
    /// freed into the heap; once the burst is over they are handed back too.
    opened_since_trim: usize,
}

impl<H: Handler> Worker<H> {
    pub fn new(
        index: u16,
        poll: Poll,
        listener: TcpListener,
        inbox: mpsc::Receiver<Command>,
        handler: H,
        handle: ServerHandle,
    ) -> io::Result<Self> {
        let mut listener = listener;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let cfg = handle.shared.cfg.clone();
        let stats = handle.shared.stats[usize::from(index)].clone();
        let cfg_deflate = (cfg.compression, cfg.compression_threshold_bytes);
        // Address space for every connection this worker may hold, reserved
        // up front: large allocations are mapped lazily, so untouched capacity
        // costs no memory, and the tables never grow by copying (no latency
        // spike at each doubling, no freed old copy left resident).
        let capacity = cfg.max_connections.min(MAX_RESERVED_CONNECTIONS);
        let budget = cfg.buffered_input_budget();
        Ok(Worker {
            poll,
            listener: Some(listener),
            conns: Slab::with_capacity(capacity),
            handler,
            rbuf: vec![0; cfg.receive_buffer_bytes],
            inflated: Vec::new(),
            ctx: Ctx {
                index,
                cfg,
                out: Outbox::with_capacity(capacity),
                rooms: Default::default(),
                inbox,
                deferred: Default::default(),
                closes: Vec::new(),
                rearm: Vec::new(),
                handle,
                stats,
                now: 0,
                deflate: Compressors::new(cfg_deflate.0, cfg_deflate.1),
            },
            wheel: TimerWheel::new(TICK_MS, WHEEL_SLOTS, 0),
            started: Instant::now(),
            next_gen: 1,
            expired: Vec::new(),
            keys: Vec::new(),
            resume: Vec::new(),
            partial_heads: HashMap::new(),
            client_ips: Vec::new(),
            accept_retry: false,
            shutdown_deadline: None,
            budget,
            buffered: 0,
            charged: HashMap::new(),
            inflating: HashMap::new(),
            inflating_keys: Vec::new(),
            freed: 0,
            trim_at: None,
            opened_since_trim: 0,
        })
    }

    fn link(&self) -> &Link {
        &self.ctx.handle.shared.links[usize::from(self.ctx.index)]
    }

    /// Runs the loop until shutdown completes.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        tracing::debug!(worker = self.ctx.index, "worker started");
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(worker = self.ctx.index, error = %e, "poll failed; worker stops");
                break;
            }
            self.ctx.now = self.started.elapsed().as_millis() as Millis;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => self.commands(),
                    Token(key) => {
                        let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                        if ev.is_writable() {
                            self.on_writable(key);
                        }
                        if readable {
                            self.on_readable(key, ev.is_read_closed());
                        }
                    }
                }
            }
            // Commands a callback set aside while fanning out publishes
            // (their wake-up is normally still pending; never wait for it).
            if !self.ctx.deferred.is_empty() {
                self.commands();
            }
            self.inflations();
            self.timers();
            self.flush();
            self.resume_reads();
            self.hand_back_memory();
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || self.ctx.now >= deadline {
                    break;
                }
            }
        }
        let left = self.conns.len();
        for key in self.conns.iter().map(|(k, _)| k).collect::<Vec<_>>() {
            self.drop_conn(key);
        }
        tracing::debug!(worker = self.ctx.index, dropped = left, "worker stopped");
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.ctx.out.has_batch()
            || !self.ctx.closes.is_empty()
            || !self.resume.is_empty()
            || !self.inflating.is_empty()
        {
            return Some(Duration::ZERO);
        }
        let mut t = self.wheel.timeout(self.ctx.now);
        if let Some(at) = self.trim_at {
            let left = Duration::from_millis(at.saturating_sub(self.ctx.now));
            t = Some(t.map_or(left, |t| t.min(left)));
        }
        if self.accept_retry || self.shutdown_deadline.is_some() {
            let tick = Duration::from_millis(TICK_MS);
            t = Some(t.map_or(tick, |t| t.min(tick)));
        }
        t
    }

    // ----- accepting ---------------------------------------------------------

    fn accept(&mut self) {
        self.accept_retry = false;
        for _ in 0..ACCEPTS_PER_EVENT {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.add_connection(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Typically EMFILE: leave the rest in the backlog and retry on the next tick.
                    tracing::warn!(worker = self.ctx.index, error = %e, "accept failed");
                    self.accept_retry = true;
                    return;
                }
            }
        }
        // More may be waiting; the listener is edge-triggered, so come back soon.
        self.accept_retry = true;
    }

    fn add_connection(&mut self, mut stream: mio::net::TcpStream, peer: SocketAddr) {
        let shared = &self.ctx.handle.shared;
        // Per-IP limit first: over it, the socket is closed before anything is
        // allocated for it. Trusted proxies are counted per forwarded client
        // at the upgrade instead.
        let mut counted = None;
        if shared.ips.enabled()
            && !super::ip_limit::is_trusted(&shared.cfg.trusted_proxies, peer.ip())
        {
            let ip = super::ip_limit::canonical(peer.ip());
            if !shared.ips.acquire(ip) {
                self.ctx.stats.rejected[RejectReason::IpLimit as usize].inc();
                return;
            }
            counted = Some(ip);
        }
        let release = |shared: &super::handle::Shared| {
            if let Some(ip) = counted {
                shared.ips.release(ip);
            }
        };
        if shared.open.fetch_add(1, Ordering::Relaxed) >= self.ctx.cfg.max_connections {
            shared.open.fetch_sub(1, Ordering::Relaxed);
            release(shared);
            self.ctx.stats.rejected[RejectReason::ConnectionLimit as usize].inc();
            let mut resp = Vec::new();
            handshake::write_http_response(
                &mut resp,
                503,
                "text/plain; charset=utf-8",
                &[("Retry-After", "5")],
                b"connection limit reached\n",
            );
            // Best effort: the socket is fresh, so its buffer has room.
            let _ = io::Write::write(&mut stream, &resp);
            return;
        }
        let _ = stream.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(error = %e, "cannot register connection");
            shared.open.fetch_sub(1, Ordering::Relaxed);
            release(shared);
            return;
        }
        let io = match Transport::new(stream, self.ctx.cfg.tls.as_ref()) {
            Ok(io) => io,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a TLS session");
                shared.open.fetch_sub(1, Ordering::Relaxed);
                release(shared);
                return;
            }
        };
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let now = self.ctx.now;
        entry.insert(Connection {
            io,
            decoder: Decoder::new(),
            core: Core {
                gen,
                stamp: now as u32,
                opened: now as u32,
                alarm: 0,
                timer_tick: NO_TIMER,
                phase: Phase::Handshake,
                flags: 0,
            },
            data: None,
        });
        self.ctx.out.open(key, gen);
        self.set_client_ip(key, counted);
        self.opened_since_trim += 1;
        if self.opened_since_trim >= TRIM_AFTER_OPENED {
            // Pushed back while the burst goes on: one trim after it.
            self.trim_at = Some(self.ctx.now + TRIM_DELAY_MS);
        }
        self.ctx.stats.connections_accepted.inc();
        self.ctx.stats.connections_open.set(self.conns.len() as u64);
        self.arm_timer(key);
    }

    // ----- commands from other threads ----------------------------------------

    /// Carries out the commands a callback set aside, then drains the
    /// command channel. `mpsc` is one FIFO queue per worker: commands sent
    /// one after the other (by any threads, ordered by a lock or by being on
    /// one thread) are taken in that order. Room history relies on it: a
    /// room's messages are numbered and sent to every worker's channel under
    /// one lock, and a worker that publishes or joins first fans out what is
    /// waiting in its channel ([`Ctx::drain_publishes`]), so every worker
    /// fans them out in the order of their numbers.
    fn commands(&mut self) {
        self.link().clear_notified();
        while let Some(cmd) = self
            .ctx
            .deferred
            .pop_front()
            .or_else(|| self.ctx.inbox.try_recv().ok())
        {
            match cmd {
                Command::Publish { room, msg, exclude } => {
                    let exclude = exclude
                        .filter(|id| id.worker == self.ctx.index)
                        .map(|id| id.key as usize);
                    self.ctx.fanout(&room, &msg, exclude);
                }
                Command::Send { id, frame } => {
                    if let Some(key) = self.live_open(id) {
                        self.ctx.send_framed(key, id.gen, frame);
                    }
                }
                Command::Notify { id, payload } => {
                    if let Some(key) = self.live_open(id) {
                        let closing = self.conns[key].core.has(flag::CLOSE_REQUESTED);
                        if !closing {
                            self.with_conn(key, |h, c| h.on_notify(c, &payload));
                        }
                    }
                }
                Command::Close { id, code, reason } => {
                    if let Some(key) = self.live_open(id) {
                        self.ctx.closes.push(CloseRequest {
                            key,
                            gen: id.gen,
                            code,
                            reason,
                            discard: false,
                        });
                    }
                }
                Command::RoomStats { room, reply } => {
                    let answer = self
                        .ctx
                        .rooms
                        .get(&room)
                        .map_or((0, Default::default()), |r| (r.members().len(), r.stats));
                    let _ = reply.send(answer);
                }
                Command::Describe { ids, reply } => {
                    let _ = reply.send(self.describe(&ids));
                }
                Command::Shutdown => self.begin_shutdown(),
            }
            self.settle();
        }
    }

    /// The slab key of `id` if it names an open connection of this worker.
    fn live_open(&self, id: ConnId) -> Option<usize> {
        let key = id.key as usize;
        let conn = self.conns.get(key)?;
        (id.worker == self.ctx.index && conn.core.gen == id.gen && conn.core.phase == Phase::Open)
            .then_some(key)
    }

    /// What [`super::handle::ConnectionInfo`] says of the open connections among `ids`.
    fn describe(&self, ids: &[ConnId]) -> Vec<super::handle::ConnectionInfo> {
        ids.iter()
            .filter_map(|&id| {
                let key = self.live_open(id)?;
                let conn = &self.conns[key];
                let peer = conn.io.peer_addr();
                let forwarded = self.client_ips.get(key).copied().flatten();
                let age = (self.ctx.now as u32).wrapping_sub(conn.core.opened);
                Some(super::handle::ConnectionInfo {
                    id,
                    peer,
                    client_ip: forwarded.or(peer.map(|p| p.ip())),
                    age: Duration::from_millis(u64::from(age)),
                    rooms: self
                        .ctx
                        .rooms
                        .rooms_of(key as u32)
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect()
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.shutdown_deadline =
            Some(self.ctx.now + self.ctx.cfg.shutdown_timeout.as_millis() as Millis);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            match self.conns[key].core.phase {
                Phase::Handshake => self.drop_conn(key),
                Phase::Open => self.start_close(
                    key,
                    CloseCode::GOING_AWAY,
                    "server shutting down",
                    false,
                    false,
                ),
                Phase::Closing | Phase::Draining => {}
            }
        }
        tracing::info!(
            worker = self.ctx.index,
            open = self.conns.len(),
            "shutting down"
        );
    }

    // ----- reading -----------------------------------------------------------

    /// Reads and handles what the socket has, within two bounds: at most
    /// [`READS_PER_TURN`] reads per turn (the rest waits for the next turn, so
    /// one fast sender cannot starve the other connections), and no more reads
    /// once the connection's unsent output passes the backpressure limit (its
    /// input is paused until the peer reads, so TCP pushes back on it).
    fn on_readable(&mut self, key: usize, read_closed: bool) {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        let limit = self.ctx.cfg.backpressure_bytes;
        let mut reads = 0;
        while let Some(conn) = self.conns.get_mut(key) {
            if conn.core.has(flag::READ_PAUSED)
                || (!self.inflating.is_empty() && self.inflating.contains_key(&key))
            {
                // (A message being inflated over several turns also pauses input.)
                conn.core.set(flag::READ_PENDING);
                break;
            }
            if reads == READS_PER_TURN {
                // Edge-triggered: no new event will come for what is left, so remember it.
                conn.core.set(flag::READ_PENDING);
                self.resume.push(key);
                break;
            }
            conn.core.clear(flag::READ_PENDING);
            // The rest of a large frame is read straight into its message
            // buffer (no copy from `rbuf`); everything else lands in `rbuf`.
            let direct = match conn.core.phase {
                Phase::Open => true,
                Phase::Closing => !conn.core.has(flag::DISCARD_INPUT),
                Phase::Handshake | Phase::Draining => false,
            };
            let room = direct
                .then(|| {
                    let dcfg = self.decoder_config(key);
                    let conn = &mut self.conns[key];
                    let room =
                        conn.decoder
                            .payload_room(DIRECT_READ_MIN_BYTES, rbuf.len(), &dcfg)?;
                    let len = room.len();
                    conn.io.read_uninit(room).map(|r| (r, len))
                })
                .flatten();
            let conn = &mut self.conns[key];
            let (result, room) = match room {
                Some((result, len)) => (result, Some(len)),
                None => (conn.io.read(&mut rbuf), None),
            };
            match result {
                Ok(0) => {
                    self.on_eof(key);
                    break;
                }
                Ok(n) if room.is_some() => {
                    reads += 1;
                    self.ctx.stats.bytes_in.add(n as u64);
                    // SAFETY: recv wrote these n bytes (at most the room's
                    // length) into the room the decoder just gave, and nothing
                    // else touched the decoder since.
                    let filled = unsafe { self.conns[key].decoder.payload_filled(n) };
                    match filled {
                        Ok(()) => self.input(key, &mut []),
                        Err(e) => {
                            self.fail(key, &e);
                            break;
                        }
                    }
                    let Some(conn) = self.conns.get_mut(key) else {
                        break;
                    };
                    if conn.core.phase == Phase::Open && self.ctx.out.queued_bytes(key) > limit {
                        conn.core.set(flag::READ_PAUSED | flag::READ_PENDING);
                        break;
                    }
                    if room.is_some_and(|len| n < len) && !read_closed {
                        break;
                    }
                }
                Ok(n) => {
                    reads += 1;
                    self.ctx.stats.bytes_in.add(n as u64);
                    self.input(key, &mut rbuf[..n]);
                    let Some(conn) = self.conns.get_mut(key) else {
                        break;
                    };
                    if conn.core.phase == Phase::Open && self.ctx.out.queued_bytes(key) > limit {
                        conn.core.set(flag::READ_PAUSED | flag::READ_PENDING);
                        break;
                    }
                    // A short read emptied the socket buffer: new data brings a new
                    // edge. Only a pending EOF must be read now.
                    if n < rbuf.len() && !read_closed {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.lost(key);
                    break;
                }
            }
        }
        self.rbuf = rbuf;
        // The replies this connection's input produced go out now rather than
        // at the end of the turn: with many ready sockets, waiting for every
        // other read first would add a whole turn to each reply's latency.
        // Output for other connections (fan-out) still waits for the end of
        // the turn, so it is coalesced into one write per connection.
        self.flush_one(key);
    }

    /// Writes `key`'s batch now.
    fn flush_one(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if self.ctx.out.has_pending(key) {
            match self.ctx.out.write_batch(key, &mut conn.io) {
                Ok(_) => self.after_write(key),
                Err(_) => self.lost(key),
            }
        }
    }

    fn input(&mut self, key: usize, bytes: &mut [u8]) {
        let core = &mut self.conns[key].core;
        match core.phase {
            Phase::Handshake => self.handshake_input(key, bytes),
            Phase::Open => {
                core.touch(self.ctx.now);
                core.clear(flag::PINGED);
                self.frames_input(key, bytes);
            }
            Phase::Closing if !core.has(flag::DISCARD_INPUT) => self.frames_input(key, bytes),
            Phase::Closing | Phase::Draining => {}
        }
    }

    fn on_eof(&mut self, key: usize) {
        if self.conns[key].core.phase == Phase::Open {
            self.leave_open(key, CloseCode::ABNORMAL, "connection dropped", true);
        }
        self.drop_conn(key);
    }

    /// The socket failed: drop it, telling the handler if it was open.
    fn lost(&mut self, key: usize) {
        self.on_eof(key);
    }

    // ----- handshake ---------------------------------------------------------

    fn handshake_input(&mut self, key: usize, bytes: &mut [u8]) {
        let mut held = self.partial_heads.remove(&key).unwrap_or_default();
        self.uncharge(held.capacity());
        let buf: &mut [u8] = if held.is_empty() {
            bytes
        } else {
            held.extend_from_slice(bytes);
            &mut held
        };
        let mut headers = header_buf();
        let parsed = server::parse_request(buf, &mut headers, self.ctx.cfg.max_header_bytes);
        let (req, used) = match parsed {
            Ok(Parse::Complete(done)) => done,
            Ok(Parse::Incomplete(_)) => {
                // Keep what came so far (the held buffer itself once there is one).
                if held.is_empty() {
                    held = bytes.to_vec();
                }
                self.buffered += held.capacity();
                self.partial_heads.insert(key, held);
                if self.buffered > self.budget {
                    self.ctx.stats.input_budget_closes.inc();
                    tracing::debug!(
                        worker = self.ctx.index,
                        key,
                        "input budget: request head dropped"
                    );
                    self.drop_conn(key);
                }
                return;
            }
            Err(e) => return self.refuse_handshake(key, &e),
        };
        let kind = match server::classify(&req) {
            Ok(kind) => kind,
            Err(e) => return self.refuse_handshake(key, &e),
        };
        let peer = self.conns[key].io.peer_addr();
        let is_upgrade = matches!(kind, server::RequestKind::Upgrade(_));
        let client = match self.forwarded_client(key, peer, &req, is_upgrade) {
            Ok(client) => client,
            Err(()) => {
                let mut out = Vec::new();
                handshake::write_http_response(
                    &mut out,
                    429,
                    "text/plain; charset=utf-8",
                    &[("Retry-After", "5")],
                    b"too many connections from this address\n",
                );
                self.ctx.stats.rejected[RejectReason::IpLimit as usize].inc();
                self.answer_and_close(key, &out);
                return;
            }
        };
        let request = Request {
            http: &req,
            peer,
            client,
        };
        let upgrade = match kind {
            server::RequestKind::Http => {
                let resp = crate::http::builtin(&request, &self.ctx.handle)
                    .unwrap_or_else(|| self.handler.on_http(&request));
                let mut out = Vec::with_capacity(128 + resp.body.len());
                resp.write_to(&mut out);
                self.ctx.stats.http_requests.inc();
                self.answer_and_close(key, &out);
                return;
            }
            server::RequestKind::Upgrade(up) => up,
        };
        let accept = match self.handler.on_upgrade(&request) {
            Ok(accept) => accept,
            Err(reject) => {
                let mut out = Vec::new();
                reject.response.write_to(&mut out);
                self.ctx.stats.rejected[RejectReason::Handler as usize].inc();
                self.answer_and_close(key, &out);
                return;
            }
        };
        let (deflate, extensions) = self.ctx.deflate.negotiate(key, &req);
        self.ctx.out.slot_mut(key).deflate = deflate;
        let mut resp = Vec::with_capacity(160);
        server::write_accept_response(
            &mut resp,
            upgrade.key,
            accept.protocol.as_deref(),
            extensions.as_deref(),
        );
        self.ctx.out.raw(key, &resp);
        let conn = &mut self.conns[key];
        conn.data = Some(accept.data);
        conn.core.phase = Phase::Open;
        conn.core.touch(self.ctx.now);
        self.ctx.stats.upgrades.inc();
        self.arm_timer(key);
        self.with_conn(key, |h, c| h.on_open(c));
        self.settle();
        // Bytes after the request head already belong to the WebSocket stream.
        if used < buf.len() && self.is_phase(key, Phase::Open) {
            self.frames_input(key, &mut buf[used..]);
        }
    }

    /// The client's address for a request: the peer's, or the forwarded
    /// client's when the peer is a trusted proxy, which is then counted
    /// against the per-IP limit (`Err` when that client is over it).
    fn forwarded_client(
        &mut self,
        key: usize,
        peer: Option<SocketAddr>,
        req: &handshake::Request<'_>,
        upgrade: bool,
    ) -> Result<Option<IpAddr>, ()> {
        let shared = &self.ctx.handle.shared;
        let trusted = &shared.cfg.trusted_proxies;
        let Some(peer) = peer.map(|p| super::ip_limit::canonical(p.ip())) else {
            return Ok(None);
        };
        if !super::ip_limit::is_trusted(trusted, peer) {
            return Ok(Some(peer));
        }
        let Some(client) =
            super::ip_limit::forwarded_client(trusted, req.header_str("x-forwarded-for"))
        else {
            return Ok(Some(peer));
        };
        let counted = self.client_ips.get(key).copied().flatten();
        if shared.ips.enabled() && counted.is_none() && upgrade {
            if !shared.ips.acquire(client) {
                return Err(());
            }
            self.set_client_ip(key, Some(client));
        }
        Ok(Some(client))
    }

    /// Records the address `key` is counted under in the per-IP table.
    fn set_client_ip(&mut self, key: usize, ip: Option<IpAddr>) {
        if !self.ctx.handle.shared.ips.enabled() {
            return;
        }
        if self.client_ips.len() <= key {
            self.client_ips.resize(key + 1, None);
        }
        self.client_ips[key] = ip;
    }

    fn refuse_handshake(&mut self, key: usize, err: &HandshakeError) {
        let reason = RejectReason::from_label(err.reason_label());
        self.ctx.stats.rejected[reason as usize].inc();
        let mut out = Vec::new();
        server::write_error_response(&mut out, err);
        self.answer_and_close(key, &out);
    }

    /// Sends an HTTP response and closes once it is written.
    fn answer_and_close(&mut self, key: usize, response: &[u8]) {
        self.ctx.out.raw(key, response);
        let core = &mut self.conns[key].core;
        core.phase = Phase::Closing;
        core.set(flag::DISCARD_INPUT);
        core.touch(self.ctx.now);
        self.arm_timer(key);
    }

    // ----- frames ------------------------------------------------------------

    fn decoder_config(&self, key: usize) -> DecoderConfig {
        DecoderConfig {
            max_message_bytes: self.ctx.cfg.max_message_bytes,
            allow_rsv1: self.ctx.out.slot(key).deflate != 0,
        }
    }

    /// Decodes `bytes` of an open (or closing) connection, then counts what
    /// its decoder holds against the worker's input budget.
    fn frames_input(&mut self, key: usize, bytes: &mut [u8]) {
        self.decode_frames(key, bytes);
        self.sync_charge(key);
    }

    fn decode_frames(&mut self, key: usize, bytes: &mut [u8]) {
        let dcfg = self.decoder_config(key);
        let mut input = Input::new(bytes);
        loop {
            let Worker {
                conns,
                handler,
                ctx,
                inflated,
                ..
            } = &mut *self;
            let Some(conn) = conns.get_mut(key) else {
                return;
            };
            let Connection {
                decoder,
                core,
                data,
                io,
            } = conn;
            let event = match decoder.decode(&mut input, &dcfg) {
                Ok(Some(ev)) => ev,
                Ok(None) => return,
                Err(e) => {
                    self.fail(key, &e);
                    return;
                }
            };
            let open = core.phase == Phase::Open;
            match event {
                Event::Message(msg) => deliver(handler, key, core, io, data, ctx, open, msg),
                Event::Compressed { binary, payload } => {
                    if !open {
                        // Closing: messages are no longer delivered, so not inflated either.
                        continue;
                    }
                    // RSV1 is refused by the decoder unless deflate was negotiated.
                    let byte = ctx.out.slot(key).deflate;
                    inflated.clear();
                    let limit = ctx.cfg.max_message_bytes;
                    let mut progress = InflateProgress::default();
                    let slice = inflation::SLICE_BYTES;
                    let done = ctx.deflate.inflate_some(
                        key,
                        byte,
                        &mut progress,
                        payload,
                        inflated,
                        limit,
                        slice,
                    );
                    let msg = match done {
                        Ok(true) if binary => Ok(Message::Binary(&inflated[..])),
                        Ok(true) => simdutf8::basic::from_utf8(&inflated[..])
                            .map(Message::Text)
                            .map_err(|_| ProtocolError::invalid_utf8()),
                        Ok(false) => {
                            // Too big for one turn: go on in the next ones, and
                            // keep what follows it for later.
                            let job = Box::new(Inflation {
                                binary,
                                input: payload.to_vec(),
                                progress,
                                out: std::mem::take(inflated),
                                own: ctx.deflate.detach(key, byte),
                                rest: input.remaining().to_vec(),
                                charged: 0,
                            });
                            self.start_inflation(key, job);
                            return;
                        }
                        Err(e) => Err(e),
                    };
                    match msg {
                        Ok(msg) => deliver(handler, key, core, io, data, ctx, open, msg),
                        Err(e) => {
                            self.fail(key, &e);
                            return;
                        }
                    }
                }
                Event::Ping(payload) => {
                    ctx.stats.frame_in(OpCode::Ping);
                    if open {
                        ctx.send(key, core.gen, OpCode::Pong, payload);
                    }
                }
                Event::Pong(_) => ctx.stats.frame_in(OpCode::Pong),
                Event::Close(frame) => {
                    ctx.stats.frame_in(OpCode::Close);
                    ctx.stats.closes_received[close_code_slot(frame.code)].inc();
                    core.set(flag::CLOSE_RECEIVED | flag::DISCARD_INPUT);
                    if open {
                        let (code, reason) = (frame.code, frame.reason.to_owned());
                        self.reply_close(key, code, &reason);
                    } else {
                        // We closed first and this is the answer: shut down once our frame is out.
                        self.after_write(key);
                    }
                    return;
                }
            }
            self.settle();
        }
    }

    /// The peer sent a close frame: answer with the same code, then close.
    fn reply_close(&mut self, key: usize, code: CloseCode, reason: &str) {
        self.queue_close(key, code, "");
        let core = &mut self.conns[key].core;
        core.phase = Phase::Closing;
        core.touch(self.ctx.now);
        self.arm_timer(key);
        self.leave_open(key, code, reason, true);
    }

    /// The peer broke the protocol: close with the matching code, ignore the rest.
    fn fail(&mut self, key: usize, err: &ProtocolError) {
        self.ctx.stats.protocol_errors.inc();
        tracing::debug!(worker = self.ctx.index, key, error = %err, "protocol error");
        if self.conns[key].core.phase == Phase::Open {
            self.start_close(key, err.close_code(), &err.to_string(), false, true);
        } else {
            self.conns[key].core.set(flag::DISCARD_INPUT);
        }
        // Input is discarded from now on: free what was buffered for it.
        self.release_input(key);
    }

    // ----- buffered input: the budget, inflating in slices -------------------

    /// Counts what `key`'s decoder holds now into the worker's buffered
    /// input; a connection whose growth takes the worker past its budget is
    /// closed with 1013.
    fn sync_charge(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let now = conn.decoder.buffered_bytes();
        if now == 0 && self.charged.is_empty() {
            return; // the common case: whole frames in every read
        }
        let old = if now == 0 {
            self.charged.remove(&key).unwrap_or(0)
        } else {
            self.charged.insert(key, now).unwrap_or(0)
        };
        self.buffered = self.buffered + now - old;
        if now > old && self.buffered > self.budget {
            self.over_budget(key);
        } else if old >= now + BIG_FREE_BYTES {
            self.note_freed(old - now);
        }
    }

    fn uncharge(&mut self, bytes: usize) {
        self.buffered -= bytes;
    }

    /// `key`'s input would take the worker past its budget: close it with
    /// 1013 and free what it holds. Other connections are not touched.
    fn over_budget(&mut self, key: usize) {
        self.ctx.stats.input_budget_closes.inc();
        tracing::debug!(
            worker = self.ctx.index,
            key,
            buffered = self.buffered,
            budget = self.budget,
            "input budget exceeded"
        );
        if self.is_phase(key, Phase::Open) {
            self.start_close(
                key,
                CloseCode::TRY_AGAIN_LATER,
                "server input buffers full",
                false,
                true,
            );
            self.release_input(key);
        } else {
            self.drop_conn(key);
        }
    }

    /// Frees everything buffered for `key`'s input (its input is discarded
    /// from now on, or the connection is going away).
    fn release_input(&mut self, key: usize) {
        if let Some(job) = self.inflating.remove(&key) {
            self.uncharge(job.charged);
            self.note_freed(job.charged);
            self.recycle(job.out);
            // Its input was paused for the job: read on (to see the peer's close).
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.core.has(flag::READ_PENDING))
            {
                self.resume.push(key);
            }
        }
        if let Some(c) = self.charged.remove(&key) {
            self.uncharge(c);
            self.note_freed(c);
        }
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.decoder.is_idle() {
                conn.decoder = Decoder::new();
            }
        }
    }

    /// Parks a message that is inflated over the next turns.
    fn start_inflation(&mut self, key: usize, mut job: Box<Inflation>) {
        job.charged = job.bytes();
        self.buffered += job.charged;
        self.inflating.insert(key, job);
        // The decoder's buffer was copied into the job: release it (decoding
        // nothing ends the loan of the last message).
        let dcfg = self.decoder_config(key);
        if let Some(conn) = self.conns.get_mut(key) {
            let _ = conn.decoder.decode(&mut Input::new(&mut []), &dcfg);
        }
        self.sync_charge(key);
        if self.buffered > self.budget {
            self.over_budget(key);
        }
    }

    /// One slice of every message being inflated; finished ones are
    /// delivered and their connection's input resumes.
    fn inflations(&mut self) {
        if self.inflating.is_empty() {
            return;
        }
        let mut keys = std::mem::take(&mut self.inflating_keys);
        keys.extend(self.inflating.keys().copied());
        for &key in &keys {
            let Some(mut job) = self.inflating.remove(&key) else {
                continue;
            };
            self.uncharge(job.charged);
            if !self.is_phase(key, Phase::Open) {
                // Closed meanwhile: the message will not be delivered; what
                // followed it may hold the peer's close frame.
                self.note_freed(job.charged);
                let mut rest = std::mem::take(&mut job.rest);
                self.recycle(job.out);
                if self.conns.contains(key) && !rest.is_empty() {
                    self.input(key, &mut rest);
                }
                if self
                    .conns
                    .get(key)
                    .is_some_and(|c| c.core.has(flag::READ_PENDING))
                {
                    self.resume.push(key);
                }
                continue;
            }
            let byte = self.ctx.out.slot(key).deflate;
            let limit = self.ctx.cfg.max_message_bytes;
            let Inflation {
                input,
                progress,
                out,
                own,
                ..
            } = &mut *job;
            let done = self.ctx.deflate.resume_some(
                key,
                byte,
                own.as_deref_mut(),
                progress,
                input,
                out,
                limit,
                inflation::SLICE_BYTES,
            );
            job.charged = job.bytes();
            self.buffered += job.charged;
            match done {
                Ok(false) if self.buffered > self.budget => {
                    self.inflating.insert(key, job);
                    self.over_budget(key);
                }
                Ok(false) => {
                    self.inflating.insert(key, job);
                }
                Ok(true) => {
                    self.uncharge(job.charged);
                    self.note_freed(job.charged);
                    self.finish_inflation(key, *job);
                }
                Err(e) => {
                    self.uncharge(job.charged);
                    self.note_freed(job.charged);
                    self.recycle(job.out);
                    self.fail(key, &e);
                }
            }
        }
        keys.clear();
        self.inflating_keys = keys;
        self.settle();
    }

    /// Delivers an inflated message, then decodes what followed it.
    fn finish_inflation(&mut self, key: usize, mut job: Inflation) {
        let msg = if job.binary {
            Ok(Message::Binary(&job.out))
        } else {
            simdutf8::basic::from_utf8(&job.out)
                .map(Message::Text)
                .map_err(|_| ProtocolError::invalid_utf8())
        };
        match msg {
            Ok(msg) => {
                let Worker {
                    conns,
                    handler,
                    ctx,
                    ..
                } = &mut *self;
                let Some(conn) = conns.get_mut(key) else {
                    return;
                };
                let Connection { core, data, io, .. } = conn;
                deliver(handler, key, core, io, data, ctx, true, msg);
            }
            Err(e) => {
                self.recycle(job.out);
                return self.fail(key, &e);
            }
        }
        let mut rest = std::mem::take(&mut job.rest);
        self.recycle(job.out);
        self.settle();
        if !rest.is_empty() && self.conns.contains(key) {
            self.input(key, &mut rest);
        }
        // Input paused meanwhile resumes (unless another message took its place).
        let pending = self
            .conns
            .get(key)
            .is_some_and(|c| c.core.has(flag::READ_PENDING) && !c.core.has(flag::READ_PAUSED));
        if pending && !self.inflating.contains_key(&key) {
            self.resume.push(key);
        }
    }

    /// Keeps the output buffer of a finished inflation as the worker's
    /// inflate buffer when it is the larger one: its pages are already
    /// mapped, so the next large message (or bomb) does not page-fault its
    /// way through 16 MiB again. It goes back to the system with the rest
    /// once the worker has been quiet for [`TRIM_DELAY_MS`].
    fn recycle(&mut self, mut out: Vec<u8>) {
        if out.capacity() > self.inflated.capacity() {
            out.clear();
            self.inflated = out;
        }
    }

    /// Notes freed big buffers: memory is handed back [`TRIM_DELAY_MS`]
    /// after the last of them (so a steady stream of large messages reuses
    /// the same memory instead of faulting it in again and again).
    fn note_freed(&mut self, bytes: usize) {
        if bytes < BIG_FREE_BYTES {
            return;
        }
        self.freed += bytes;
        if self.freed >= TRIM_AFTER_FREED_BYTES {
            self.trim_at = Some(self.ctx.now + TRIM_DELAY_MS);
        }
    }

    /// Hands free memory back to the system once it is due (after big
    /// buffers were freed, and when the cork grew in a burst).
    fn hand_back_memory(&mut self) {
        self.ctx
            .stats
            .buffered_input_bytes
            .set(self.buffered as u64);
        let spare = self.ctx.out.spare_bytes() + self.inflated.capacity();
        if spare >= TRIM_AFTER_FREED_BYTES && self.trim_at.is_none() {
            self.trim_at = Some(self.ctx.now + TRIM_DELAY_MS);
        }
        match self.trim_at {
            Some(at) if self.ctx.now >= at => {}
            _ => return,
        }
        self.trim_at = None;
        self.freed = 0;
        self.opened_since_trim = 0;
        self.ctx.out.release_spare();
        self.inflated = Vec::new();
        memory::release_free_memory();
    }

    fn queue_close(&mut self, key: usize, code: CloseCode, reason: &str) {
        let mut payload = [0u8; 125];
        let n = encode_close_payload(code, reason, &mut payload);
        self.ctx.out.frame(key, OpCode::Close, false, &payload[..n]);
        self.ctx.stats.closes_sent[close_code_slot(code)].inc();
    }

    /// Starts a close we decided on: queue the close frame, leave `Open`.
    fn start_close(
        &mut self,
        key: usize,
        code: CloseCode,
        reason: &str,
        discard_data: bool,
        discard_input: bool,
    ) {
        if self.conns[key].core.phase != Phase::Open {
            return;
        }
        if discard_data {
            self.ctx.out.discard_data(key);
        }
        self.queue_close(key, code, reason);
        let core = &mut self.conns[key].core;
        core.phase = Phase::Closing;
        if discard_input {
            core.set(flag::DISCARD_INPUT);
        }
        core.touch(self.ctx.now);
        self.arm_timer(key);
        self.leave_open(key, code, reason, false);
    }

    /// Carries out the closes and timer changes asked for during callbacks.
    fn settle(&mut self) {
        while let Some(key) = self.ctx.rearm.pop() {
            self.arm_timer(key);
        }
        while let Some(req) = self.ctx.closes.pop() {
            let live = self
                .conns
                .get(req.key)
                .is_some_and(|c| c.core.gen == req.gen);
            if live {
                self.start_close(req.key, req.code, &req.reason, req.discard, false);
            }
        }
    }

    /// The connection leaves `Open`: tell the handler (it can still list
    /// the connection's rooms, and nothing it publishes reaches this
    /// connection), then leave its rooms. Runs at most once per connection,
    /// whatever path closes it.
    fn leave_open(&mut self, key: usize, code: CloseCode, reason: &str, by_peer: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.core.has(flag::CLOSE_NOTIFIED) {
            return;
        }
        conn.core.set(flag::CLOSE_NOTIFIED);
        let info = CloseInfo {
            code,
            reason,
            by_peer,
        };
        self.with_conn(key, |h, c| h.on_close(c, info));
        self.ctx.rooms.leave_all(key as u32);
        self.ctx.stats.rooms.set(self.ctx.rooms.len() as u64);
        self.ctx
            .stats
            .subscriptions
            .set(self.ctx.rooms.subscriptions() as u64);
    }

    /// Runs `f` with the handler and a [`Conn`] for `key` (if it has data).
    fn with_conn(&mut self, key: usize, f: impl FnOnce(&mut H, &mut Conn<'_, H::Data>)) {
        let Worker {
            conns,
            handler,
            ctx,
            ..
        } = self;
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let Connection { core, data, io, .. } = conn;
        if let Some(data) = data.as_mut() {
            f(
                handler,
                &mut Conn {
                    key,
                    core,
                    io,
                    data,
                    ctx,
                },
            );
        }
    }

    fn is_phase(&self, key: usize, phase: Phase) -> bool {
        self.conns.get(key).is_some_and(|c| c.core.phase == phase)
    }

    // ----- writing -----------------------------------------------------------

    fn on_writable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.io.flush() {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => return self.lost(key),
        }
        match self.ctx.out.write_queue(key, &mut conn.io) {
            Ok(_) => self.after_write(key),
            Err(_) => self.lost(key),
        }
    }

    /// Writes everything sent during this turn: one write per connection.
    fn flush(&mut self) {
        let mut keys = std::mem::take(&mut self.keys);
        // Callbacks run from here (on_drain, on_close) may send again: a few rounds.
        for _ in 0..4 {
            self.ctx.out.take_batch_keys(&mut keys);
            if keys.is_empty() {
                break;
            }
            for &key in &keys {
                let Some(conn) = self.conns.get_mut(key) else {
                    continue;
                };
                match self.ctx.out.write_batch(key, &mut conn.io) {
                    Ok(_) => self.after_write(key),
                    Err(_) => self.lost(key),
                }
            }
            self.settle();
        }
        self.keys = keys;
        self.ctx.stats.bytes_out.add(self.ctx.out.take_written());
        self.ctx.out.end_iteration();
    }

    /// Bookkeeping after a write attempt: backpressure, drain, close progress.
    fn after_write(&mut self, key: usize) {
        let queued = self.ctx.out.queued_bytes(key);
        let limit = self.ctx.cfg.backpressure_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let idle = self.ctx.out.is_idle(key) && !conn.io.has_buffered_output();
        let core = &mut conn.core;
        match core.phase {
            Phase::Open | Phase::Handshake => {
                if queued > limit {
                    core.set(flag::READ_PAUSED);
                } else if core.has(flag::READ_PAUSED) {
                    core.clear(flag::READ_PAUSED);
                    self.resume.push(key);
                }
                if idle && self.ctx.out.slot(key).want_drain && self.is_phase(key, Phase::Open) {
                    self.ctx.out.slot_mut(key).want_drain = false;
                    self.with_conn(key, |h, c| h.on_drain(c));
                }
            }
            Phase::Closing if idle => {
                // Our close frame (or HTTP answer) is out: no more bytes from us.
                if core.has(flag::CLOSE_RECEIVED) {
                    // Both close frames exchanged: the server closes TCP first
                    // (RFC 6455 §7.1.1). The peer sends nothing after its close.
                    // (TLS: close_notify goes out before the FIN.)
                    if !core.has(flag::WRITE_SHUT) {
                        conn.io.shutdown_write();
                    }
                    self.drop_conn(key);
                    return;
                }
                if !core.has(flag::WRITE_SHUT) {
                    conn.io.shutdown_write();
                    core.set(flag::WRITE_SHUT);
                }
                if core.has(flag::DISCARD_INPUT) {
                    // After a protocol error or an HTTP answer the peer may still be
                    // sending: read and discard until it closes, so the kernel never
                    // answers with a reset that could destroy our last bytes.
                    core.phase = Phase::Draining;
                }
                // Keep reading: the input is scanned for the peer's close, or discarded.
                if core.has(flag::READ_PAUSED) {
                    core.clear(flag::READ_PAUSED);
                    self.resume.push(key);
                }
            }
            Phase::Closing | Phase::Draining => {}
        }
    }

    /// Reads from connections whose input was paused for backpressure and is
    /// allowed again (done here, where the receive buffer is free).
    fn resume_reads(&mut self) {
        // Keys pushed while these run (read cap hit again) wait for the next turn.
        let mut keys = std::mem::take(&mut self.resume);
        for &key in &keys {
            let pending = self
                .conns
                .get(key)
                .is_some_and(|c| c.core.has(flag::READ_PENDING) && !c.core.has(flag::READ_PAUSED));
            if pending {
                self.on_readable(key, true);
            }
        }
        keys.clear();
        if self.resume.is_empty() {
            self.resume = keys;
        }
    }

    // ----- timers ------------------------------------------------------------

    /// The connection's next deadline, from its phase and clock (and, when
    /// open, the handler's timer).
    fn deadline(&self, core: &Core) -> Option<Millis> {
        let cfg = &self.ctx.cfg;
        let start = self.ctx.now.saturating_sub(core.since_stamp(self.ctx.now));
        let ms = |d: Duration| d.as_millis() as Millis;
        let phase = match core.phase {
            Phase::Handshake => Some(start + ms(cfg.handshake_timeout)),
            Phase::Open => match (cfg.ping_interval, cfg.idle_timeout) {
                (Some(ping), _) if !core.has(flag::PINGED) => Some(start + ms(ping)),
                (_, Some(idle)) => Some(start + ms(idle)),
                (Some(ping), None) => Some(start + 2 * ms(ping)),
                (None, None) => None,
            },
            Phase::Closing | Phase::Draining => Some(start + ms(cfg.close_timeout)),
        };
        let alarm = (core.phase == Phase::Open && core.alarm != 0)
            .then(|| Millis::from(core.alarm) * TICK_MS);
        match (phase, alarm) {
            (Some(p), Some(a)) => Some(p.min(a)),
            (p, a) => p.or(a),
        }
    }

    /// Makes sure the wheel will look at `key` no later than its deadline
    /// (or within [`MAX_TIMER_AHEAD_TICKS`], when the deadline is further).
    fn arm_timer(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let Some(deadline) = self.deadline(&conn.core) else {
            return;
        };
        let now_tick = self.ctx.now / TICK_MS;
        let tick = deadline
            .div_ceil(TICK_MS)
            .min(now_tick + MAX_TIMER_AHEAD_TICKS);
        let current = conn.core.timer_tick;
        // Live entries are at most MAX_TIMER_AHEAD_TICKS ahead, so the 16-bit
        // distance from now tells which of the two comes first.
        let ahead = |mark: u16| {
            (u64::from(mark) + u64::from(u16::MAX) - u64::from(timer_mark(now_tick)))
                % u64::from(u16::MAX)
        };
        if current == NO_TIMER || ahead(current) > tick - now_tick.min(tick) {
            let gen = conn.core.gen;
            let t = self.wheel.schedule(key as u32, gen, tick * TICK_MS);
            self.conns[key].core.timer_tick = timer_mark(t);
        }
    }

    fn timers(&mut self) {
        if self.accept_retry && self.listener.is_some() {
            self.accept();
        }
        let mut expired = std::mem::take(&mut self.expired);
        self.wheel.expire(self.ctx.now, &mut expired);
        for e in expired.drain(..) {
            let key = e.key as usize;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.core.gen != e.gen || conn.core.timer_tick != timer_mark(u64::from(e.tick)) {
                continue; // stale entry: the connection was rescheduled
            }
            conn.core.timer_tick = NO_TIMER;
            match self.deadline(&self.conns[key].core) {
                None => {}
                Some(d) if d > self.ctx.now => self.arm_timer(key),
                Some(_) => self.on_timeout(key),
            }
        }
        self.expired = expired;
        self.settle();
    }

    fn on_timeout(&mut self, key: usize) {
        let cfg = self.ctx.cfg.clone();
        let now = self.ctx.now;
        let core = &mut self.conns[key].core;
        if core.phase == Phase::Open && core.alarm != 0 && Millis::from(core.alarm) * TICK_MS <= now
        {
            core.alarm = 0;
            if !core.has(flag::CLOSE_REQUESTED) {
                self.with_conn(key, |h, c| h.on_timer(c));
                self.settle();
            }
            self.arm_timer(key);
            return;
        }
        match core.phase {
            Phase::Handshake => {
                self.ctx.stats.rejected[RejectReason::Timeout as usize].inc();
                self.drop_conn(key);
            }
            Phase::Open if cfg.ping_interval.is_some() && !core.has(flag::PINGED) => {
                core.set(flag::PINGED);
                let gen = core.gen;
                self.ctx.send(key, gen, OpCode::Ping, b"");
                self.ctx.stats.pings_sent.inc();
                self.arm_timer(key);
            }
            Phase::Open => {
                self.ctx.stats.idle_timeouts.inc();
                self.start_close(key, CloseCode::GOING_AWAY, "idle timeout", false, false);
            }
            Phase::Closing | Phase::Draining => self.drop_conn(key),
        }
    }

    // ----- removal -----------------------------------------------------------

    /// Removes the connection and closes its socket.
    fn drop_conn(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        if self.conns[key].core.phase == Phase::Open {
            self.leave_open(
                key,
                CloseCode::ABNORMAL,
                "server dropped the connection",
                false,
            );
        }
        self.release_input(key);
        let conn = self.conns.remove(key);
        if let Some(head) = self.partial_heads.remove(&key) {
            self.uncharge(head.capacity());
        }
        if let Some(ip) = self.client_ips.get_mut(key).and_then(Option::take) {
            self.ctx.handle.shared.ips.release(ip);
        }
        let deflate = self.ctx.out.slot(key).deflate;
        self.ctx.deflate.forget(key, deflate);
        self.ctx.out.forget(key);
        let lifetime = (self.ctx.now as u32).wrapping_sub(conn.core.opened);
        self.ctx.stats.record_duration(u64::from(lifetime));
        self.ctx.stats.connections_open.set(self.conns.len() as u64);
        self.ctx.handle.shared.open.fetch_sub(1, Ordering::Relaxed);
        // Closing the socket removes it from the poller.
        drop(conn);
    }
}

/// Counts a received message and hands it to the handler, unless the
/// connection is no longer open or its handler already asked to close it.
#[inline]
#[allow(clippy::too_many_arguments)] // the connection's fields, borrowed apart from its decoder
fn deliver<H: Handler>(
    handler: &mut H,
    key: usize,
    core: &mut Core,
    io: &mut Transport,
    data: &mut Option<H::Data>,
    ctx: &mut Ctx,
    open: bool,
    msg: Message<'_>,
) {
    ctx.stats.message_in(&msg);
    ctx.stats.message_bytes_in.add(msg.len() as u64);
    if open && !core.has(flag::CLOSE_REQUESTED) {
        let data = data.as_mut().expect("an open connection has data");
        handler.on_message(
            &mut Conn {
                key,
                core,
                io,
                data,
                ctx,
            },
            msg,
        );
    }
}

/// Builds the per-worker handles and runs a worker on the current thread.
pub(crate) fn spawn<H: Handler>(
    index: u16,
    poll: Poll,
    listener: TcpListener,
    inbox: mpsc::Receiver<Command>,
    handler: H,
    handle: ServerHandle,
) -> io::Result<std::thread::JoinHandle<()>> {
    let worker = Worker::new(index, poll, listener, inbox, handler, handle)?;
    std::thread::Builder::new()
        .name(format!("edgews-worker-{index}"))
        .spawn(move || worker.run())
}
