//! [`Conn`]: what a callback uses to act on its connection, its rooms and the
//! rest of the worker, and [`Ctx`], the worker state it borrows.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;

use crate::protocol::{server_frame_with, CloseCode, Message, OpCode};
use crate::pubsub::{Published, RoomStats, Rooms};

use super::compression::Compressors;
use super::config::{Config, SlowConsumerPolicy};
use super::connection::{flag, Core, Phase};
use super::handle::{Command, ServerHandle};
use super::handler::ConnId;
use super::outbox::{Outbox, Stashed, DIRECT_MIN_BYTES, STASH_MAX_BYTES};
use super::stats::WorkerStats;
use super::timer::Millis;
use super::transport::Transport;
use super::worker::TICK_MS;

/// What happened to a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendStatus {
    /// Queued; the connection is within its backpressure limit.
    Sent,
    /// Queued, but the connection is now over its backpressure limit:
    /// wait for [`super::Handler::on_drain`] before sending much more.
    Backpressure,
    /// Not sent: the connection is closing, or it was over its hard queue
    /// limit and is being closed with 1008.
    Dropped,
}

/// A close asked for during a callback, carried out right after it.
#[derive(Debug)]
pub(crate) struct CloseRequest {
    pub key: usize,
    pub gen: u32,
    pub code: CloseCode,
    pub reason: Box<str>,
    /// Unsent data is thrown away first (queue overflow, slow consumer).
    pub discard: bool,
}

/// The worker state callbacks can reach (everything but the slab of
/// connections, the handler and the receive buffer).
#[derive(Debug)]
pub(crate) struct Ctx {
    pub index: u16,
    pub cfg: Arc<Config>,
    pub out: Outbox,
    pub rooms: Rooms,
    /// This worker's command channel.
    pub inbox: mpsc::Receiver<Command>,
    /// Commands taken from the channel during a callback (to fan out the
    /// publishes before it), carried out by the worker right after.
    pub deferred: VecDeque<Command>,
    pub closes: Vec<CloseRequest>,
    /// Connections whose handler timer changed during a callback.
    pub rearm: Vec<usize>,
    pub handle: ServerHandle,
    pub stats: Arc<WorkerStats>,
    pub now: Millis,
    pub deflate: Compressors,
}

impl Ctx {
    /// Queues a data or control frame for `key`, enforcing the hard queue limit.
    pub fn send(&mut self, key: usize, gen: u32, opcode: OpCode, payload: &[u8]) -> SendStatus {
        let queued = self.out.queued_bytes(key);
        if let Some(status) = self.over_hard_limit(key, gen, queued) {
            return status;
        }
        let byte = self.out.slot(key).deflate;
        if !opcode.is_control() && self.deflate.compress(key, byte, payload) {
            self.out.frame(key, opcode, true, &self.deflate.scratch);
        } else {
            self.out.frame(key, opcode, false, payload);
        }
        self.after_send(key, opcode, queued + payload.len())
    }

    /// [`Ctx::send`] for the connection whose socket is at hand: a large
    /// uncompressed data frame is written to `io` right away, straight from
    /// `payload` (after anything sent before it), instead of being copied
    /// into the cork first; only what the socket does not take is copied.
    pub fn send_now(
        &mut self,
        key: usize,
        gen: u32,
        opcode: OpCode,
        payload: &[u8],
        io: &mut Transport,
    ) -> SendStatus {
        if payload.len() < DIRECT_MIN_BYTES || opcode.is_control() {
            return self.send(key, gen, opcode, payload);
        }
        let queued = self.out.queued_bytes(key);
        if let Some(status) = self.over_hard_limit(key, gen, queued) {
            return status;
        }
        let byte = self.out.slot(key).deflate;
        if self.deflate.compress(key, byte, payload) {
            self.out.frame(key, opcode, true, &self.deflate.scratch);
            return self.after_send(key, opcode, queued + payload.len());
        }
        self.out.frame_now(key, opcode, payload, io);
        let queued = self.out.queued_bytes(key);
        self.after_send(key, opcode, queued)
    }

    /// Queues an already framed message (from another thread) for `key`.
    pub fn send_framed(&mut self, key: usize, gen: u32, frame: Bytes) -> SendStatus {
        let queued = self.out.queued_bytes(key);
        if let Some(status) = self.over_hard_limit(key, gen, queued) {
            return status;
        }
        let len = frame.len();
        let idx = self.out.share(frame);
        self.out.shared(key, idx);
        self.after_send(key, OpCode::Binary, queued + len)
    }

    fn over_hard_limit(&mut self, key: usize, gen: u32, queued: usize) -> Option<SendStatus> {
        if queued <= self.cfg.max_queued_bytes {
            return None;
        }
        self.stats.queue_limit_closes.inc();
        self.closes.push(CloseRequest {
            key,
            gen,
            code: CloseCode::POLICY_VIOLATION,
            reason: "send queue limit exceeded".into(),
            discard: true,
        });
        Some(SendStatus::Dropped)
    }

