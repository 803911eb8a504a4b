//! The admin HTTP API: rooms, members, publishing, a user's connections and
//! disconnecting them, behind a bearer token (`docs/protocol.md`, "Admin
//! HTTP API").
//!
//! It has a listener of its own (`admin.listen`) served by blocking threads,
//! not the WebSocket port's `on_http`, for three reasons:
//!
//! - its answers need every worker (a room's counters, a user's connections
//!   on each worker): a worker thread cannot wait for the workers, itself
//!   included, but a thread of its own can;
//! - it reads request bodies (JSON), which the engine's HTTP path does not;
//! - an operator can keep it on a private interface, away from clients.
//!
//! One thread accepts; each request gets a thread of its own, at most
//! [`MAX_CONCURRENT`] at once (503 past it), every read and write bounded by
//! [`IO_TIMEOUT`], the head by [`MAX_HEAD_BYTES`] and the body by
//! `admin.max_body_bytes`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::runtime::{ConnectionInfo, Error, HttpResponse, ServerHandle};

use super::auth::unix_ms;
use super::codes::{ErrorCode, CLOSE_DISCONNECTED};
use super::config::AdminConfig;
use super::directory::Directory;
use super::history::{publish_message_then, Data, Origin};
use super::moderation::{self, Actor, Refused, RoomOptions};
use super::server::Shared;
use super::wire::clip_name as clip;
use super::wire::{self, MAX_ROOM_BYTES};

/// Largest request head (request line and headers).
pub const MAX_HEAD_BYTES: usize = 8 << 10;
/// How long one request may take to arrive, or its answer to be written.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests served at once; more get 503.
pub const MAX_CONCURRENT: usize = 8;
/// Longest `reason` of a disconnect (a close reason has at most 123 bytes).
pub const MAX_REASON_BYTES: usize = 120;
/// Longest sender `name` of an admin publish.
pub const MAX_NAME_BYTES: usize = 64;
/// The `from.id` of a message published through the admin API. Clients
/// tell it from a user's by the event's `"admin": true`, which no client
/// can set (a user may well be called `admin`).
pub const ADMIN_SENDER_ID: &str = "admin";
/// How often the accepting thread looks whether the server has stopped.
const POLL: Duration = Duration::from_millis(200);

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Every route.
    Full,
    /// `GET` routes only.
    Read,
}

/// The admin API's state: the room server's, and the tokens' digests.
#[derive(Debug)]
pub(crate) struct AdminApi {
    shared: Arc<Shared>,
    /// SHA-1 of the full-access token; compared in constant time.
    full: Option<[u8; 20]>,
    /// SHA-1 of the read-only token.
    read: Option<[u8; 20]>,
    max_body: usize,
    busy: AtomicUsize,
}

/// A bound admin listener, served once the server starts.
#[derive(Debug)]
pub(crate) struct AdminListener {
    listener: TcpListener,
    api: Arc<AdminApi>,
}

fn digest(token: &str) -> [u8; 20] {
    Sha1::digest(token.trim().as_bytes()).into()
}

/// Reads a token from `value` or from the file `file`.
fn load_token(
    key: &str,
    value: &Option<String>,
    file: &Option<std::path::PathBuf>,
) -> Result<Option<[u8; 20]>, Error> {
    if let Some(t) = value {
        return Ok(Some(digest(t)));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("{key} {}: {e}", path.display())))?;
    if text.trim().len() < 16 {
        return Err(Error::config(format!(
            "{key} {}: the token must be at least 16 bytes",
            path.display()
        )));
    }
    Ok(Some(digest(&text)))
}

