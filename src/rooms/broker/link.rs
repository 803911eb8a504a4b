//! The broker's two threads: the link (pipelined commands, heartbeat,
//! reaping, resync) and the subscriber (sharded pub/sub, probe).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, Value};

use crate::protocol::Message;
use crate::runtime::{ConnId, ServerHandle};

use super::super::codes::{ErrorCode, CLOSE_TOO_MANY_CONNECTIONS};
use super::super::directory::{Status, User};
use super::super::server::Shared;
use super::super::wire::{self, Out};
use super::{lock, scripts, Broker, MessageReply, Names, Op, Reply, GAP_EVENT};

/// Most operations in one pipeline.
const MAX_BATCH: usize = 1024;
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Connect, read and write timeout of the link connection.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A message between nodes: `origin|kind|target length|target text`.
/// Kinds: `r` room event, `p` private message, `k` probe, `w` wake,
/// `G` every local room has a gap.
pub(super) fn payload(node: &str, kind: char, target: &str, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(node.len() + target.len() + text.len() + 16);
    out.extend_from_slice(node.as_bytes());
    out.push(b'|');
    let mut k = [0u8; 4];
    out.extend_from_slice(kind.encode_utf8(&mut k).as_bytes());
    out.push(b'|');
    out.extend_from_slice(target.len().to_string().as_bytes());
    out.push(b'|');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Parses a [`payload`]: `(origin, kind, target, text)`.
pub(super) fn parse(p: &[u8]) -> Option<(&str, u8, &str, &str)> {
    let s = std::str::from_utf8(p).ok()?;
    let (origin, rest) = s.split_once('|')?;
    let (kind, rest) = rest.split_once('|')?;
    let (len, rest) = rest.split_once('|')?;
    let len: usize = len.parse().ok()?;
    if kind.len() != 1 || !rest.is_char_boundary(len.min(rest.len())) || len > rest.len() {
        return None;
    }
    Some((origin, kind.as_bytes()[0], &rest[..len], &rest[len..]))
}

struct Scripts {
    connect: redis::Script,
    member: redis::Script,
    who: redis::Script,
    status: redis::Script,
    private: redis::Script,
    cleanup: redis::Script,
    message: redis::Script,
    recover: redis::Script,
    history: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            connect: redis::Script::new(scripts::CONNECT),
            member: redis::Script::new(scripts::MEMBER),
            who: redis::Script::new(scripts::WHO),
            status: redis::Script::new(scripts::STATUS),
            private: redis::Script::new(scripts::PRIVATE),
            cleanup: redis::Script::new(scripts::CLEANUP),
            message: redis::Script::new(scripts::MESSAGE),
            recover: redis::Script::new(scripts::RECOVER),
            history: redis::Script::new(scripts::HISTORY),
        }
    }

    fn all(&self) -> [&'static str; 9] {
        [
            scripts::CONNECT,
            scripts::MEMBER,
            scripts::WHO,
            scripts::STATUS,
            scripts::PRIVATE,
            scripts::CLEANUP,
            scripts::MESSAGE,
            scripts::RECOVER,
            scripts::HISTORY,
        ]
    }
}

/// Adds `EVALSHA script keys.. args..` to a pipeline.
fn eval<'p>(
    pipe: &'p mut redis::Pipeline,
    script: &redis::Script,
    keys: &[&str],
    args: &[&[u8]],
) -> &'p mut redis::Pipeline {
    let cmd = pipe
        .cmd("EVALSHA")
        .arg(script.get_hash())
        .arg(keys.len())
        .arg(keys);
    for a in args {
        cmd.arg(*a);
    }
    cmd
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// A user's entry for `who`: `{"id":..,"name":..,"status":..}`.
fn info(user: &User, status: Status) -> String {
    let mut out = Out::default();
    out.buf.extend_from_slice(b"{\"id\":");
    out.string(user.id());
    out.buf.extend_from_slice(b",\"name\":");
    out.string(user.name());
    out.buf.extend_from_slice(b",\"status\":\"");
    out.buf.extend_from_slice(status.as_str().as_bytes());
    out.buf.extend_from_slice(b"\"}");
    String::from_utf8(out.buf).unwrap_or_default()
}

struct Link {
    shared: Arc<Shared>,
    con: Option<Connection>,
    scripts: Scripts,
    out: Out,
    backoff: Duration,
    /// An outage happened since the last resync.
    outage: bool,
    /// This node's presence is in Redis (resynced since the last connect).
    registered: bool,
    next_beat: Instant,
    next_reap: Instant,
    wedged_since_ms: Option<u64>,
    /// Presence changes numbered below this are in the last resync's snapshot.
    skip_below: u64,
}

fn broker(shared: &Shared) -> &Broker {
    shared
        .broker
        .as_ref()
        .expect("the broker threads run with a broker")
}

fn handle(shared: &Shared) -> Option<&ServerHandle> {
    shared.handle.get()
}