    fn after_send(&mut self, key: usize, opcode: OpCode, queued: usize) -> SendStatus {
        if !opcode.is_control() {
            self.stats.messages_out.inc();
        }
        if queued > self.cfg.backpressure_bytes {
            self.out.slot_mut(key).want_drain = true;
            SendStatus::Backpressure
        } else {
            SendStatus::Sent
        }
    }

    /// Fans out the publishes waiting in this worker's channel (keeping the
    /// other commands for the worker), so that a publish made now is
    /// delivered here after every publish sent here before it.
    pub fn drain_publishes(&mut self) {
        while let Ok(cmd) = self.inbox.try_recv() {
            match cmd {
                Command::Publish { room, msg, exclude } => {
                    let exclude = exclude
                        .filter(|id| id.worker == self.index)
                        .map(|id| id.key as usize);
                    self.fanout(&room, &msg, exclude);
                }
                other => self.deferred.push_back(other),
            }
        }
    }

    /// Queues a published message to this worker's members of `room`, except
    /// `exclude`, applying the slow-consumer policy. Each form of the message
    /// (plain, compressed per window size) is stored once and shared.
    pub fn fanout(&mut self, room: &str, msg: &Published, exclude: Option<usize>) {
        let Ctx {
            rooms,
            out,
            closes,
            cfg,
            stats,
            deflate,
            ..
        } = self;
        let Some(room) = rooms.get_mut(room) else {
            return;
        };
        // Each form of the message stored once: [0] plain, [1 + bits - 9]
        // compressed with a window of `bits`.
        let mut stored = [Stored::Unset; 8];
        let (mut delivered, mut dropped, mut closed) = (0u64, 0u64, 0u64);
        for &m in room.members() {
            let m = m as usize;
            if Some(m) == exclude {
                continue;
            }
            if out.queued_bytes(m) > cfg.backpressure_bytes {
                match cfg.slow_consumer {
                    SlowConsumerPolicy::Drop => {
                        out.slot_mut(m).dropped += 1;
                        dropped += 1;
                    }
                    SlowConsumerPolicy::Close => {
                        closes.push(CloseRequest {
                            key: m,
                            gen: out.slot(m).gen,
                            code: CloseCode::POLICY_VIOLATION,
                            reason: "slow consumer".into(),
                            discard: true,
                        });
                        closed += 1;
                    }
                }
                continue;
            }
            delivered += 1;
            let byte = out.slot(m).deflate;
            if Compressors::is_dedicated(byte) {
                // Its own compressor: the peer's window holds this connection's history.
                if deflate.compress(m, byte, msg.payload()) {
                    out.frame(m, msg.opcode, true, &deflate.scratch);
                    continue;
                }
            } else if byte != 0 {
                let at = 1 + usize::from(byte.clamp(9, 15) - 9);
                if stored[at] == Stored::Unset {
                    let frame = if byte >= 15 {
                        msg.deflated
                            .get_or_init(|| {
                                deflate
                                    .compress_shared(15, msg.payload())
                                    .then(|| server_frame_with(msg.opcode, true, &deflate.scratch))
                            })
                            .clone()
                    } else {
                        deflate
                            .compress_shared(byte, msg.payload())
                            .then(|| server_frame_with(msg.opcode, true, &deflate.scratch))
                    };
                    stored[at] = match frame {
                        Some(f) => Stored::new(out, &f),
                        None => Stored::Plain, // under the threshold: send it plain
                    };
                }
                if stored[at] != Stored::Plain {
                    stored[at].queue(out, m);
                    continue;
                }
            }
            if stored[0] == Stored::Unset {
                stored[0] = Stored::new(out, &msg.frame);
            }
            stored[0].queue(out, m);
        }
        room.stats.published += 1;
        room.stats.delivered += delivered;
        room.stats.dropped += dropped;
        room.stats.slow_closes += closed;
        stats.messages_out.add(delivered);
        stats.slow_consumer_drops.add(dropped);
        stats.slow_consumer_closes.add(closed);
    }
}

/// Where one form of a broadcast frame is kept for this turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    Unset,
    /// Small: copied once into the cork, so a member's consecutive frames merge.
    Stashed(Stashed),
    /// Large: shared by reference.
    Shared(u32),
    /// This compressed form is not used (message under the threshold).
    Plain,
}

impl Stored {
    fn new(out: &mut Outbox, frame: &Bytes) -> Stored {
        if frame.len() <= STASH_MAX_BYTES {
            Stored::Stashed(out.stash(frame))
        } else {
            Stored::Shared(out.share(frame.clone()))
        }
    }