impl AdminListener {
    /// Binds `admin.listen` (when set) and reads the tokens, so a bad
    /// address or token file fails at start-up.
    pub(crate) fn bind(shared: &Arc<Shared>) -> Result<Option<AdminListener>, Error> {
        let cfg: &AdminConfig = &shared.cfg.admin;
        let Some(addr) = cfg.listen else {
            return Ok(None);
        };
        let full = load_token("admin.token_file", &cfg.token, &cfg.token_file)?;
        let read = load_token(
            "admin.read_token_file",
            &cfg.read_token,
            &cfg.read_token_file,
        )?;
        let listener = TcpListener::bind(addr).map_err(|e| Error::bind(addr, e))?;
        // accept() honours the receive timeout on Linux: the thread looks at
        // the stop flag without a busy loop.
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(POLL))
            .map_err(|e| Error::io("setting the admin API listener's timeout", e))?;
        if full.is_none() && read.is_none() {
            tracing::warn!(%addr, "admin API disabled: no admin.token or admin.token_file; every request gets 403");
        }
        Ok(Some(AdminListener {
            listener,
            api: Arc::new(AdminApi {
                shared: shared.clone(),
                full,
                read,
                max_body: cfg.max_body_bytes,
                busy: AtomicUsize::new(0),
            }),
        }))
    }

    /// The address it listens on.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves requests on a thread of its own until the server has stopped.
    pub(crate) fn spawn(self, handle: ServerHandle) -> Result<(), Error> {
        let AdminListener { listener, api } = self;
        std::thread::Builder::new()
            .name("edgews-admin-api".into())
            .spawn(move || {
                while !handle.shared.stopped.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => api.clone().dispatch(stream, handle.clone()),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "admin API accept failed");
                            std::thread::sleep(POLL);
                        }
                    }
                }
            })
            .map_err(|e| Error::io("starting the admin API thread", e))?;
        Ok(())
    }
}

/// A parsed request: method, path (decoded segments), query and body.
struct Req {
    method: String,
    segments: Vec<String>,
    query: String,
    auth: Option<String>,
    body: Vec<u8>,
}

/// A response: status and JSON body.
fn reply(status: u16, body: &Value) -> HttpResponse {
    let mut text = body.to_string();
    text.push('\n');
    HttpResponse::with_type(status, "application/json", text.into_bytes())
        .header("Cache-Control", "no-store")
}

/// An error response in the protocol's error shape.
fn fail(status: u16, code: ErrorCode, message: &str) -> HttpResponse {
    HttpResponse::with_type(
        status,
        "application/json",
        wire::http_error(code, message).into_bytes(),
    )
    .header("Cache-Control", "no-store")
}

/// Why a request could not be read.
enum ReadError {
    /// Answer this, then close.
    Answer(HttpResponse),
    /// The client went away or timed out: nothing to answer.
    Gone,
}

impl AdminApi {
    /// Serves `stream` on a thread of its own, or answers 503 when
    /// [`MAX_CONCURRENT`] requests are being served.
    fn dispatch(self: Arc<Self>, stream: TcpStream, handle: ServerHandle) {
        if self.busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONCURRENT {
            self.busy.fetch_sub(1, Ordering::AcqRel);
            let resp = fail(
                503,
                ErrorCode::Internal,
                "the admin API is serving its most requests at once; retry",
            )
            .header("Retry-After", "1");
            // Read away what already arrived (without waiting), so the close
            // does not reset the connection before the 503 is read.
            let mut stream = stream;
            if stream.set_nonblocking(true).is_ok() {
                let mut sink = [0u8; 4096];
                for _ in 0..16 {
                    if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
                        break;
                    }
                }
                let _ = stream.set_nonblocking(false);
            }
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            let _ = answer(stream, &resp, false);
            return;
        }
        let api = self.clone();
        let spawned = std::thread::Builder::new()
            .name("edgews-admin-req".into())
            .spawn(move || {
                if let Err(e) = api.serve(stream, &handle) {
                    tracing::debug!(error = %e, "admin API request failed");
                }
                api.busy.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            self.busy.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(error = %e, "admin API: no thread for a request");
        }
    }