/// The link thread: see the module doc of `rooms::broker`.
pub(super) fn run_link(shared: Arc<Shared>, rx: Receiver<Op>) {
    let mut link = Link {
        shared,
        con: None,
        scripts: Scripts::new(),
        out: Out::default(),
        backoff: FIRST_BACKOFF,
        outage: false,
        registered: false,
        next_beat: Instant::now(),
        next_reap: Instant::now(),
        wedged_since_ms: None,
        skip_below: 0,
    };
    let batch_wait = Duration::from_micros(broker(&link.shared).cfg.batch_micros);
    let mut batch = Vec::with_capacity(64);
    loop {
        let shared = link.shared.clone();
        let b = broker(&shared);
        let stopping = b.stop.load(Ordering::Acquire);
        if link.con.is_none() && !link.connect() {
            // Down: what is queued cannot cross; answer from local state.
            while let Ok(op) = rx.try_recv() {
                b.stats.pending.fetch_sub(1, Ordering::Relaxed);
                link.failed(op);
            }
            if stopping {
                return;
            }
            let pause = link.backoff;
            link.backoff = (link.backoff * 2).min(MAX_BACKOFF);
            sleep_unless_stopped(b, jitter(pause));
            continue;
        }
        if Instant::now() >= link.next_beat {
            link.beat();
            continue;
        }
        let wait = link
            .next_beat
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        let first = match rx.recv_timeout(wait) {
            Ok(op) => op,
            Err(RecvTimeoutError::Timeout) if stopping => {
                link.leave();
                return;
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        batch.push(first);
        let deadline = Instant::now() + batch_wait;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
        b.stats.pending.fetch_sub(batch.len(), Ordering::Relaxed);
        link.run(&mut batch);
    }
}

fn sleep_unless_stopped(b: &Broker, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !b.stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
    }
}

/// `d` ± 25 %, so nodes that lost Redis together do not come back in step.
fn jitter(d: Duration) -> Duration {
    let r = super::node_id();
    let frac = u64::from_str_radix(&r[..4], 16).unwrap_or(0) as f64 / 65535.0;
    d.mul_f64(0.75 + 0.5 * frac)
}

fn connect(url: &str) -> redis::RedisResult<Connection> {
    let client = redis::Client::open(url)?;
    let con = client.get_connection_with_timeout(IO_TIMEOUT)?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

impl Link {
    fn b(&self) -> &Broker {
        broker(&self.shared)
    }

    fn connect(&mut self) -> bool {
        let b = broker(&self.shared);
        let mut con = match connect(&b.cfg.url) {
            Ok(c) => c,
            Err(e) => {
                if !self.outage {
                    tracing::warn!(error = %e, "broker: cannot connect to Redis");
                }
                self.outage = true;
                return false;
            }
        };
        let mut pipe = redis::pipe();
        for s in self.scripts.all() {
            pipe.cmd("SCRIPT").arg("LOAD").arg(s);
        }
        if let Err(e) = pipe.query::<Vec<Value>>(&mut con) {
            tracing::warn!(error = %e, "broker: cannot load the scripts");
            self.outage = true;
            return false;
        }
        if self.outage {
            b.stats.reconnects.inc();
            tracing::info!("broker: connected to Redis again");
        } else {
            tracing::info!(node = %b.names.node, "broker: connected to Redis");
        }
        self.con = Some(con);
        self.backoff = FIRST_BACKOFF;
        self.registered = false;
        self.next_beat = Instant::now();
        true
    }

    fn down(&mut self, e: &redis::RedisError) {
        tracing::warn!(error = %e, "broker: Redis failed; serving local traffic, reconnecting");
        self.con = None;
        self.outage = true;
        self.registered = false;
        self.b().needs_resync.store(true, Ordering::Relaxed);
        self.b().stats.link_up.store(false, Ordering::Relaxed);
    }

    /// Runs a pipeline on the connection; on an error the link goes down.
    fn query(&mut self, pipe: &redis::Pipeline) -> Option<Vec<Value>> {
        let con = self.con.as_mut()?;
        if pipe.is_empty() {
            return Some(Vec::new());
        }
        broker(&self.shared).stats.pipelines.inc();
        match pipe.query::<Vec<Value>>(con) {
            Ok(v) => Some(v),
            Err(e) => {
                self.down(&e);
                None
            }
        }
    }

    /// One batch of operations in one pipeline.
    fn run(&mut self, batch: &mut Vec<Op>) {
        let b = broker(&self.shared);
        let names = b.names.clone();
        let skip = self.skip_below;
        // Presence changes the last resync's snapshot already holds: a
        // connect is dropped, a join or leave only asks for the count.
        batch.retain(|op| !matches!(op, Op::Connect { seq, .. } if *seq < skip));
        for op in batch.iter_mut() {
            if let Op::Member { seq, delta, .. } = op {
                if *seq < skip {
                    *delta = 0;
                }
            }
        }
        let mut pipe = redis::pipe();
        for op in batch.iter() {
            match op {
                Op::Publish { room, text } => {
                    let shard = names.room_shard(names.shard(room));
                    pipe.cmd("PUBLISH")
                        .arg(shard)
                        .arg(payload(&names.node, 'r', room, text));
                }
                Op::Message {
                    room,
                    pre,
                    post,
                    exclude,
                    ..
                } => {
                    let mut head = payload(&names.node, 'm', room, "");
                    if let Some(c) = exclude {
                        head.extend_from_slice(
                            format!("{}.{}.{}", c.worker, c.key, c.gen).as_bytes(),
                        );
                    }
                    head.push(b'\n');
                    let (size, ttl) = history_limits(b);
                    eval(
                        &mut pipe,
                        &self.scripts.message,
                        &[
                            &names.key("rh", room),
                            &names.key("rs", room),
                            &names.room_shard(names.shard(room)),
                        ],
                        &[
                            new_epoch().as_bytes(),
                            pre.as_bytes(),
                            post.as_bytes(),
                            &head,
                            size.to_string().as_bytes(),
                            ttl.to_string().as_bytes(),
                        ],
                    );
                }
                Op::History {
                    room, after, limit, ..
                } => {
                    eval(
                        &mut pipe,
                        &self.scripts.history,
                        &[&names.key("rh", room), &names.key("rs", room)],
                        &[
                            new_epoch().as_bytes(),
                            after.to_string().as_bytes(),
                            (limit + 1).to_string().as_bytes(),
                        ],
                    );
                }
                Op::Private { to, text, .. } => {
                    let uc = names.key("uc", "");
                    let ch = names.user_shard(names.shard(to));
                    let p = payload(&names.node, 'p', to, text);
                    eval(
                        &mut pipe,
                        &self.scripts.private,
                        &[&uc, &ch],
                        &[to.as_bytes(), &p],
                    );
                }
                Op::Connect { user, delta, .. } => {
                    let keys = [
                        names.key("uc", ""),
                        names.key("ui", ""),
                        names.node_key("nu", &names.node),
                        names.key("cc", ""),
                    ];
                    let i = info(user, user.status());
                    eval(
                        &mut pipe,
                        &self.scripts.connect,
                        &[&keys[0], &keys[1], &keys[2], &keys[3]],
                        &[
                            user.id().as_bytes(),
                            i.as_bytes(),
                            delta.to_string().as_bytes(),
                        ],
                    );
                }
                Op::Member {
                    room, user, delta, ..
                } => {
                    let keys = [
                        names.key("rc", room),
                        names.key("rm", room),
                        names.node_key("nr", &names.node),
                    ];
                    let field = format!("{room}\n{}", user.id());
                    eval(
                        &mut pipe,
                        &self.scripts.member,
                        &[&keys[0], &keys[1], &keys[2]],
                        &[
                            user.id().as_bytes(),
                            delta.to_string().as_bytes(),
                            field.as_bytes(),
                        ],
                    );
                }
                Op::Status { user, status } => {
                    let ui = names.key("ui", "");
                    let i = info(user, *status);
                    eval(
                        &mut pipe,
                        &self.scripts.status,
                        &[&ui],
                        &[user.id().as_bytes(), i.as_bytes()],
                    );
                }
                Op::Who {
                    room,
                    cursor,
                    limit,
                    ..
                } => {
                    let keys = [names.key("rm", room), names.key("ui", "")];
                    eval(
                        &mut pipe,
                        &self.scripts.who,
                        &[&keys[0], &keys[1]],
                        &[
                            cursor.as_deref().unwrap_or("").as_bytes(),
                            limit.to_string().as_bytes(),
                        ],
                    );
                }
                Op::Wake => {
                    pipe.cmd("PUBLISH").arg(names.node_channel()).arg(payload(
                        &names.node,
                        'w',
                        "",
                        "",
                    ));
                }
            }
        }
        let Some(values) = self.query(&pipe) else {
            for op in batch.drain(..) {
                self.failed(op);
            }
            return;
        };
        let mut events: Vec<(Box<str>, String)> = Vec::new();
        for (op, v) in batch.drain(..).zip(values.iter()) {
            self.done(op, v, &mut events);
        }
        self.publish_events(&events);
    }

    /// Publishes room events made here (user_joined, user_left) to the
    /// other nodes; they were fanned out locally already.
    fn publish_events(&mut self, events: &[(Box<str>, String)]) {
        if events.is_empty() {
            return;
        }
        let names = self.b().names.clone();
        let mut pipe = redis::pipe();
        for (room, text) in events {
            pipe.cmd("PUBLISH")
                .arg(names.room_shard(names.shard(room)))
                .arg(payload(&names.node, 'r', room, text))
                .ignore();
        }
        if self.query(&pipe).is_none() {
            for (room, _) in events {
                self.b().lost_room(room);
            }
        } else {
            self.b().stats.published.add(events.len() as u64);
        }
    }

    fn member_events(&self, members: usize) -> bool {
        let max = self.shared.cfg.member_events_max_room_size;
        max == 0 || members <= max
    }

    fn send(&self, conn: ConnId, text: &str) {
        if let Some(h) = handle(&self.shared) {
            h.send(conn, Message::Text(text));
        }
    }

    /// The ack of a join or leave the broker answers: the cluster's member
    /// count, plus `fields` (`(name, raw JSON)`: a join's history position).
    fn member_ack(
        &mut self,
        reply: &Reply,
        room: &str,
        members: u64,
        fields: &[(&'static str, String)],
    ) {
        let id = reply.id.as_ref().map(|i| i.as_id());
        let out = self
            .out
            .start("ack", id)
            .str("room", room)
            .num("members", members);
        for (name, raw) in fields {
            out.raw(name, raw);
        }
        let text = out.finish().to_owned();
        self.send(reply.conn, &text);
    }

    /// The reply to an operation Redis answered.
    fn done(&mut self, op: Op, v: &Value, events: &mut Vec<(Box<str>, String)>) {
        match op {
            Op::Publish { .. } => self.b().stats.published.inc(),
            Op::Message {
                room, reply, ts, ..
            } => {
                self.b().stats.published.inc();
                let (offset, epoch) = match items(v) {
                    [o, e] => (int(o).max(0) as u64, text(e).unwrap_or("")),
                    _ => return self.message_failed(reply, v),
                };
                let reply = match reply {
                    MessageReply::Conn(r) => r,
                    MessageReply::Wait(tx) => {
                        let _ = tx.send(Some((offset, epoch.to_owned())));
                        return;
                    }
                };
                if let Some(id) = reply.id.as_ref().map(|i| i.as_id()) {
                    let t = self
                        .out
                        .start("ack", Some(id))
                        .str("room", &room)
                        .num("ts", ts)
                        .num("offset", offset)
                        .str("epoch", epoch)
                        .finish()
                        .to_owned();
                    self.send(reply.conn, &t);
                }
            }
            Op::History {
                room, limit, reply, ..
            } => {
                let [epoch, offset, oldest, events] = items(v) else {
                    return self.history_failed(&reply);
                };
                let events = items(events);
                let more = events.len() > limit;
                let page = &events[..events.len().min(limit)];
                let mut messages = String::from("[");
                let mut last = None;
                for (i, e) in page.iter().enumerate() {
                    if i > 0 {
                        messages.push(',');
                    }
                    let t = text(e).unwrap_or("null");
                    messages.push_str(t);
                    last = event_offset(t);
                }
                messages.push(']');
                let id = reply.id.as_ref().map(|i| i.as_id());
                let out = self
                    .out
                    .start("ack", id)
                    .str("room", &room)
                    .str("epoch", text(epoch).unwrap_or(""))
                    .num("offset", int(offset).max(0) as u64)
                    .num("oldest", int(oldest).max(0) as u64)
                    .raw("messages", &messages);
                match last.filter(|_| more) {
                    Some(n) => out.num("next", n),
                    None => out.raw("next", "null"),
                };
                let t = out.finish().to_owned();
                self.send(reply.conn, &t);
            }
            Op::Private {
                to,
                reply,
                local,
                ts,
                ..
            } => {
                let n = int(v).max(0) as u64;
                self.private_reply(&reply, &to, local, n, ts);
            }
            Op::Member {
                room,
                user,
                delta,
                reply,
                ack,
                ack_fields,
                subs_version,
                join,
                ..
            } => {
                let subscribed = delta < 0 || self.wait_subscribed(subs_version);
                let a = items(v);
                let (change, members) = match a {
                    [c, m] => (int(c), int(m).max(0) as u64),
                    _ => (0, 0),
                };
                if let Some(join) = join {
                    if subscribed {
                        self.recover(join, &room, members, &reply, &ack_fields);
                    } else {
                        // Later messages might not reach this node: no
                        // position is promised.
                        self.join_failed(join);
                    }
                } else if ack {
                    self.member_ack(&reply, &room, members, &ack_fields);
                }
                let kind = match (change, delta) {
                    (1, _) if self.member_events(members as usize) => "user_joined",
                    (-1, _) if self.member_events(members as usize + 1) => "user_left",
                    _ => return,
                };
                let text = self
                    .out
                    .start(kind, None)
                    .str("room", &room)
                    .user("user", user.id(), user.name())
                    .num("members", members)
                    .finish()
                    .to_owned();
                if let Some(h) = handle(&self.shared) {
                    h.publish_except(&room, Message::Text(&text), Some(reply.conn));
                }
                events.push((room, text));
            }
            Op::Who {
                room,
                cursor,
                limit,
                reply,
            } => {
                let a = items(v);
                let [count, more, ids, infos] = a else {
                    return self.who_local(&room, cursor.as_deref(), limit, &reply);
                };
                let mut members = String::from("[");
                let mut w = Out::default();
                for (i, id) in items(ids).iter().enumerate() {
                    if i > 0 {
                        members.push(',');
                    }
                    match items(infos).get(i).and_then(text) {
                        Some(info) => members.push_str(info),
                        None => {
                            let id = text(id).unwrap_or("");
                            w.buf.clear();
                            w.buf.extend_from_slice(b"{\"id\":");
                            w.string(id);
                            w.buf.extend_from_slice(b",\"name\":");
                            w.string(id);
                            w.buf.extend_from_slice(b",\"status\":\"online\"}");
                            members.push_str(std::str::from_utf8(&w.buf).unwrap_or("{}"));
                        }
                    }
                }
                members.push(']');
                let next = (int(more) == 1)
                    .then(|| items(ids).last().and_then(text))
                    .flatten();
                self.who_reply(&room, int(count).max(0) as u64, &members, next, &reply);
            }
            Op::Connect {
                user, delta, conn, ..
            } => {
                // The user's connections over the cluster, this one included.
                let max = self.shared.cfg.max_connections_per_user as i64;
                if delta > 0 && max > 0 && int(v) > max {
                    if let Some(h) = handle(&self.shared) {
                        let reason =
                            format!("{} has {max} connections, the most allowed", user.id());
                        h.close(conn, CLOSE_TOO_MANY_CONNECTIONS, clip(&reason));
                    }
                }
            }
            Op::Status { .. } | Op::Wake => {}
        }
    }

    /// Waits (at most a second, and only while the subscription is up)
    /// until the subscriber has subscribed to the shards `version` needs, so
    /// a join's ack is never ahead of its room's subscription.
    /// True when it is.
    fn wait_subscribed(&self, version: u64) -> bool {
        let b = self.b();
        let deadline = Instant::now() + Duration::from_secs(1);
        while b.subs_applied.load(Ordering::Acquire) < version
            && b.stats.sub_up.load(Ordering::Relaxed)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(50));
        }
        b.subs_applied.load(Ordering::Acquire) >= version
    }

    fn who_reply(
        &mut self,
        room: &str,
        count: u64,
        members: &str,
        next: Option<&str>,
        reply: &Reply,
    ) {
        let id = reply.id.as_ref().map(|i| i.as_id());
        let out = self
            .out
            .start("ack", id)
            .str("room", room)
            .num("count", count)
            .raw("members", members);
        match next {
            Some(n) => out.str("next", n),
            None => out.raw("next", "null"),
        };
        let text = out.finish().to_owned();
        self.send(reply.conn, &text);
    }

    /// `who` from this node's members only (Redis is down).
    fn who_local(&mut self, room: &str, cursor: Option<&str>, limit: usize, reply: &Reply) {
        let Some(r) = self.shared.dir.room(room) else {
            return self.who_reply(room, 0, "[]", None, reply);
        };
        let page = self.shared.dir.page(&r, cursor, limit);
        let list: Vec<String> = page.members.iter().map(|(u, s)| info(u, *s)).collect();
        let members = format!("[{}]", list.join(","));
        self.who_reply(
            room,
            page.count as u64,
            &members,
            page.next.as_deref(),
            reply,
        );
    }

    fn private_reply(&mut self, reply: &Reply, to: &str, local: u64, cluster: u64, ts: u64) {
        let id = reply.id.as_ref().map(|i| i.as_id());
        let delivered = cluster.max(local);
        if delivered == 0 {
            let text = wire::error(
                &mut self.out,
                id,
                ErrorCode::UserOffline,
                "that user has no connection",
            )
            .to_owned();
            return self.send(reply.conn, &text);
        }
        if id.is_none() {
            return;
        }
        let text = self
            .out
            .start("ack", id)
            .str("to", to)
            .num("delivered", delivered)
            .num("ts", ts)
            .finish()
            .to_owned();
        self.send(reply.conn, &text);
    }

    /// An operation that could not reach Redis: counted, and answered from
    /// this node's own state so no request goes unanswered.
    fn failed(&mut self, op: Op) {
        self.b().stats.publish_failures.inc();
        match op {
            Op::Publish { room, .. } => self.b().lost_room(&room),
            Op::Message { reply, .. } => self.message_failed(reply, &Value::Nil),
            Op::History { reply, .. } => self.history_failed(&reply),
            Op::Member {
                join: Some(join), ..
            } => self.join_failed(join),
            Op::Private {
                to,
                reply,
                local,
                ts,
                ..
            } => self.private_reply(&reply, &to, local, 0, ts),
            Op::Member {
                room,
                reply,
                ack,
                ack_fields,
                ..
            } if ack => {
                let members = self.shared.dir.room(&room).map_or(0, |r| r.count()) as u64;
                self.member_ack(&reply, &room, members, &ack_fields);
            }
            Op::Who {
                room,
                cursor,
                limit,
                reply,
            } => self.who_local(&room, cursor.as_deref(), limit, &reply),
            Op::Member { .. } | Op::Connect { .. } | Op::Status { .. } | Op::Wake => {}
        }
    }

    /// The cluster's member count goes to the join's [`Pending`]; the
    /// RECOVER script publishes the position and the missed messages to
    /// this node's channel, where the subscriber picks them up in order.
    fn recover(
        &mut self,
        join: u64,
        room: &str,
        members: u64,
        reply: &Reply,
        fields: &[(&'static str, String)],
    ) {
        let _ = reply;
        {
            let mut p = lock(&self.b().pending);
            match p.get_mut(&join) {
                Some(pending) => pending.members = Some(members),
                // The connection closed, or the subscription failed meanwhile.
                None => return,
            }
        }
        let b = self.b();
        let names = b.names.clone();
        let (_, ttl) = history_limits(b);
        let max = b.max_recover.load(Ordering::Relaxed);
        let since_epoch = fields
            .iter()
            .find(|f| f.0 == "since_epoch")
            .map_or("", |f| f.1.as_str());
        let since_offset = fields
            .iter()
            .find(|f| f.0 == "since_offset")
            .map_or("0", |f| f.1.as_str());
        let head = payload(&names.node, 'j', &join.to_string(), "");
        let mut pipe = redis::pipe();
        eval(
            &mut pipe,
            &self.scripts.recover,
            &[
                &names.key("rh", room),
                &names.key("rs", room),
                &names.node_channel(),
            ],
            &[
                new_epoch().as_bytes(),
                since_epoch.as_bytes(),
                since_offset.as_bytes(),
                max.to_string().as_bytes(),
                &head,
                ttl.to_string().as_bytes(),
            ],
        );
        if self.query(&pipe).is_none() {
            self.join_failed(join);
        }
    }

    /// A pending join Redis could not answer: the connection joins with
    /// `recovered: false` (`unavailable`) when it asked for recovery.
    fn join_failed(&mut self, join: u64) {
        join_failed(&self.shared, join);
    }

    fn message_failed(&mut self, reply: MessageReply, v: &Value) {
        if let Value::ServerError(e) = v {
            tracing::error!(error = ?e, "broker: the message script failed");
        }
        let reply = match reply {
            MessageReply::Conn(r) => r,
            MessageReply::Wait(tx) => {
                let _ = tx.send(None);
                return;
            }
        };
        let id = reply.id.as_ref().map(|i| i.as_id());
        let t = wire::error(
            &mut self.out,
            id,
            ErrorCode::Internal,
            "Redis is unavailable: the message was not sent",
        )
        .to_owned();
        self.send(reply.conn, &t);
    }

    fn history_failed(&mut self, reply: &Reply) {
        let id = reply.id.as_ref().map(|i| i.as_id());
        let t = wire::error(
            &mut self.out,
            id,
            ErrorCode::HistoryUnavailable,
            "Redis is unavailable: the room's history cannot be read",
        )
        .to_owned();
        self.send(reply.conn, &t);
    }

    /// Heartbeat, probe, wedge check, dead-node reaping; resync when needed.
    fn beat(&mut self) {
        let shared = self.shared.clone();
        let b = broker(&shared);
        let names = b.names.clone();
        let interval = Duration::from_millis(b.cfg.probe_interval_ms);
        self.next_beat = Instant::now() + interval;
        if b.needs_resync.load(Ordering::Relaxed) {
            self.registered = false;
        }
        if !self.registered {
            self.resync();
            if self.con.is_none() {
                return;
            }
        }
        let alive = names.node_key("alive", &names.node);
        let now_us = b.started.elapsed().as_micros() as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(&alive);
        pipe.cmd("SET")
            .arg(&alive)
            .arg(1)
            .arg("PX")
            .arg(b.cfg.node_ttl_secs * 1000)
            .ignore();
        pipe.cmd("PUBLISH")
            .arg(names.node_channel())
            .arg(payload(&names.node, 'k', "", &now_us.to_string()))
            .ignore();
        // Cluster-wide counts, O(1) each, for /status and /metrics.
        pipe.cmd("SCARD").arg(names.key("nodes", ""));
        pipe.cmd("HLEN").arg(names.key("uc", ""));
        pipe.cmd("GET").arg(names.key("cc", ""));
        let Some(v) = self.query(&pipe) else {
            return;
        };
        if let [_, nodes, users, conns] = &v[..] {
            let st = &b.stats;
            st.cluster_nodes
                .store(int(nodes).max(0) as u64, Ordering::Relaxed);
            st.cluster_users
                .store(int(users).max(0) as u64, Ordering::Relaxed);
            st.cluster_connections
                .store(int(conns).max(0) as u64, Ordering::Relaxed);
        }
        if v.first().map(int) == Some(0) {
            // Our heartbeat expired (we were reaped, or Redis lost its data).
            tracing::warn!("broker: this node's presence was gone from Redis; resyncing");
            self.resync();
        }
        // Wedged: no probe came back for 3 intervals while Redis answers.
        let now_ms = b.started.elapsed().as_millis() as u64;
        let seen = b.probe_seen_ms.load(Ordering::Relaxed);
        let limit = 3 * b.cfg.probe_interval_ms;
        if now_ms.saturating_sub(seen) > limit && now_ms > limit {
            if !b.stats.wedged.swap(true, Ordering::Relaxed) {
                b.stats.wedged_total.inc();
                tracing::warn!(
                    "broker: the subscription has seen no probe for {limit} ms: wedged, resubscribing"
                );
            }
            self.wedged_since_ms.get_or_insert(now_ms);
        } else {
            self.wedged_since_ms = None;
        }
        if Instant::now() >= self.next_reap {
            self.next_reap = Instant::now() + Duration::from_millis(b.cfg.node_ttl_secs * 500);
            self.reap();
        }
    }

    /// Removes the users of nodes whose heartbeat expired.
    fn reap(&mut self) {
        let names = self.b().names.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("SMEMBERS").arg(names.key("nodes", ""));
        let Some(v) = self.query(&pipe) else {
            return;
        };
        let nodes: Vec<String> = v
            .first()
            .map(items)
            .unwrap_or(&[])
            .iter()
            .filter_map(text)
            .filter(|n| *n != names.node)
            .map(str::to_owned)
            .collect();
        for node in nodes {
            let left = self.cleanup(&node, true);
            if let Some(left) = left {
                self.b().stats.nodes_reaped.inc();
                self.left_events(&left);
            }
        }
    }

    /// Runs the cleanup script for `node`; the users who left, or `None`
    /// when nothing was done (alive, or an error).
    fn cleanup(
        &mut self,
        node: &str,
        only_dead: bool,
    ) -> Option<Vec<(String, String, String, u64)>> {
        let names = self.b().names.clone();
        let keys = [
            names.node_key("nu", node),
            names.node_key("nr", node),
            names.key("uc", ""),
            names.key("ui", ""),
            names.key("nodes", ""),
            names.node_key("alive", node),
        ];
        let mut pipe = redis::pipe();
        if only_dead {
            pipe.cmd("EXISTS").arg(&keys[5]);
        }
        let k: Vec<&str> = keys.iter().map(String::as_str).collect();
        eval(
            &mut pipe,
            &self.scripts.cleanup,
            &k,
            &[
                names.prefix.as_bytes(),
                node.as_bytes(),
                if only_dead { b"1" } else { b"0" },
            ],
        );
        let v = self.query(&pipe)?;
        if only_dead && v.first().map(int) == Some(1) {
            return None;
        }
        let list = items(v.last()?);
        let mut left = Vec::new();
        for q in list.chunks(4) {
            if let [room, user, info, members] = q {
                left.push((
                    text(room).unwrap_or("").to_owned(),
                    text(user).unwrap_or("").to_owned(),
                    text(info).unwrap_or("").to_owned(),
                    int(members).max(0) as u64,
                ));
            }
        }
        if only_dead {
            tracing::info!(
                node,
                users_left = left.len(),
                "broker: removed a dead node's users"
            );
        }
        Some(left)
    }

    /// `user_left` for users a dead node took with it, on every node.
    fn left_events(&mut self, left: &[(String, String, String, u64)]) {
        let mut events = Vec::new();
        for (room, user, info, members) in left {
            if !self.member_events(*members as usize + 1) {
                continue;
            }
            let name: String = serde_json::from_str::<serde_json::Value>(info)
                .ok()
                .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                .unwrap_or_else(|| user.clone());
            let text = self
                .out
                .start("user_left", None)
                .str("room", room)
                .user("user", user, &name)
                .num("members", *members)
                .finish()
                .to_owned();
            if let Some(h) = handle(&self.shared) {
                h.publish(room, Message::Text(&text));
            }
            events.push((room.as_str().into(), text));
        }
        self.publish_events(&events);
    }

    /// Puts this node's presence (from the local directory) back into Redis
    /// after a (re)connect, and tells the other nodes which rooms lost
    /// events while Redis was out of reach.
    fn resync(&mut self) {
        let shared = self.shared.clone();
        let b = broker(&shared);
        let names = b.names.clone();
        if self.cleanup(&names.node, false).is_none() {
            return;
        }
        let cut = b.seq.load(Ordering::Acquire);
        let snap = self.shared.dir.snapshot();
        let mut pipe = redis::pipe();
        pipe.cmd("SADD")
            .arg(names.key("nodes", ""))
            .arg(&names.node)
            .ignore();
        pipe.cmd("SET")
            .arg(names.node_key("alive", &names.node))
            .arg(1)
            .arg("PX")
            .arg(b.cfg.node_ttl_secs * 1000)
            .ignore();
        let (uc, ui, nu, nr, cc) = (
            names.key("uc", ""),
            names.key("ui", ""),
            names.node_key("nu", &names.node),
            names.node_key("nr", &names.node),
            names.key("cc", ""),
        );
        for (user, status, conns) in &snap.users {
            let i = info(user, *status);
            eval(
                &mut pipe,
                &self.scripts.connect,
                &[&uc, &ui, &nu, &cc],
                &[
                    user.id().as_bytes(),
                    i.as_bytes(),
                    conns.to_string().as_bytes(),
                ],
            )
            .ignore();
        }
        for (room, members) in &snap.rooms {
            let (rc, rm) = (names.key("rc", room), names.key("rm", room));
            for (user, n) in members {
                let field = format!("{room}\n{user}");
                eval(
                    &mut pipe,
                    &self.scripts.member,
                    &[&rc, &rm, &nr],
                    &[user.as_bytes(), n.to_string().as_bytes(), field.as_bytes()],
                )
                .ignore();
            }
        }
        if self.query(&pipe).is_none() {
            return;
        }
        self.registered = true;
        self.skip_below = cut;
        b.needs_resync.store(false, Ordering::Relaxed);
        b.stats.link_up.store(true, Ordering::Relaxed);
        self.outage = false;
        // Events from here that could not cross (Redis was down, or the
        // queue was full): the other nodes' members of those rooms are told.
        let lost = lock(&b.lost).replace(Default::default());
        if lost.as_ref().is_some_and(|l| l.is_empty()) {
            return;
        }
        let mut pipe = redis::pipe();
        match lost {
            Some(rooms) => {
                for room in rooms {
                    let text = gap_text(&mut self.out, &room);
                    pipe.cmd("PUBLISH")
                        .arg(names.room_shard(names.shard(&room)))
                        .arg(payload(&names.node, 'r', &room, &text))
                        .ignore();
                }
            }
            None => {
                pipe.cmd("SMEMBERS").arg(names.key("nodes", ""));
            }
        }
        let Some(v) = self.query(&pipe) else {
            return;
        };
        if let Some(nodes) = v.first() {
            let mut pipe = redis::pipe();
            for node in items(nodes).iter().filter_map(text) {
                pipe.cmd("PUBLISH")
                    .arg(format!("{}:n:{node}", names.prefix))
                    .arg(payload(&names.node, 'G', "", ""))
                    .ignore();
            }
            self.query(&pipe);
        }
    }

    /// Clean exit: this node's users leave every room now (not after the TTL).
    fn leave(&mut self) {
        let names = self.b().names.clone();
        if self.con.is_none() {
            return;
        }
        if let Some(left) = self.cleanup(&names.node, false) {
            self.left_events(&left);
        }
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(names.node_key("alive", &names.node))
            .ignore();
        self.query(&pipe);
        tracing::info!("broker: left the cluster");
    }
}

/// The history kept per room in Redis: (messages, ttl ms).
fn history_limits(b: &Broker) -> (usize, u64) {
    (
        b.history_size.load(Ordering::Relaxed),
        b.history_ttl_ms.load(Ordering::Relaxed),
    )
}

/// A fresh epoch for a room Redis does not know (yet, or any more).
fn new_epoch() -> String {
    format!("{:016x}", super::super::history::random_u64(0x5eed))
}

/// The `offset` of a stored `message` event.
fn event_offset(event: &str) -> Option<u64> {
    let at = event.rfind("\"offset\":")? + 9;
    let digits: String = event[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Tells a pending join's connection that Redis could not answer it.
fn join_failed(shared: &Shared, join: u64) {
    let Some(conn) = lock(&broker(shared).pending).get(&join).map(|p| p.conn) else {
        return;
    };
    if let Some(h) = handle(shared) {
        h.notify(conn, format!("R{join}\nunavailable\n\n0").as_bytes());
    }
}

/// A close reason cut to fit a close frame (123 bytes).
fn clip(s: &str) -> &str {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `{"type":"gap","room":..,"reason":"broker"}`.
fn gap_text(out: &mut Out, room: &str) -> String {
    out.start(GAP_EVENT, None)
        .str("room", room)
        .str("reason", "broker")
        .finish()
        .to_owned()
}

/// Sends a `gap` to every local room.
fn local_gaps(shared: &Shared) {
    let Some(h) = handle(shared) else {
        return;
    };
    let mut out = Out::default();
    let rooms = shared.dir.snapshot().rooms;
    for (room, _) in &rooms {
        let text = gap_text(&mut out, room);
        h.publish(room, Message::Text(&text));
    }
    broker(shared).stats.gaps.add(rooms.len() as u64);
}

/// A connection id as written by the link (`worker.key.gen`).
fn parse_conn(s: &str) -> Option<ConnId> {
    let mut it = s.split('.');
    let worker = it.next()?.parse().ok()?;
    let key = it.next()?.parse().ok()?;
    let gen = it.next()?.parse().ok()?;
    Some(ConnId { worker, key, gen })
}

/// The subscriber thread: see the module doc of `rooms::broker`.
pub(super) fn run_subscriber(shared: Arc<Shared>) {
    let b = broker(&shared);
    let names: Names = b.names.clone();
    let mut backoff = FIRST_BACKOFF;
    let mut failed_before = false;
    let read_timeout = Duration::from_millis(3 * b.cfg.probe_interval_ms);
    while !b.stop.load(Ordering::Acquire) {
        let mut con = match connect(&b.cfg.url) {
            Ok(c) => c,
            Err(_) => {
                failed_before = true;
                sleep_unless_stopped(b, jitter(backoff));
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let _ = con.set_read_timeout(Some(read_timeout));
        let mut ps = con.as_pubsub();
        let (mut current, mut version) = {
            let subs = lock(&b.subs);
            let set: std::collections::HashSet<String> =
                subs.channels(&names).into_iter().collect();
            (set, subs.version)
        };
        let list: Vec<&String> = current.iter().collect();
        if ps.subscribe(&list).is_err() {
            failed_before = true;
            drop(ps);
            sleep_unless_stopped(b, jitter(backoff));
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        backoff = FIRST_BACKOFF;
        b.subs_applied.store(version, Ordering::Release);
        b.stats.sub_up.store(true, Ordering::Relaxed);
        if failed_before {
            b.stats.reconnects.inc();
            // What other nodes published meanwhile did not arrive here.
            local_gaps(&shared);
        }
        failed_before = true;
        loop {
            let msg = match ps.get_message() {
                Ok(m) => m,
                Err(e) => {
                    if e.is_timeout() {
                        if !b.stats.wedged.swap(true, Ordering::Relaxed) {
                            b.stats.wedged_total.inc();
                        }
                        tracing::warn!("broker: no probe on the subscription: resubscribing");
                    } else {
                        tracing::warn!(error = %e, "broker: the subscription failed");
                    }
                    break;
                }
            };
            let Some((origin, kind, target, text)) = parse(msg.get_payload_bytes()) else {
                continue;
            };
            match kind {
                b'k' | b'w' if origin == names.node => {
                    if kind == b'k' {
                        let now_us = b.started.elapsed().as_micros() as u64;
                        let sent: u64 = text.parse().unwrap_or(now_us);
                        b.stats
                            .lag_us
                            .store(now_us.saturating_sub(sent), Ordering::Relaxed);
                        b.probe_seen_ms
                            .store(b.started.elapsed().as_millis() as u64, Ordering::Relaxed);
                        b.stats.wedged.store(false, Ordering::Relaxed);
                    }
                    // Subscribe to the shards now needed, leave the others.
                    let (want, v) = {
                        let subs = lock(&b.subs);
                        let set: std::collections::HashSet<String> =
                            subs.channels(&names).into_iter().collect();
                        (set, subs.version)
                    };
                    let add: Vec<&String> = want.difference(&current).collect();
                    let remove: Vec<&String> = current.difference(&want).collect();
                    let ok = (add.is_empty() || ps.subscribe(&add).is_ok())
                        && (remove.is_empty() || ps.unsubscribe(&remove).is_ok());
                    if !ok {
                        break;
                    }
                    current = want;
                    version = v;
                    b.subs_applied.store(version, Ordering::Release);
                }
                b'j' if origin == names.node => {
                    let Ok(join) = target.parse::<u64>() else {
                        continue;
                    };
                    let conn = lock(&b.pending).get(&join).map(|p| p.conn);
                    if let (Some(conn), Some(h)) = (conn, handle(&shared)) {
                        let mut n = format!("R{join}\n").into_bytes();
                        n.extend_from_slice(text.as_bytes());
                        h.notify(conn, &n);
                    }
                }
                b'm' => {
                    let Some((exclude, event)) = text.split_once('\n') else {
                        continue;
                    };
                    // A connection id means something on its own node only.
                    let exclude = (origin == names.node)
                        .then(|| parse_conn(exclude))
                        .flatten();
                    match handle(&shared) {
                        Some(h) if shared.dir.room(target).is_some() => {
                            b.stats.received.inc();
                            h.publish_except(target, Message::Text(event), exclude);
                        }
                        _ => b.stats.filtered.inc(),
                    }
                }
                _ if origin == names.node => {}
                b'r' => match handle(&shared) {
                    Some(h) if shared.dir.room(target).is_some() => {
                        b.stats.received.inc();
                        h.publish(target, Message::Text(text));
                    }
                    _ => b.stats.filtered.inc(),
                },
                b'p' => {
                    let conns = shared.dir.connections_of(target);
                    match handle(&shared) {
                        Some(h) if !conns.is_empty() => {
                            b.stats.received.inc();
                            for c in conns {
                                h.send(c, Message::Text(text));
                            }
                        }
                        _ => b.stats.filtered.inc(),
                    }
                }
                b'G' => local_gaps(&shared),
                _ => {}
            }
        }
        b.stats.sub_up.store(false, Ordering::Relaxed);
        // Joins whose position may have been lost with the subscription.
        let joins: Vec<u64> = lock(&b.pending).keys().copied().collect();
        for join in joins {
            join_failed(&shared, join);
        }
        // Redis may have restarted empty: the link writes this node's
        // presence again.
        b.needs_resync.store(true, Ordering::Relaxed);
        drop(ps);
        sleep_unless_stopped(b, jitter(backoff));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_whatever_the_target_holds() {
        let p = payload("n1", 'p', "we|ird\nuser", "{\"a\":\"|\"}");
        assert_eq!(
            parse(&p),
            Some(("n1", b'p', "we|ird\nuser", "{\"a\":\"|\"}"))
        );
        assert_eq!(parse(b"n1|r|99|short"), None);
        assert_eq!(parse(b"garbage"), None);
    }
}
