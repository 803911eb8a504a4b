//! The room server's engine [`Handler`]: one per worker.
//!
//! A client message goes through a short chain, top to bottom:
//! parse (simd-json) → rate limit → authentication gate → dispatch. The
//! room-message path takes no lock: membership is the connection's own
//! session, and the event is serialized once and handed to the engine's
//! fan-out, which frames it once for every member on every worker.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::Message;
use crate::runtime::{Accept, CloseInfo, Conn, Handler, HttpResponse, Reject, Request};

use super::auth::unix_ms;
use super::auth::{unix_now, AuthError, Claims};
use super::codes::{
    ErrorCode, CLOSE_RATE_LIMIT, CLOSE_TOKEN_EXPIRED, CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_UNAUTHORIZED,
};
use super::history::{publish_message_then, Data, Origin, Position};
use super::limits::{origin_allowed, TokenBucket};
use super::server::Shared;
use super::session::Session;
use super::status::{websocket_status, AuthFailure, WorkerMetrics};
use super::wire::clip_name as clip;
use super::wire::{self, Id, Out, Request as Req, Since};

#[path = "handler_moderation.rs"]
mod moderation_glue;

/// The subprotocol of wire protocol v1.
pub const SUBPROTOCOL: &str = "edgews.v1";
/// The subprotocol prefix that carries a token (`token.<jwt>`).
pub const TOKEN_PREFIX: &str = "token.";

/// The room server's handler for one worker.
pub struct RoomHandler {
    shared: Arc<Shared>,
    worker: usize,
    /// Incoming text is copied here for simd-json, which parses in place.
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
    out: Out,
    /// A second writer, for an event built while a reply is being built.
    event: Out,
}

impl std::fmt::Debug for RoomHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomHandler")
            .field("worker", &self.worker)
            .finish()
    }
}

type C<'a, 'b> = Conn<'a, Session>;

impl RoomHandler {
    /// The handler of worker `worker`.
    pub fn new(shared: Arc<Shared>, worker: usize) -> Self {
        RoomHandler {
            shared,
            worker,
            scratch: Vec::new(),
            buffers: simd_json::Buffers::default(),
            out: Out::default(),
            event: Out::default(),
        }
    }

    fn metrics(&self) -> &WorkerMetrics {
        &self.shared.metrics[self.worker]
    }

    fn now_ms(&self) -> u64 {
        self.shared.started.elapsed().as_millis() as u64
    }

    /// Sends an error reply (and counts it).
    fn error(&mut self, conn: &mut C<'_, '_>, id: Option<Id<'_>>, code: ErrorCode, msg: &str) {
        self.shared.metrics[self.worker].error(code);
        conn.send_text(wire::error(&mut self.out, id, code, msg));
    }

    /// Counts a refused token and returns the error code that tells the
    /// client why (`token_expired` or `unauthorized`).
    fn auth_failed(&self, e: &AuthError) -> ErrorCode {
        let (reason, code) = if e.is_expired() {
            (AuthFailure::Expired, ErrorCode::TokenExpired)
        } else {
            (AuthFailure::Invalid, ErrorCode::Unauthorized)
        };
        self.metrics().auth_failures[reason as usize].inc();
        code
    }

    /// `{"type":"ack","id":..,"room":..,"members":..}`: the answer to join and leave.
    fn ack_members(&mut self, conn: &mut C<'_, '_>, id: Option<Id<'_>>, room: &str, members: u64) {
        let text = self
            .out
            .start("ack", id)
            .str("room", room)
            .num("members", members)
            .finish();
        conn.send_text(text);
    }

    /// Accepts a verified token on this connection: registers the user
    /// with this connection, arms the expiry timer and sends `welcome`
    /// (and an `ack` when the `auth` request had an id).
    fn authenticate(&mut self, conn: &mut C<'_, '_>, claims: &Claims, id: Option<Id<'_>>) {
        let user = self
            .shared
            .dir
            .connect(&claims.sub, claims.display_name(), conn.id());
        if let Some(b) = &self.shared.broker {
            // With a broker the limit counts every node: checked when Redis answers.
            b.connected(&user, conn.id(), 1);
        } else {
            let max = self.shared.cfg.max_connections_per_user;
            if max > 0 && user.connections().len() > max {
                conn.data_mut().user = Some(user.clone());
                let reason = format!("this user has {max} connections, the most allowed");
                conn.close(CLOSE_TOO_MANY_CONNECTIONS, &reason);
                return;
            }
        }
        let s = conn.data_mut();
        s.user = Some(user.clone());
        s.roles = claims.role_bits();
        // Registered first, then checked: a server-wide ban recorded meanwhile
        // either is seen here or finds this connection registered.
        if self.refuse_banned(conn, id, user.id()) {
            return;
        }
        self.set_expiry(conn, claims.exp);
        let cfg = &self.shared.cfg;
        let conn_id = conn.id().to_string();
        let out = self
            .out
            .start("welcome", None)
            .str("conn_id", &conn_id)
            .user("user", user.id(), user.name())
            .num("server_time", unix_ms());
        match claims.exp {
            Some(exp) => out.num("expires_at", exp.saturating_mul(1000)),
            None => out.raw("expires_at", "null"),
        };
        let limits = format!(
            "{{\"max_message_bytes\":{},\"max_rooms_per_connection\":{},\"max_members_per_room\":{},\
             \"messages_per_sec\":{},\"burst\":{},\"ping_interval_ms\":{},\"idle_timeout_ms\":{}}}",
            cfg.max_message_bytes,
            cfg.max_rooms_per_connection,
            cfg.max_members_per_room,
            cfg.rate_limit.messages_per_sec,
            cfg.rate_limit.burst,
            cfg.ping_interval_secs * 1000,
            cfg.idle_timeout_secs * 1000,
        );
        out.raw("limits", &limits);
        conn.send_text(out.finish());
        if id.is_some() {
            conn.send_text(self.out.start("ack", id).finish());
        }
    }