    fn serve(&self, mut stream: TcpStream, handle: &ServerHandle) -> std::io::Result<()> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let (resp, unread) = match self.read_request(&mut stream) {
            Ok(req) => (self.respond(&req, handle), false),
            Err(ReadError::Answer(resp)) => (resp, true),
            Err(ReadError::Gone) => return Ok(()),
        };
        answer(stream, &resp, unread)
    }

    /// Reads one request: the head (at most [`MAX_HEAD_BYTES`]) and a body
    /// of `Content-Length` bytes (at most `admin.max_body_bytes`).
    fn read_request(&self, stream: &mut TcpStream) -> Result<Req, ReadError> {
        let mut buf = vec![0u8; MAX_HEAD_BYTES];
        let mut len = 0;
        let (mut req, head_len, content_length) = loop {
            let n = match stream.read(&mut buf[len..]) {
                Ok(0) | Err(_) => return Err(ReadError::Gone),
                Ok(n) => n,
            };
            len += n;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&buf[..len]) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let header = |name: &str| {
                        parsed
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
                    };
                    if header("transfer-encoding").is_some() {
                        return Err(bad(
                            "Transfer-Encoding is not supported: send the body with Content-Length",
                        ));
                    }
                    let content_length = match header("content-length") {
                        None => 0,
                        Some(v) => v
                            .parse::<usize>()
                            .map_err(|_| bad("Content-Length must be a number"))?,
                    };
                    if content_length > self.max_body {
                        return Err(bad(&format!(
                            "the body has {content_length} bytes; admin.max_body_bytes is {}",
                            self.max_body
                        )));
                    }
                    let target = parsed.path.unwrap_or("/");
                    let (path, query) = target.split_once('?').unwrap_or((target, ""));
                    let segments = path
                        .split('/')
                        .filter(|s| !s.is_empty())
                        .map(|s| percent_decode_str(s).decode_utf8().map(|s| s.into_owned()))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| bad("the path is not valid UTF-8 once decoded"))?;
                    let auth = header("authorization");
                    let req = Req {
                        method: parsed.method.unwrap_or("GET").to_owned(),
                        segments,
                        query: query.to_owned(),
                        auth,
                        body: Vec::new(),
                    };
                    break (req, head_len, content_length);
                }
                Ok(httparse::Status::Partial) if len < buf.len() => continue,
                Ok(httparse::Status::Partial) => {
                    return Err(ReadError::Answer(fail(
                        431,
                        ErrorCode::BadRequest,
                        &format!("the request head is larger than {MAX_HEAD_BYTES} bytes"),
                    )))
                }
                Err(e) => return Err(bad(&format!("not an HTTP/1.1 request: {e}"))),
            }
        };
        let mut body = buf[head_len..len].to_vec();
        if body.len() > content_length {
            return Err(bad(
                "more bytes than Content-Length (pipelining is not supported)",
            ));
        }
        let start = body.len();
        body.resize(content_length, 0);
        stream
            .read_exact(&mut body[start..])
            .map_err(|_| ReadError::Gone)?;
        req.body = body;
        Ok(req)
    }

    /// Checks the token, then routes.
    fn respond(&self, req: &Req, handle: &ServerHandle) -> HttpResponse {
        let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        if seg.len() < 2 || seg[0] != "api" || seg[1] != "admin" {
            return fail(
                404,
                ErrorCode::NotFound,
                "the admin API's routes start with /api/admin/ (see docs/protocol.md)",
            );
        }
        if self.full.is_none() && self.read.is_none() {
            return fail(
                403,
                ErrorCode::Forbidden,
                "the admin API is disabled: configure admin.token_file (or admin.token)",
            );
        }
        let access = match self.access(req.auth.as_deref()) {
            Ok(a) => a,
            Err(msg) => {
                return fail(401, ErrorCode::Unauthorized, msg)
                    .header("WWW-Authenticate", "Bearer realm=\"edgews admin\"")
            }
        };
        let route = &seg[2..];
        let get = req.method == "GET" || req.method == "HEAD";
        let (allowed, resp) = match route {
            ["rooms"] if get => ("GET", self.list_rooms(&req.query)),
            ["rooms", room] if get => ("GET", self.room(room, &req.query, handle)),
            ["users", user, "connections"] if get => ("GET", self.connections(user, handle)),
            ["rooms", _] | ["rooms"] | ["users", _, "connections"] => {
                ("GET", method_not_allowed("GET"))
            }
            _ if access != Access::Full && req.method == "POST" && known_post(route) => (
                "POST",
                fail(
                    403,
                    ErrorCode::Forbidden,
                    "this token is read-only (admin.read_token): it may only GET",
                ),
            ),
            ["rooms", room, "publish"] if req.method == "POST" => {
                ("POST", self.publish(room, &req.body, handle))
            }
            ["rooms", room, action] if req.method == "POST" && ROOM_ACTIONS.contains(action) => {
                ("POST", self.room_action(room, action, &req.body))
            }
            ["users", user, action @ ("ban" | "unban")] if req.method == "POST" => {
                ("POST", self.server_ban(user, action, &req.body))
            }
            ["users", user, "disconnect"] if req.method == "POST" => {
                ("POST", self.disconnect(user, &req.body, handle))
            }
            r if known_post(r) => ("POST", method_not_allowed("POST")),
            _ => (
                "",
                fail(
                    404,
                    ErrorCode::NotFound,
                    "no such admin route (see docs/protocol.md, Admin HTTP API)",
                ),
            ),
        };
        let mut resp = resp;
        resp.head_only = req.method == "HEAD";
        if resp.status < 300 {
            tracing::debug!(
                target: "edgews::audit",
                actor = "admin-api",
                access = ?access,
                method = %req.method,
                route = %req.segments.join("/"),
                allowed,
                "admin request"
            );
        }
        resp
    }

    /// Which token `authorization` carries.
    fn access(&self, authorization: Option<&str>) -> Result<Access, &'static str> {
        let Some(auth) = authorization else {
            return Err("send the admin token: Authorization: Bearer <token>");
        };
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .ok_or("the Authorization header must be `Bearer <token>`")?;
        let given = digest(token);
        // Both digests are compared, whatever the first says.
        let full = self.full.map_or(0u8, |d| d.ct_eq(&given).unwrap_u8());
        let read = self.read.map_or(0u8, |d| d.ct_eq(&given).unwrap_u8());
        match (full, read) {
            (1, _) => Ok(Access::Full),
            (_, 1) => Ok(Access::Read),
            _ => Err("invalid admin token"),
        }
    }

    fn page_args(&self, query: &str) -> Result<(Option<String>, usize), HttpResponse> {
        let cfg = &self.shared.cfg;
        let mut cursor = None;
        let mut limit = cfg.who_default_limit;
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = percent_decode_str(&v.replace('+', " "))
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| fail(400, ErrorCode::BadRequest, "a query value is not UTF-8"))?;
            match k {
                "cursor" if !v.is_empty() => cursor = Some(v),
                "cursor" => {}
                "limit" => match v.parse::<usize>() {
                    Ok(n) if n >= 1 => limit = n,
                    _ => {
                        return Err(fail(
                            400,
                            ErrorCode::BadRequest,
                            "`limit` must be a positive integer",
                        ))
                    }
                },
                other => {
                    return Err(fail(
                        400,
                        ErrorCode::BadRequest,
                        &format!("unknown query parameter `{}` (cursor, limit)", clip(other)),
                    ))
                }
            }
        }
        Ok((cursor, limit.min(cfg.who_max_limit).max(1)))
    }

    /// `GET /api/admin/rooms?cursor=&limit=`
    fn list_rooms(&self, query: &str) -> HttpResponse {
        let (cursor, limit) = match self.page_args(query) {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        let (count, rooms, next) = self.shared.dir.rooms_page(cursor.as_deref(), limit);
        let rooms: Vec<Value> = rooms
            .iter()
            .map(|r| json!({ "room": r.name(), "members": r.count() }))
            .collect();
        reply(
            200,
            &json!({ "count": count, "rooms": rooms, "next": next }),
        )
    }

    /// `GET /api/admin/rooms/{room}?cursor=&limit=`
    fn room(&self, room: &str, query: &str, handle: &ServerHandle) -> HttpResponse {
        if let Err(resp) = check_room(room) {
            return resp;
        }
        let (cursor, limit) = match self.page_args(query) {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        let Some(view) = moderation::room_view(&self.shared, room) else {
            return fail(
                404,
                ErrorCode::RoomNotFound,
                &format!(
                    "no room `{}` (neither created nor with members)",
                    clip(room)
                ),
            );
        };
        let page = self
            .shared
            .dir
            .room(room)
            .map(|r| self.shared.dir.page(&r, cursor.as_deref(), limit));
        let (count, members, next) = match &page {
            Some(p) => (
                p.count,
                p.members
                    .iter()
                    .map(|(u, status)| {
                        json!({ "id": u.id(), "name": u.name(), "status": status.as_str() })
                    })
                    .collect(),
                p.next.clone(),
            ),
            None => (0, Vec::<Value>::new(), None),
        };
        let cfg = &self.shared.cfg;
        let mut settings = json!(view);
        if let Some(obj) = settings.as_object_mut() {
            // Named once, at the top level.
            obj.remove("room");
            obj.remove("members");
            obj.insert(
                "member_events".into(),
                json!(
                    cfg.member_events_max_room_size == 0
                        || count <= cfg.member_events_max_room_size
                ),
            );
        }
        let stats = handle.room_stats(room).map(|(connections, s)| {
            json!({
                "connections": connections,
                "published": s.published,
                "delivered": s.delivered,
                "dropped": s.dropped,
                "slow_closes": s.slow_closes,
            })
        });
        reply(
            200,
            &json!({
                "room": room,
                "settings": settings,
                "stats": stats,
                "count": count,
                "members": members,
                "next": next,
            }),
        )
    }

    /// `POST /api/admin/rooms/{room}/publish` `{"data":..,"name"?:..}`
    fn publish(&self, room: &str, body: &[u8], handle: &ServerHandle) -> HttpResponse {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Publish {
            /// `Some(Null)` for `"data":null`, `None` when missing.
            #[serde(default, deserialize_with = "present")]
            data: Option<Value>,
            name: Option<String>,
        }
        if let Err(resp) = check_room(room) {
            return resp;
        }
        let p: Publish = match parse_body(body) {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        let Some(data) = p.data else {
            return fail(400, ErrorCode::BadRequest, "publish needs `data`");
        };
        let name = p.name.unwrap_or_else(|| ADMIN_SENDER_ID.to_owned());
        if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
            return fail(
                400,
                ErrorCode::BadRequest,
                &format!("`name` must be 1 to {MAX_NAME_BYTES} bytes, no control characters"),
            );
        }
        let ts = unix_ms();
        let from = Directory::detached(ADMIN_SENDER_ID, &name);
        let json = data.to_string();
        let shared = self.shared.clone();
        if let Some(b) = &shared.broker {
            // Numbered in Redis and fanned out by every node, this one too.
            let mut out = super::wire::Out::default();
            let ev = out
                .start("message", None)
                .str("room", room)
                .user("from", from.id(), from.name())
                .raw("data", &json)
                .num("ts", ts)
                .finish();
            let pre = format!("{},\"offset\":", &ev[..ev.len() - 1]);
            let wait = std::time::Duration::from_secs(5);
            let Some((offset, epoch)) = b.message_wait(room, pre, ",\"admin\":true}", ts, wait)
            else {
                return fail(
                    503,
                    ErrorCode::Internal,
                    "Redis is unavailable: the message was not published",
                );
            };
            let members = self.shared.dir.room(room).map_or(0, |r| r.count());
            tracing::info!(
                target: "edgews::audit",
                actor = "admin-api",
                action = "publish",
                room,
                target = "",
                members,
                offset,
                outcome = "ok",
                "admin publish"
            );
            return reply(
                200,
                &json!({
                    "room": room,
                    "members": members,
                    "ts": ts,
                    "offset": offset,
                    "epoch": epoch,
                }),
            );
        }
        let mut to_broker = |_: &str| {};
        let pos = match publish_message_then(
            &self.shared.history,
            Origin::Admin(handle),
            room,
            &from,
            Data::Raw(&json),
            ts,
            &mut to_broker,
        ) {
            Ok(pos) => pos,
            Err(code) => {
                return fail(
                    500,
                    code,
                    "the history store failed: the message was not published",
                )
            }
        };
        let members = self.shared.dir.room(room).map_or(0, |r| r.count());
        tracing::info!(
            target: "edgews::audit",
            actor = "admin-api",
            action = "publish",
            room,
            target = "",
            members,
            offset = pos.offset,
            outcome = "ok",
            "admin publish"
        );
        reply(
            200,
            &json!({
                "room": room,
                "members": members,
                "ts": ts,
                "offset": pos.offset,
                "epoch": &*pos.epoch,
            }),
        )
    }

    /// `POST /api/admin/rooms/{room}/{action}`: create, delete and the
    /// moderation actions, through the same functions as the WebSocket
    /// requests, acting as `admin`.
    fn room_action(&self, room: &str, action: &str, body: &[u8]) -> HttpResponse {
        if let Err(resp) = check_room(room) {
            return resp;
        }
        let shared = &self.shared;
        let actor = Actor::AdminApi;
        match action {
            "create" => {
                let opts: RoomOptions = if body.iter().all(u8::is_ascii_whitespace) {
                    RoomOptions::default()
                } else {
                    match parse_body(body) {
                        Ok(o) => o,
                        Err(resp) => return resp,
                    }
                };
                return match moderation::create(shared, actor, room, &opts) {
                    Ok(view) => reply(200, &json!(view)),
                    Err(r) => refused(&r),
                };
            }
            "delete" => {
                if !body.iter().all(u8::is_ascii_whitespace) && body != b"{}" {
                    return fail(400, ErrorCode::BadRequest, "delete takes no body (or {})");
                }
                return match moderation::delete(shared, actor, room) {
                    Ok(n) => reply(200, &json!({ "room": room, "connections": n })),
                    Err(r) => refused(&r),
                };
            }
            _ => {}
        }
        let t: Target = match parse_body(body) {
            Ok(t) => t,
            Err(resp) => return resp,
        };
        let Some(user) = t.user.as_deref() else {
            return fail(
                400,
                ErrorCode::BadRequest,
                &format!("{action} needs `user`"),
            );
        };
        if let Err(resp) = check_user(user) {
            return resp;
        }
        let takes_duration = matches!(action, "ban" | "mute");
        let takes_reason = matches!(action, "ban" | "mute" | "kick");
        if t.duration_s.is_some() && !takes_duration {
            return fail(
                400,
                ErrorCode::BadRequest,
                &format!("{action} takes no `duration_s`"),
            );
        }
        if t.reason.is_some() && !takes_reason {
            return fail(
                400,
                ErrorCode::BadRequest,
                &format!("{action} takes no `reason`"),
            );
        }
        let duration = t.duration_s.map(Duration::from_secs);
        let reason = t.reason.as_deref();
        let plain = |r: Result<(), Refused>| r.map(|()| json!({ "room": room, "user": user }));
        let done = match action {
            "kick" => moderation::kick(shared, actor, room, user, reason)
                .map(|n| json!({ "room": room, "user": user, "connections": n })),
            "ban" => moderation::ban(shared, actor, room, user, duration, reason).map(|s| {
                json!({ "room": room, "user": user, "until": s.until, "connections": s.connections })
            }),
            "mute" => moderation::mute(shared, actor, room, user, duration, reason)
                .map(|s| json!({ "room": room, "user": user, "until": s.until })),
            "unban" => plain(moderation::unban(shared, actor, room, user)),
            "unmute" => plain(moderation::unmute(shared, actor, room, user)),
            "invite" => plain(moderation::invite(shared, actor, room, user)),
            "grant" => plain(moderation::grant(shared, actor, room, user)),
            _ => plain(moderation::revoke(shared, actor, room, user)),
        };
        match done {
            Ok(v) => reply(200, &v),
            Err(r) => refused(&r),
        }
    }

    /// `POST /api/admin/users/{user}/ban` `{"duration_s"?,"reason"?}` and
    /// `POST /api/admin/users/{user}/unban`: the server-wide ban.
    fn server_ban(&self, user: &str, action: &str, body: &[u8]) -> HttpResponse {
        if let Err(resp) = check_user(user) {
            return resp;
        }
        let t: Target = if body.iter().all(u8::is_ascii_whitespace) {
            Target {
                user: None,
                duration_s: None,
                reason: None,
            }
        } else {
            match parse_body(body) {
                Ok(t) => t,
                Err(resp) => return resp,
            }
        };
        if t.user.is_some() {
            return fail(
                400,
                ErrorCode::BadRequest,
                "the user is in the path, not the body",
            );
        }
        let actor = Actor::AdminApi;
        let done = if action == "ban" {
            moderation::server_ban(
                &self.shared,
                actor,
                user,
                t.duration_s.map(Duration::from_secs),
                t.reason.as_deref(),
            )
            .map(|s| json!({ "user": user, "until": s.until, "connections": s.connections }))
        } else if t.duration_s.is_some() || t.reason.is_some() {
            return fail(
                400,
                ErrorCode::BadRequest,
                "unban takes no `duration_s` or `reason`",
            );
        } else {
            moderation::server_unban(&self.shared, actor, user).map(|()| json!({ "user": user }))
        };
        match done {
            Ok(v) => reply(200, &v),
            Err(r) => refused(&r),
        }
    }

    /// `GET /api/admin/users/{user}/connections`
    fn connections(&self, user: &str, handle: &ServerHandle) -> HttpResponse {
        if let Err(resp) = check_user(user) {
            return resp;
        }
        let Some(u) = self.shared.dir.find_user(user) else {
            return offline(user);
        };
        let Some(infos) = handle.describe(&u.connections()) else {
            return fail(
                503,
                ErrorCode::Internal,
                "a worker did not answer in time; retry",
            );
        };
        let now = unix_ms();
        let conns: Vec<Value> = infos.iter().map(|c| connection_json(c, now)).collect();
        reply(
            200,
            &json!({
                "user": { "id": u.id(), "name": u.name(), "status": u.status().as_str() },
                "connections": conns,
            }),
        )
    }

    /// `POST /api/admin/users/{user}/disconnect` `{"reason"?:..}`
    fn disconnect(&self, user: &str, body: &[u8], handle: &ServerHandle) -> HttpResponse {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct Disconnect {
            reason: Option<String>,
        }
        if let Err(resp) = check_user(user) {
            return resp;
        }
        let d: Disconnect = if body.iter().all(u8::is_ascii_whitespace) {
            Disconnect::default()
        } else {
            match parse_body(body) {
                Ok(d) => d,
                Err(resp) => return resp,
            }
        };
        let reason = d
            .reason
            .unwrap_or_else(|| "disconnected by an administrator".into());
        if reason.len() > MAX_REASON_BYTES {
            return fail(
                400,
                ErrorCode::BadRequest,
                &format!("`reason` is longer than {MAX_REASON_BYTES} bytes"),
            );
        }
        let conns = self.shared.dir.connections_of(user);
        if conns.is_empty() {
            return offline(user);
        }
        let closed = conns
            .iter()
            .filter(|id| handle.close(**id, CLOSE_DISCONNECTED, &reason))
            .count();
        tracing::info!(
            target: "edgews::audit",
            actor = "admin-api",
            action = "disconnect",
            room = "",
            target = user,
            reason = %reason,
            closed,
            outcome = "ok",
            "admin disconnect"
        );
        reply(
            200,
            &json!({ "user": user, "closed": closed, "code": CLOSE_DISCONNECTED.get() }),
        )
    }
}

/// The moderation and settings actions on a room: `POST
/// /api/admin/rooms/{room}/{action}`, each one function of
/// [`super::moderation`] called as [`Actor::AdminApi`].
const ROOM_ACTIONS: [&str; 10] = [
    "create", "delete", "kick", "ban", "unban", "mute", "unmute", "invite", "grant", "revoke",
];

/// The body of a moderation action: the target and, where the action takes
/// them, a duration and a reason.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    user: Option<String>,
    duration_s: Option<u64>,
    reason: Option<String>,
}