    fn queue(self, out: &mut Outbox, key: usize) {
        match self {
            Stored::Stashed(s) => out.stashed(key, s),
            Stored::Shared(i) => out.shared(key, i),
            Stored::Unset | Stored::Plain => unreachable!("queued a form that was not stored"),
        }
    }
}

/// A connection, as seen from inside a [`super::Handler`] callback.
///
/// Sends are batched: everything sent during one turn of the event loop goes
/// out in one write per connection at the end of the turn.
#[derive(Debug)]
pub struct Conn<'a, D> {
    pub(crate) key: usize,
    pub(crate) core: &'a mut Core,
    /// This connection's socket (large sends are written to it at once).
    pub(crate) io: &'a mut Transport,
    pub(crate) data: &'a mut D,
    pub(crate) ctx: &'a mut Ctx,
}

impl<D> Conn<'_, D> {
    /// This connection's server-wide id (for [`ServerHandle::send`] and [`Conn::send_to`]).
    pub fn id(&self) -> ConnId {
        ConnId {
            worker: self.ctx.index,
            key: self.key as u32,
            gen: self.core.gen,
        }
    }

    /// The data the handler attached in `on_upgrade`.
    pub fn data(&self) -> &D {
        self.data
    }

    /// The data the handler attached in `on_upgrade`, mutably.
    pub fn data_mut(&mut self) -> &mut D {
        self.data
    }

    /// True until the connection starts closing; sends are ignored after that.
    pub fn is_open(&self) -> bool {
        self.core.phase == Phase::Open
            && !self.core.has(flag::CLOSE_REQUESTED | flag::CLOSE_NOTIFIED)
    }

    /// Sends a text or binary message.
    pub fn send(&mut self, msg: Message<'_>) -> SendStatus {
        self.send_op(msg.opcode(), msg.as_bytes())
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.send_op(OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> SendStatus {
        self.send_op(OpCode::Binary, data)
    }

    /// Sends a ping (payload cut to 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> SendStatus {
        self.send_op(OpCode::Ping, &payload[..payload.len().min(125)])
    }

    fn send_op(&mut self, opcode: OpCode, payload: &[u8]) -> SendStatus {
        if !self.is_open() {
            return SendStatus::Dropped;
        }
        self.ctx
            .send_now(self.key, self.core.gen, opcode, payload, self.io)
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123 bytes).
    /// [`super::Handler::on_close`] follows right after the current callback.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        if !self.is_open() {
            return;
        }
        self.core.set(flag::CLOSE_REQUESTED);
        self.ctx.closes.push(CloseRequest {
            key: self.key,
            gen: self.core.gen,
            code,
            reason: reason.into(),
            discard: false,
        });
    }

    /// Calls [`super::Handler::on_timer`] for this connection once `after`
    /// has passed (at 100 ms resolution, never early), replacing the timer
    /// set before, if any. One timer per connection: keep the earliest of
    /// your deadlines here (an auth timeout, a token's expiry, ...).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use edgews::runtime::{Accept, Conn, Handler, Reject, Request};
    /// # use edgews::protocol::{CloseCode, Message};
    /// struct Login;
    /// impl Handler for Login {
    ///     type Data = bool; // authenticated
    /// #   fn on_upgrade(&mut self, _: &Request<'_>) -> Result<Accept<bool>, Reject> { Ok(Accept::new(false)) }
    ///     fn on_open(&mut self, conn: &mut Conn<'_, bool>) {
    ///         conn.set_timer(Duration::from_secs(5));
    ///     }
    ///     fn on_message(&mut self, conn: &mut Conn<'_, bool>, msg: Message<'_>) {
    ///         if msg.as_bytes() == b"let me in" {
    ///             *conn.data_mut() = true;
    ///             conn.cancel_timer();
    ///         }
    ///     }
    ///     fn on_timer(&mut self, conn: &mut Conn<'_, bool>) {
    ///         conn.close(CloseCode::new(4001), "authentication timeout");
    ///     }
    /// }
    /// ```
    pub fn set_timer(&mut self, after: Duration) {
        let due = (self.ctx.now + after.as_millis() as u64).div_ceil(TICK_MS);
        self.core.alarm = u32::try_from(due).unwrap_or(u32::MAX).max(1);
        self.ctx.rearm.push(self.key);
    }

    /// Cancels the timer set by [`Conn::set_timer`].
    pub fn cancel_timer(&mut self) {
        self.core.alarm = 0;
    }

    /// Bytes queued for this connection and not yet taken by the socket.
    pub fn buffered_bytes(&self) -> usize {
        self.ctx.out.queued_bytes(self.key)
    }

    /// Room messages dropped for this connection because it read too slowly.
    pub fn dropped_messages(&self) -> u32 {
        self.ctx.out.slot(self.key).dropped
    }

    /// Joins `room`; false when already a member.
    pub fn subscribe(&mut self, room: &str) -> bool {
        if !self.is_open() {
            return false;
        }
        let joined = self.ctx.rooms.join(self.key as u32, room);
        self.update_room_gauges();
        joined
    }

    /// Joins `room` after fanning out every publish already sent to this
    /// worker: a publish sent (from any worker or thread) before this call
    /// does not reach this connection, one sent after it does, in order.
    ///
    /// With an application lock per room held across [number a message,
    /// publish it] and across [read the room's latest number, call this,
    /// send the connection what it missed from a history], the connection
    /// gets exactly the messages numbered above the one it was told, after
    /// what it missed, without a gap or a duplicate. (A plain
    /// [`Conn::subscribe`] may still deliver publishes that were on their
    /// way to this worker when it was called.) Costs nothing per
    /// connection; returns false when already a member or closing.
    pub fn subscribe_in_order(&mut self, room: &str) -> bool {
        if !self.is_open() {
            return false;
        }
        self.ctx.drain_publishes();
        self.subscribe(room)
    }

    /// Leaves `room`; false when not a member.
    pub fn unsubscribe(&mut self, room: &str) -> bool {
        let left = self.ctx.rooms.leave(self.key as u32, room);
        self.update_room_gauges();
        left
    }

    fn update_room_gauges(&self) {
        self.ctx.stats.rooms.set(self.ctx.rooms.len() as u64);
        self.ctx
            .stats
            .subscriptions
            .set(self.ctx.rooms.subscriptions() as u64);
    }

    /// The rooms this connection is in (also during
    /// [`super::Handler::on_close`]: they are left right after it).
    pub fn rooms(&self) -> impl Iterator<Item = &str> + '_ {
        self.ctx.rooms.rooms_of(self.key as u32)
    }

    /// True when this connection is a member of `room` (O(1)).
    pub fn is_member(&self, room: &str) -> bool {
        self.ctx.rooms.is_member(self.key as u32, room)
    }

    /// Publishes to every member of `room` on every worker, this connection
    /// included if it is a member and still open. The message is framed once.
    pub fn publish(&mut self, room: &str, msg: Message<'_>) {
        let me = (!self.is_open()).then(|| self.id());
        self.publish_inner(room, msg, me);
    }

    /// Publishes to every member of `room` except this connection.
    pub fn publish_others(&mut self, room: &str, msg: Message<'_>) {
        let me = self.id();
        self.publish_inner(room, msg, Some(me));
    }

    /// Fans out here, then forwards to the other workers. Publishes that
    /// other workers sent here first are fanned out before this one, so
    /// every worker delivers publishes in the order they were sent (for a
    /// room numbered under one application lock: in number order).
    fn publish_inner(&mut self, room: &str, msg: Message<'_>, exclude: Option<ConnId>) {
        let msg = Arc::new(Published::new(msg.opcode(), msg.as_bytes()));
        self.ctx.stats.publishes.inc();
        self.ctx.drain_publishes();
        self.ctx
            .fanout(room, &msg, exclude.map(|id| id.key as usize));
        self.ctx
            .handle
            .forward_publish(self.ctx.index, room, msg, exclude);
    }

    /// Sends to any connection of the server by id. Returns false when the id
    /// is stale (that connection is gone or closing).
    pub fn send_to(&mut self, id: ConnId, msg: Message<'_>) -> bool {
        if id.worker != self.ctx.index {
            return self.ctx.handle.send(id, msg);
        }
        let key = id.key as usize;
        if key == self.key {
            return id.gen == self.core.gen && self.send(msg) != SendStatus::Dropped;
        }
        if !self.ctx.out.is_live(key, id.gen) {
            return false;
        }
        self.ctx.send(key, id.gen, msg.opcode(), msg.as_bytes()) != SendStatus::Dropped
    }

    /// Hands `payload` to [`super::Handler::on_notify`] for connection `id`
    /// (on any worker, this one and this connection included), after the
    /// current callback. Same as [`ServerHandle::notify`].
    pub fn notify(&self, id: ConnId, payload: &[u8]) -> bool {
        self.ctx.handle.notify(id, payload)
    }

    /// Members of `room` on this connection's worker.
    pub fn local_room_size(&self, room: &str) -> usize {
        self.ctx.rooms.get(room).map_or(0, |r| r.members().len())
    }

    /// Counters of `room` on this connection's worker.
    pub fn local_room_stats(&self, room: &str) -> Option<RoomStats> {
        self.ctx.rooms.get(room).map(|r| r.stats)
    }

    /// The server handle (cloneable, usable from any thread).
    pub fn handle(&self) -> &ServerHandle {
        &self.ctx.handle
    }
}