    /// Arms the timer for the token's expiry (leeway included), or cancels it.
    fn set_expiry(&self, conn: &mut C<'_, '_>, exp: Option<u64>) {
        match exp {
            Some(exp) => {
                let at = exp.saturating_add(self.shared.cfg.auth.leeway_secs);
                conn.data_mut().expires_at = u32::try_from(at).unwrap_or(u32::MAX);
                let left = at.saturating_sub(unix_now());
                conn.set_timer(Duration::from_secs(left));
            }
            None => {
                conn.data_mut().expires_at = 0;
                conn.cancel_timer();
            }
        }
    }

    fn dispatch(&mut self, conn: &mut C<'_, '_>, id: Option<Id<'_>>, req: Req<'_>) {
        let authed = conn.data().user.is_some();
        match req {
            Req::Ping => {
                let text = self.out.start("pong", id).num("ts", unix_ms()).finish();
                conn.send_text(text);
            }
            Req::Auth { token } if !authed => match self.shared.keys.verify(token) {
                Ok(claims) => self.authenticate(conn, &claims, id),
                Err(e) => {
                    let code = self.auth_failed(&e);
                    self.error(conn, id, code, &e.to_string());
                    conn.close(CLOSE_UNAUTHORIZED, "authentication failed");
                }
            },
            Req::Auth { .. } => self.error(
                conn,
                id,
                ErrorCode::BadRequest,
                "already authenticated: use `refresh` to swap tokens",
            ),
            _ if !authed => self.error(
                conn,
                id,
                ErrorCode::Unauthorized,
                "authenticate first: send {\"type\":\"auth\",\"token\":...}",
            ),
            Req::Refresh { token } => self.refresh(conn, id, token),
            Req::Join {
                room,
                password,
                since,
            } => self.join(conn, id, room, password, since),
            Req::History { room, since, limit } => self.history(conn, id, room, since, limit),
            Req::Leave { room } => self.leave(conn, id, room),
            Req::Message {
                room,
                data,
                exclude_self,
            } => {
                let Some(user) = member(conn, room) else {
                    return self.not_in_room(conn, id, room);
                };
                if self.refuse_post(conn, id, room, user.id()) {
                    return;
                }
                let ts = unix_ms();
                if let Some(b) = &self.shared.broker {
                    // Numbered in Redis and fanned out by every node (this
                    // one too) in offset order: see `rooms::broker::Pending`.
                    let ev = self
                        .out
                        .start("message", None)
                        .str("room", room)
                        .user("from", user.id(), user.name())
                        .value("data", data)
                        .num("ts", ts)
                        .finish();
                    let pre = format!("{},\"offset\":", &ev[..ev.len() - 1]);
                    let exclude = exclude_self.then(|| conn.id());
                    if !b.message(room, pre, "}", exclude, conn.id(), id, ts) {
                        return self.error(
                            conn,
                            id,
                            ErrorCode::Internal,
                            "too many operations wait for Redis: the message was not sent",
                        );
                    }
                    self.metrics().room_messages.inc();
                    return;
                }
                let shared = self.shared.clone();
                // With a broker the same event goes to the other nodes, from
                // under the room's ordering lock.
                let mut to_broker = |text: &str| {
                    if let Some(b) = &shared.broker {
                        b.publish(room, text);
                    }
                };
                let pos = match publish_message_then(
                    &shared.history,
                    Origin::Conn(conn, exclude_self),
                    room,
                    &user,
                    Data::Parsed(data),
                    ts,
                    &mut to_broker,
                ) {
                    Ok(pos) => pos,
                    Err(code) => {
                        return self.error(
                            conn,
                            id,
                            code,
                            "the message could not be stored, so it was not sent",
                        )
                    }
                };
                self.metrics().room_messages.inc();
                if id.is_some() {
                    let text = self
                        .out
                        .start("ack", id)
                        .str("room", room)
                        .num("ts", ts)
                        .num("offset", pos.offset)
                        .str("epoch", &pos.epoch)
                        .finish();
                    conn.send_text(text);
                }
            }
            Req::Private { to, data } => {
                let targets = self.shared.dir.connections_of(to);
                if targets.is_empty() && self.shared.broker.is_none() {
                    return self.error(
                        conn,
                        id,
                        ErrorCode::UserOffline,
                        "that user has no connection",
                    );
                }
                let user = conn.data().user.clone().expect("authenticated");
                let ts = unix_ms();
                let text = self
                    .event
                    .start("private", None)
                    .user("from", user.id(), user.name())
                    .value("data", data)
                    .num("ts", ts)
                    .finish();
                let mut delivered = 0;
                for target in targets {
                    if conn.send_to(target, Message::Text(text)) {
                        delivered += 1;
                    }
                }
                // With a broker, the ack (or `user_offline`) comes back
                // from Redis with the user's connections on every node.
                let sent = self
                    .shared
                    .broker
                    .as_ref()
                    .is_some_and(|b| b.private(to, text, conn.id(), id, delivered, ts));
                self.metrics().private_deliveries.add(delivered);
                if sent {
                } else if delivered == 0 {
                    self.error(
                        conn,
                        id,
                        ErrorCode::UserOffline,
                        "that user has no connection",
                    );
                } else if id.is_some() {
                    let text = self
                        .out
                        .start("ack", id)
                        .str("to", to)
                        .num("delivered", delivered)
                        .num("ts", ts)
                        .finish();
                    conn.send_text(text);
                }
            }
            Req::Presence { status } => {
                let user = conn.data().user.clone().expect("authenticated");
                let rooms = self.shared.dir.set_status(&user, status);
                if let Some(b) = &self.shared.broker {
                    b.status(&user, status);
                }
                for room in rooms {
                    let text = self
                        .event
                        .start("presence", None)
                        .str("room", room.name())
                        .user("user", user.id(), user.name())
                        .str("status", status.as_str())
                        .finish();
                    conn.publish(room.name(), Message::Text(text));
                    if let Some(b) = &self.shared.broker {
                        b.publish(room.name(), text);
                    }
                }
                if id.is_some() {
                    let text = self
                        .out
                        .start("ack", id)
                        .str("status", status.as_str())
                        .finish();
                    conn.send_text(text);
                }
            }
            Req::Who {
                room,
                cursor,
                limit,
            } => self.who(conn, id, room, cursor, limit),
            Req::Moderate(m) => self.moderate(conn, id, m),
            Req::Typing { room } => {
                let Some(user) = member(conn, room) else {
                    return self.not_in_room(conn, id, room);
                };
                if self.refuse_post(conn, id, room, user.id()) {
                    return;
                }
                let text = self
                    .event
                    .start("typing", None)
                    .str("room", room)
                    .user("user", user.id(), user.name())
                    .finish();
                conn.publish_others(room, Message::Text(text));
                if let Some(b) = &self.shared.broker {
                    b.publish(room, text);
                }
                if id.is_some() {
                    conn.send_text(self.out.start("ack", id).str("room", room).finish());
                }
            }
        }
    }