/// A refusal of the moderation layer, as an HTTP answer.
fn refused(r: &Refused) -> HttpResponse {
    fail(r.http_status(), r.code, &r.message)
}

/// The routes that take `POST`.
fn known_post(route: &[&str]) -> bool {
    match route {
        ["rooms", _, "publish"] | ["users", _, "disconnect" | "ban" | "unban"] => true,
        ["rooms", _, action] => ROOM_ACTIONS.contains(action),
        _ => false,
    }
}

fn method_not_allowed(allow: &str) -> HttpResponse {
    fail(
        405,
        ErrorCode::BadRequest,
        &format!("this route takes {allow}"),
    )
    .header("Allow", allow)
}

fn bad(message: &str) -> ReadError {
    ReadError::Answer(fail(400, ErrorCode::BadRequest, message))
}

fn offline(user: &str) -> HttpResponse {
    fail(
        404,
        ErrorCode::UserOffline,
        &format!("user `{}` has no connection", clip(user)),
    )
}

/// A room name as the WebSocket protocol allows it.
fn check_room(room: &str) -> Result<(), HttpResponse> {
    if room.is_empty() || room.len() > MAX_ROOM_BYTES || room.chars().any(char::is_control) {
        return Err(fail(
            400,
            ErrorCode::BadRequest,
            &format!("a room name is 1 to {MAX_ROOM_BYTES} bytes, no control characters"),
        ));
    }
    Ok(())
}