    /// The directory entry of `room`, when this connection is a member.
    fn joined(&self, conn: &C<'_, '_>, room: &str) -> Option<Arc<super::directory::Room>> {
        if conn.is_member(room) {
            self.shared.dir.room(room)
        } else {
            None
        }
    }

    /// Whether a room of `members` users gets `user_joined`/`user_left`.
    fn member_events(&self, members: usize) -> bool {
        let max = self.shared.cfg.member_events_max_room_size;
        max == 0 || members <= max
    }

    fn not_in_room(&mut self, conn: &mut C<'_, '_>, id: Option<Id<'_>>, room: &str) {
        let msg = format!("join `{}` first", clip(room));
        self.error(conn, id, ErrorCode::NotInRoom, &msg);
    }

    fn refresh(&mut self, conn: &mut C<'_, '_>, id: Option<Id<'_>>, token: &str) {
        let claims = match self.shared.keys.verify(token) {
            Ok(c) => c,
            Err(e) => {
                let code = self.auth_failed(&e);
                return self.error(conn, id, code, &e.to_string());
            }
        };
        let same = conn
            .data()
            .user
            .as_ref()
            .is_some_and(|u| u.id() == claims.sub);
        if !same {
            return self.error(
                conn,
                id,
                ErrorCode::Forbidden,
                "`refresh` needs a token for the same user (`sub`)",
            );
        }
        conn.data_mut().roles = claims.role_bits();
        self.set_expiry(conn, claims.exp);
        let out = self.out.start("ack", id);
        match claims.exp {
            Some(exp) => out.num("expires_at", exp.saturating_mul(1000)),
            None => out.raw("expires_at", "null"),
        };
        conn.send_text(out.finish());
    }

    fn join(
        &mut self,
        conn: &mut C<'_, '_>,
        id: Option<Id<'_>>,
        room: &str,
        password: Option<&str>,
        since: Option<Since<'_>>,
    ) {
        if let Some(r) = self.joined(conn, room) {
            // Already in: the same answer again, no event, no recovery.
            let pos = self.shared.history.store().position(room).ok();
            if let Some(b) = &self.shared.broker {
                // The position lives in Redis: a client has it from its
                // first join's ack and from every message.
                let user = conn.data().user.clone().expect("authenticated");
                let extra = Vec::new();
                if b.member_with(room, &user, 0, conn.id(), id, true, extra) {
                    return;
                }
            }
            match pos {
                Some(pos) => self.ack_join(conn, id, room, r.count() as u64, &pos, None),
                None => self.ack_members(conn, id, room, r.count() as u64),
            }
            return;
        }
        if let Some(b) = &self.shared.broker {
            if b.is_pending(conn.id(), room) {
                // Its answer is on the way: counting it twice would leak.
                return self.error(
                    conn,
                    id,
                    ErrorCode::BadRequest,
                    "a join of this room is already waiting for its answer",
                );
            }
        }
        let cfg = &self.shared.cfg;
        if conn.rooms().count() >= cfg.max_rooms_per_connection {
            let msg = format!(
                "this connection is in {} rooms, the most allowed",
                cfg.max_rooms_per_connection
            );
            return self.error(conn, id, ErrorCode::TooManyRooms, &msg);
        }
        let user = conn.data().user.clone().expect("authenticated");
        // Reserved names, bans, private rooms and passwords; the room's limit.
        let roles = conn.data().roles;
        let max_members =
            match super::moderation::check_join(&self.shared, room, user.id(), roles, password) {
                Ok(max) => max,
                Err(e) => return self.refused(conn, id, &e),
            };
        let joined = match self.shared.dir.join(&user, room, max_members) {
            Ok(j) => j,
            Err(code) => {
                let msg = format!(
                    "`{}` has {} members, the most allowed",
                    clip(room),
                    max_members
                );
                return self.error(conn, id, code, &msg);
            }
        };
        if let Some(b) = &self.shared.broker {
            // Position, ack and recovery come from Redis through this
            // node's subscription, in order with the room's messages; the
            // connection joins the engine's room then (`recovered`).
            let since = since.map(|s| (s.epoch.to_owned(), s.offset));
            let asked = since.is_some();
            if b.join(room, &user, conn.id(), id, since) {
                return;
            }
            conn.subscribe_in_order(room);
            let out = self
                .out
                .start("ack", id)
                .str("room", room)
                .num("members", joined.members as u64);
            if asked {
                out.bool("recovered", false).str("reason", "unavailable");
            }
            conn.send_text(out.finish());
            return;
        }
        // Under the room's ordering lock: no message of this room is numbered
        // between reading the position and joining at it (see `history`).
        let shared = self.shared.clone();
        let _order = shared.history.lock(room);
        let recovery = match since {
            None => shared.history.store().position(room).map(|pos| (pos, None)),
            Some(since) => self.recovery(room, since),
        };
        let (pos, recovery) = match recovery {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(room, error = %e, "history store failed on join");
                self.shared.dir.leave(&user, &joined.room);
                return self.error(
                    conn,
                    id,
                    ErrorCode::Internal,
                    "the room's history is unavailable",
                );
            }
        };
        conn.subscribe_in_order(room);
        if let Some(b) = &self.shared.broker {
            // The ack and `user_joined` carry the cluster's count: they
            // come from the broker once Redis answered. (No recovery with a
            // broker yet: `recovery` refuses it, so nothing is missed here.)
            let extra = join_ack_fields(Some(&pos), recovery.as_ref());
            if b.member_with(room, &user, 1, conn.id(), id, true, extra) {
                return;
            }
        }
        if joined.first && self.member_events(joined.members) {
            let text = self
                .event
                .start("user_joined", None)
                .str("room", room)
                .user("user", user.id(), user.name())
                .num("members", joined.members as u64)
                .finish();
            conn.publish_others(room, Message::Text(text));
        }
        self.ack_join(
            conn,
            id,
            room,
            joined.members as u64,
            &pos,
            recovery.as_ref(),
        );
        if let Some(Recovery::Recovered(missed)) = recovery {
            for entry in &missed {
                match std::str::from_utf8(&entry.event) {
                    Ok(text) => {
                        conn.send_text(text);
                    }
                    Err(_) => {
                        tracing::error!(room, offset = entry.offset, "stored event is not UTF-8")
                    }
                }
            }
            self.metrics().recoveries.inc();
        }
    }

    /// A join's answer from Redis (see `rooms::broker::Pending`): the ack
    /// with the room's position (and recovery), the missed messages, then
    /// the connection joins the engine's room, before any later message.
    /// `payload`: `join\nstatus\nepoch\noffset[\nevent]*`.
    fn joined_from_redis(&mut self, conn: &mut C<'_, '_>, payload: &[u8]) {
        let shared = self.shared.clone();
        let Some(b) = shared.broker.as_ref() else {
            return;
        };
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let mut lines = text.split('\n');
        let Some(join) = lines.next().and_then(|j| j.parse::<u64>().ok()) else {
            return;
        };
        let Some(p) = b.take_pending(join) else {
            return;
        };
        let status = lines.next().unwrap_or("unavailable");
        let epoch = lines.next().unwrap_or("");
        let offset: u64 = lines.next().and_then(|o| o.parse().ok()).unwrap_or(0);
        let mut missed: Vec<&str> = lines.collect();
        let mut status = status;
        let bytes: usize = missed.iter().map(|e| e.len() + 14).sum();
        if bytes > self.shared.cfg.max_queued_bytes / 2 {
            status = "too_old";
            missed.clear();
        }
        let local = self.shared.dir.room(&p.room).map_or(0, |r| r.count()) as u64;
        let id = p.id.as_ref().map(|i| i.as_id());
        let out = self
            .out
            .start("ack", id)
            .str("room", &p.room)
            .num("members", p.members.unwrap_or(local));
        if status != "unavailable" {
            out.str("epoch", epoch).num("offset", offset);
        }
        let recovered = p.since && status == "ok";
        if p.since {
            if recovered {
                out.bool("recovered", true)
                    .num("missed", missed.len() as u64);
            } else {
                out.bool("recovered", false).str("reason", status);
            }
        }
        conn.send_text(out.finish());
        if recovered {
            for e in &missed {
                conn.send_text(e);
            }
            self.metrics().recoveries.inc();
        }
        conn.subscribe(&p.room);
    }

    /// What a `join` with `since` can recover, decided under the room's lock.
    fn recovery(
        &self,
        room: &str,
        since: Since<'_>,
    ) -> Result<(Position, Option<Recovery>), super::history::StoreError> {
        let store = self.shared.history.store();
        let pos = store.position(room)?;
        let refuse = |reason| Ok((pos.clone(), Some(Recovery::Refused(reason))));
        if self.shared.broker.is_some() {
            // Each node's history holds only what was published on that node
            // until history lives in Redis: recovering from it could leave a
            // silent gap, so it is refused.
            return refuse("history_disabled");
        }
        if &*pos.epoch != since.epoch || since.offset > pos.offset {
            return refuse("epoch_changed");
        }
        if since.offset == pos.offset {
            return Ok((pos.clone(), Some(Recovery::Recovered(Vec::new()))));
        }
        let missed = (pos.offset - since.offset) as usize;
        let slice = store.read(room, since.offset, missed, unix_ms())?;
        if slice.disabled {
            return refuse("history_disabled");
        }
        if since.offset + 1 < slice.oldest || slice.entries.len() != missed {
            return refuse("too_old");
        }
        // More than half the send queue limit would close the connection.
        let bytes: usize = slice.entries.iter().map(|e| e.event.len() + 14).sum();
        if bytes > self.shared.cfg.max_queued_bytes / 2 {
            return refuse("too_old");
        }
        Ok((slice.position, Some(Recovery::Recovered(slice.entries))))
    }

    /// The ack of `join`: members, the room's position, and with `since`
    /// whether the missed messages follow.
    fn ack_join(
        &mut self,
        conn: &mut C<'_, '_>,
        id: Option<Id<'_>>,
        room: &str,
        members: u64,
        pos: &Position,
        recovery: Option<&Recovery>,
    ) {
        let out = self
            .out
            .start("ack", id)
            .str("room", room)
            .num("members", members)
            .str("epoch", &pos.epoch)
            .num("offset", pos.offset);
        match recovery {
            None => {}
            Some(Recovery::Recovered(missed)) => {
                out.bool("recovered", true)
                    .num("missed", missed.len() as u64);
            }
            Some(Recovery::Refused(reason)) => {
                out.bool("recovered", false).str("reason", reason);
            }
        }
        conn.send_text(out.finish());
    }

    /// `history {room, since?, limit?}`: a page of stored messages in offset order.
    fn history(
        &mut self,
        conn: &mut C<'_, '_>,
        id: Option<Id<'_>>,
        room: &str,
        since: Option<u64>,
        limit: Option<usize>,
    ) {
        if !conn.is_member(room) {
            return self.not_in_room(conn, id, room);
        }
        let cfg = &self.shared.cfg.history;
        let limit = limit.unwrap_or(cfg.default_limit).min(cfg.max_limit).max(1);
        if let Some(b) = &self.shared.broker {
            // From the room's stream in Redis; the ack follows from the link.
            if !b.history(room, since.unwrap_or(0), limit, conn.id(), id) {
                self.error(
                    conn,
                    id,
                    ErrorCode::HistoryUnavailable,
                    "too many operations wait for Redis: history cannot be read now",
                );
            }
            return;
        }
        let slice =
            match self
                .shared
                .history
                .store()
                .read(room, since.unwrap_or(0), limit + 1, unix_ms())
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(room, error = %e, "history store failed on read");
                    return self.error(
                        conn,
                        id,
                        ErrorCode::Internal,
                        "the room's history is unavailable",
                    );
                }
            };
        let more = slice.entries.len() > limit;
        let page = &slice.entries[..slice.entries.len().min(limit)];
        let mut messages =
            String::with_capacity(2 + page.iter().map(|e| e.event.len() + 1).sum::<usize>());
        messages.push('[');
        for (i, e) in page.iter().enumerate() {
            if i > 0 {
                messages.push(',');
            }
            messages.push_str(std::str::from_utf8(&e.event).unwrap_or("null"));
        }
        messages.push(']');
        let out = self
            .out
            .start("ack", id)
            .str("room", room)
            .str("epoch", &slice.position.epoch)
            .num("offset", slice.position.offset)
            .num("oldest", slice.oldest)
            .raw("messages", &messages);
        match page.last().filter(|_| more) {
            Some(last) => out.num("next", last.offset),
            None => out.raw("next", "null"),
        };
        conn.send_text(out.finish());
    }

    fn leave(&mut self, conn: &mut C<'_, '_>, id: Option<Id<'_>>, room: &str) {
        let Some(r) = self.joined(conn, room) else {
            return self.not_in_room(conn, id, room);
        };
        conn.unsubscribe(room);
        if let Some(b) = &self.shared.broker {
            let user = conn.data().user.clone().expect("authenticated");
            let (_, members) = self.shared.dir.leave(&user, &r);
            if !b.member(room, &user, -1, conn.id(), id, true) {
                self.ack_members(conn, id, room, members as u64);
            }
            return;
        }
        let members = self.left(conn, &r);
        self.ack_members(conn, id, room, members);
    }

    /// The directory side of leaving `room`, and `user_left` when this was
    /// the user's last connection there. Returns the members left.
    fn left(&mut self, conn: &mut C<'_, '_>, room: &Arc<super::directory::Room>) -> u64 {
        let user = conn.data().user.clone().expect("authenticated");
        let (last, members) = self.shared.dir.leave(&user, room);
        if let Some(b) = &self.shared.broker {
            b.member(room.name(), &user, -1, conn.id(), None, false);
            return members as u64;
        }
        if last && self.member_events(members + 1) {
            let text = self
                .event
                .start("user_left", None)
                .str("room", room.name())
                .user("user", user.id(), user.name())
                .num("members", members as u64)
                .finish();
            conn.publish_others(room.name(), Message::Text(text));
        }
        members as u64
    }

    fn who(
        &mut self,
        conn: &mut C<'_, '_>,
        id: Option<Id<'_>>,
        room: &str,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) {
        let Some(r) = self.joined(conn, room) else {
            return self.not_in_room(conn, id, room);
        };
        let cfg = &self.shared.cfg;
        let limit = limit
            .unwrap_or(cfg.who_default_limit)
            .min(cfg.who_max_limit)
            .max(1);
        if let Some(b) = &self.shared.broker {
            if b.who(room, cursor, limit, conn.id(), id) {
                return;
            }
        }
        let page = self.shared.dir.page(&r, cursor, limit);
        let mut members = String::with_capacity(page.members.len() * 48 + 2);
        members.push('[');
        let mut w = Out::default();
        for (i, (u, status)) in page.members.iter().enumerate() {
            if i > 0 {
                members.push(',');
            }
            w.buf.clear();
            w.buf.extend_from_slice(b"{\"id\":");
            w.string(u.id());
            w.buf.extend_from_slice(b",\"name\":");
            w.string(u.name());
            w.buf.extend_from_slice(b",\"status\":\"");
            w.buf.extend_from_slice(status.as_str().as_bytes());
            w.buf.extend_from_slice(b"\"}");
            members.push_str(std::str::from_utf8(&w.buf).unwrap_or("{}"));
        }
        members.push(']');
        let out = self
            .out
            .start("ack", id)
            .str("room", room)
            .num("count", page.count as u64)
            .raw("members", &members);
        match &page.next {
            Some(next) => out.str("next", next),
            None => out.raw("next", "null"),
        };
        conn.send_text(out.finish());
    }
}