/// A user id as tokens allow it.
fn check_user(user: &str) -> Result<(), HttpResponse> {
    let max = super::auth::MAX_USER_ID_BYTES;
    if user.is_empty() || user.len() > max {
        return Err(fail(
            400,
            ErrorCode::BadRequest,
            &format!("a user id is 1 to {max} bytes"),
        ));
    }
    Ok(())
}

/// Parses a JSON body strictly: bad JSON is `bad_json`, a wrong shape
/// (unknown field, wrong type) `bad_request`.
fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, HttpResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(fail(
            400,
            ErrorCode::BadRequest,
            "send a JSON object as the body",
        ));
    }
    // serde_json stops at 128 levels of nesting: no stack overflow here.
    serde_json::from_slice(body).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => ErrorCode::BadRequest,
            _ => ErrorCode::BadJson,
        };
        fail(400, code, &format!("the body: {e}"))
    })
}

/// Deserializes a field that is there (even `null`) as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn connection_json(c: &ConnectionInfo, now_ms: u64) -> Value {
    let age_ms = c.age.as_millis() as u64;
    json!({
        "id": c.id.to_string(),
        "worker": c.id.worker(),
        "peer": c.peer.map(|p| p.to_string()),
        "client_ip": c.client_ip.map(|ip| ip.to_string()),
        "connected_at": now_ms.saturating_sub(age_ms),
        "age_ms": age_ms,
        "rooms": c.rooms,
    })
}

/// Writes `resp` and closes. When the request was not read to its end,
/// what is left is read away briefly first, so the close does not reset
/// the connection before the client has read the answer.
fn answer(mut stream: TcpStream, resp: &HttpResponse, unread: bool) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256 + resp.body.len());
    resp.write_to(&mut out);
    stream.write_all(&out)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    if unread {
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut sink = [0u8; 4096];
        let mut left = 1usize << 20;
        while left > 0 {
            match stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    }
    Ok(())
}