impl Handler for RoomHandler {
    type Data = Session;

    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<Session>, Reject> {
        let (path, query) = req.path().split_once('?').unwrap_or((req.path(), ""));
        if path != "/ws" {
            return Err(Reject::not_found());
        }
        let cfg = &self.shared.cfg;
        if !origin_allowed(&cfg.allowed_origins, req.origin()) {
            self.metrics().origin_rejected.inc();
            return Err(json_reject(
                403,
                ErrorCode::Forbidden,
                "this Origin is not allowed",
            ));
        }
        // The token: ?token=, Authorization: Bearer, or a `token.<jwt>` subprotocol.
        let mut offers_v1 = false;
        let mut proto_token = None;
        let mut offers = 0;
        for p in req.protocols() {
            offers += 1;
            if p == SUBPROTOCOL {
                offers_v1 = true;
            } else if let Some(t) = p.strip_prefix(TOKEN_PREFIX) {
                proto_token = Some(p).filter(|_| !t.is_empty());
            }
        }
        let token = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .filter(|t| !t.is_empty())
            .or_else(|| {
                req.header_str("authorization")
                    .and_then(|a| {
                        a.strip_prefix("Bearer ")
                            .or_else(|| a.strip_prefix("bearer "))
                    })
                    .map(str::trim)
            })
            .or_else(|| proto_token.map(|p| &p[TOKEN_PREFIX.len()..]));
        let now = self.now_ms();
        let mut session = Session {
            bucket: TokenBucket::full(&cfg.rate_limit, now),
            ..Session::default()
        };
        if let Some(token) = token {
            match self.shared.keys.verify(token) {
                Ok(claims) => {
                    // A server-wide ban: 403 with a JSON body.
                    if let Err(e) = super::moderation::check_connect(&self.shared, &claims.sub) {
                        return Err(json_reject(403, e.code, &e.message));
                    }
                    // Registered with its connection id in on_open, which
                    // follows at once; the claims ride along until then.
                    session.user = Some(super::directory::Directory::detached(
                        &claims.sub,
                        claims.display_name(),
                    ));
                    session.roles = claims.role_bits();
                    session.expires_at = claims.exp.map_or(0, |e| {
                        u32::try_from(e.saturating_add(cfg.auth.leeway_secs)).unwrap_or(u32::MAX)
                    });
                }
                Err(e) => {
                    let code = self.auth_failed(&e);
                    return Err(json_reject(401, code, &e.to_string()));
                }
            }
        }
        let accept = Accept::new(session);
        Ok(if offers_v1 {
            accept.protocol(SUBPROTOCOL)
        } else if let (Some(p), 1) = (proto_token, offers) {
            accept.protocol(p)
        } else {
            accept
        })
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Session>) {
        let Some(detached) = conn.data_mut().user.take() else {
            conn.set_timer(Duration::from_secs(
                self.shared.cfg.auth_timeout_secs.max(1),
            ));
            return;
        };
        // Authenticated at the upgrade: the session carries what the token said.
        let exp = match conn.data().expires_at {
            0 => None,
            at => Some(u64::from(at).saturating_sub(self.shared.cfg.auth.leeway_secs)),
        };
        let roles = conn.data().roles;
        let claims = Claims {
            sub: detached.id().to_owned(),
            name: Some(detached.name().to_owned()),
            exp,
            ..Claims::default()
        };
        self.authenticate(conn, &claims, None);
        conn.data_mut().roles = roles;
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Session>, msg: Message<'_>) {
        let Message::Text(text) = msg else {
            self.metrics().invalid.inc();
            if !self.rate_limited(conn, None, self.now_ms()) {
                self.error(
                    conn,
                    None,
                    ErrorCode::BadRequest,
                    "binary messages are not part of the protocol: send JSON text",
                );
            }
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut buffers = std::mem::take(&mut self.buffers);
        scratch.clear();
        scratch.extend_from_slice(text.as_bytes());
        self.handle_text(conn, &mut scratch, &mut buffers);
        // A huge message's buffer is not kept around.
        if scratch.capacity() > 1 << 20 {
            scratch = Vec::new();
        }
        self.scratch = scratch;
        self.buffers = buffers;
    }

    fn on_timer(&mut self, conn: &mut Conn<'_, Session>) {
        if conn.data().user.is_none() {
            self.metrics().auth_failures[AuthFailure::Timeout as usize].inc();
            conn.close(CLOSE_UNAUTHORIZED, "authentication timeout");
            return;
        }
        let at = u64::from(conn.data().expires_at);
        if at == 0 {
            return;
        }
        let now = unix_now();
        if now >= at {
            self.metrics().auth_failures[AuthFailure::Expired as usize].inc();
            self.metrics().expired_closes.inc();
            conn.close(CLOSE_TOKEN_EXPIRED, "token expired");
        } else {
            conn.set_timer(Duration::from_secs(at - now));
        }
    }

    fn on_notify(&mut self, conn: &mut Conn<'_, Session>, payload: &[u8]) {
        match payload.split_first() {
            Some((b'R', rest)) => self.joined_from_redis(conn, rest),
            _ => self.notice(conn, payload),
        }
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Session>, _close: CloseInfo<'_>) {
        let Some(user) = conn.data().user.clone() else {
            return;
        };
        // Still listed by the engine: it leaves them right after this.
        let rooms: Vec<Arc<super::directory::Room>> = conn
            .rooms()
            .filter_map(|name| self.shared.dir.room(name))
            .collect();
        for room in &rooms {
            self.left(conn, room);
        }
        if let Some(b) = &self.shared.broker {
            // Joins still waiting for Redis: never in the engine's room.
            for p in b.take_pending_of(conn.id()) {
                if let Some(r) = self.shared.dir.room(&p.room) {
                    self.shared.dir.leave(&user, &r);
                    b.member(&p.room, &user, -1, conn.id(), None, false);
                }
            }
        }
        self.shared.dir.disconnect(&user, conn.id());
        if let Some(b) = &self.shared.broker {
            b.connected(&user, conn.id(), -1);
        }
    }

    fn on_http(&mut self, req: &Request<'_>) -> HttpResponse {
        let (path, query) = req.path().split_once('?').unwrap_or((req.path(), ""));
        match path {
            "/api/websocket/status" => match self.shared.handle.get() {
                Some(h) => HttpResponse::with_type(
                    200,
                    "application/json",
                    websocket_status(&self.shared, h).into_bytes(),
                )
                .header("Cache-Control", "no-store"),
                None => HttpResponse::text(503, "starting\n"),
            },
            "/dev/token" if self.shared.dev_tokens.load(Ordering::Relaxed) => self.dev_token(query),
            p if p.starts_with("/api/admin/") || p == "/api/admin" => admin_elsewhere(),
            _ => match super::assets::asset(path) {
                // no-cache: a browser revalidates, so a new binary's page is seen at once.
                Some((ty, body)) => HttpResponse::with_type(200, ty, body.to_vec())
                    .header("Cache-Control", "no-cache"),
                None => HttpResponse::not_found(),
            },
        }
    }
}

impl RoomHandler {
    /// parse → rate limit → dispatch, for one text message copied into `scratch`.
    fn handle_text(
        &mut self,
        conn: &mut C<'_, '_>,
        scratch: &mut [u8],
        buffers: &mut simd_json::Buffers,
    ) {
        let now = self.now_ms();
        let value = match wire::parse_value(scratch, buffers) {
            Ok(v) => v,
            Err(e) => {
                self.metrics().invalid.inc();
                if !self.rate_limited(conn, None, now) {
                    self.error(conn, None, e.code, &e.message);
                }
                return;
            }
        };
        match wire::request(&value) {
            Err(e) => {
                self.metrics().invalid.inc();
                if !self.rate_limited(conn, e.id, now) {
                    self.error(conn, e.id, e.code, &e.message);
                }
            }
            Ok((id, req)) => {
                self.metrics().requests[req.type_index()].inc();
                if !self.rate_limited(conn, id, now) {
                    self.dispatch(conn, id, req);
                }
            }
        }
    }

    /// Takes a token from the connection's bucket; when it is empty, replies
    /// `rate_limited` (or closes with 4008 after repeated abuse) and returns true.
    fn rate_limited(&mut self, conn: &mut C<'_, '_>, id: Option<Id<'_>>, now: u64) -> bool {
        let cfg = &self.shared.cfg.rate_limit;
        let s = conn.data_mut();
        if s.bucket.take(cfg, now) {
            return false;
        }
        if s.strikes.strike(cfg, now) {
            self.metrics().rate_limit_closes.inc();
            self.metrics().error(ErrorCode::RateLimited);
            conn.close(CLOSE_RATE_LIMIT, "rate limit abuse");
        } else {
            let msg = format!(
                "over {} messages per second (burst {})",
                cfg.messages_per_sec, cfg.burst
            );
            self.error(conn, id, ErrorCode::RateLimited, &msg);
        }
        true
    }

    /// `GET /dev/token?sub=..&name=..`: a 24-hour token (dev mode only).
    fn dev_token(&self, query: &str) -> HttpResponse {
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(percent_decode)
        };
        let sub = param("sub").unwrap_or_else(|| "guest".into());
        if sub.is_empty() || sub.len() > super::auth::MAX_USER_ID_BYTES {
            return HttpResponse::with_type(
                400,
                "application/json",
                wire::http_error(ErrorCode::BadRequest, "`sub` must be 1 to 128 bytes")
                    .into_bytes(),
            );
        }
        let claims = Claims {
            name: param("name").filter(|n| !n.is_empty()),
            sub,
            exp: Some(unix_now() + 24 * 3600),
            iat: Some(unix_now()),
            ..Claims::default()
        };
        match self.shared.keys.mint(&claims) {
            Ok(token) => HttpResponse::with_type(
                200,
                "application/json",
                serde_json::json!({ "token": token, "sub": claims.sub, "expires_at": claims.exp.map(|e| e * 1000) })
                    .to_string()
                    .into_bytes(),
            )
            .header("Cache-Control", "no-store"),
            Err(e) => HttpResponse::with_type(
                500,
                "application/json",
                wire::http_error(ErrorCode::Internal, &e.to_string()).into_bytes(),
            ),
        }
    }
}

/// The outcome of a `join` with `since`.
#[derive(Debug)]
enum Recovery {
    /// Every missed message, in order (sent right after the ack).
    Recovered(Vec<super::history::Entry>),
    /// Why not: `epoch_changed`, `too_old` or `history_disabled`.
    Refused(&'static str),
}

/// The connection's user, when the connection is a member of `room`.
fn member(conn: &C<'_, '_>, room: &str) -> Option<Arc<super::directory::User>> {
    if conn.is_member(room) {
        conn.data().user.clone()
    } else {
        None
    }
}

/// The admin API has a listener of its own (`admin.listen`), never this port.
fn admin_elsewhere() -> HttpResponse {
    HttpResponse::with_type(
        404,
        "application/json",
        wire::http_error(
            ErrorCode::NotFound,
            "the admin API is not served on the WebSocket port: it listens on admin.listen \
             (see docs/protocol.md, Admin HTTP API)",
        )
        .into_bytes(),
    )
}

/// A 401/403 with a JSON body, as the protocol promises.
fn json_reject(status: u16, code: ErrorCode, message: &str) -> Reject {
    Reject::with_response(HttpResponse::with_type(
        status,
        "application/json",
        wire::http_error(code, message).into_bytes(),
    ))
}

/// Decodes `%XX` and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The join ack's history fields (`epoch`, `offset`, `recovered`, `reason`,
/// `missed`) as raw JSON values, for an ack the broker sends later.
fn join_ack_fields(
    pos: Option<&Position>,
    recovery: Option<&Recovery>,
) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    if let Some(pos) = pos {
        f.push((
            "epoch",
            serde_json::to_string(&*pos.epoch).unwrap_or_default(),
        ));
        f.push(("offset", pos.offset.to_string()));
    }
    match recovery {
        None => {}
        Some(Recovery::Recovered(missed)) => {
            f.push(("recovered", "true".into()));
            f.push(("missed", missed.len().to_string()));
        }
        Some(Recovery::Refused(reason)) => {
            f.push(("recovered", "false".into()));
            f.push(("reason", format!("\"{reason}\"")));
        }
    }
    f
}
