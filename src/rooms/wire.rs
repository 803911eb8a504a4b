//! Wire protocol v1: client requests parsed with simd-json, server messages
//! written as JSON text. See `docs/protocol.md`.
//!
//! Every client message is a JSON object `{"type": ..., "id": <optional>,
//! ...}`. Parsing is strict: a missing or mistyped field, an unknown field or
//! an over-long value is a `bad_request` naming it, so a typo never passes
//! silently. Replies to a request that carried an `id` repeat it.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;

use simd_json::prelude::*;
use simd_json::{BorrowedValue as Value, StaticNode};

use super::codes::ErrorCode;
use super::directory::Status;

/// Longest string `id`, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// Longest room name, in bytes.
pub const MAX_ROOM_BYTES: usize = 128;
/// Longest token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 << 10;
/// Longest `who` cursor (a user id), in bytes.
pub const MAX_CURSOR_BYTES: usize = 128;
/// Deepest nesting of arrays and objects in a client message (the request
/// object counts as one level). Building and dropping a parsed value recurse
/// once per level, so without this a 64 KiB message of `[[[[...` overflows a
/// worker's stack and aborts the whole server.
pub const MAX_DEPTH: usize = 128;

/// A request's `id`, echoed in its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Id<'a> {
    /// An integer id.
    Int(i64),
    /// A string id (at most [`MAX_ID_BYTES`]).
    Str(&'a str),
}

/// A parsed client request. Fields are named and typed as on the wire
/// (`docs/protocol.md`).
#[derive(Debug)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Request<'a> {
    /// Authenticate a connection opened without a token.
    Auth { token: &'a str },
    /// Swap in a new token for the same user.
    Refresh { token: &'a str },
    /// Join a room.
    Join {
        room: &'a str,
        password: Option<&'a str>,
        since: Option<Since<'a>>,
    },
    /// Leave a room.
    Leave { room: &'a str },
    /// Send to a room.
    Message {
        room: &'a str,
        data: &'a Value<'a>,
        exclude_self: bool,
    },
    /// Send to every connection of a user.
    Private { to: &'a str, data: &'a Value<'a> },
    /// Set the user's presence status.
    Presence { status: Status },
    /// List a room's members, a page at a time.
    Who {
        room: &'a str,
        cursor: Option<&'a str>,
        limit: Option<usize>,
    },
    /// Tell the room this user is typing.
    Typing { room: &'a str },
    /// Liveness check.
    Ping,
    /// Room settings and moderation (`create`, `kick`, `ban`, ...).
    Moderate(Moderate<'a>),
    /// A page of a room's history.
    History {
        room: &'a str,
        since: Option<u64>,
        limit: Option<usize>,
    },
}

/// The room settings and moderation requests (`docs/protocol.md`), carried
/// out by `super::moderation`.
#[derive(Debug)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Moderate<'a> {
    /// Create a room with settings.
    Create {
        room: &'a str,
        options: super::moderation::RoomOptions,
    },
    /// Delete a room: everyone leaves.
    Delete { room: &'a str },
    /// Let a user into a private room.
    Invite { room: &'a str, user: &'a str },
    /// Make a user a moderator of the room.
    Grant { room: &'a str, user: &'a str },
    /// Take a grant back.
    Revoke { room: &'a str, user: &'a str },
    /// Remove a user from the room.
    Kick {
        room: &'a str,
        user: &'a str,
        reason: Option<&'a str>,
    },
    /// Ban a user from the room (`room: None`: from the server).
    Ban {
        room: Option<&'a str>,
        user: &'a str,
        duration_s: Option<u64>,
        reason: Option<&'a str>,
    },
    /// Lift a ban (`room: None`: a server-wide one).
    Unban {
        room: Option<&'a str>,
        user: &'a str,
    },
    /// Mute a user in the room.
    Mute {
        room: &'a str,
        user: &'a str,
        duration_s: Option<u64>,
        reason: Option<&'a str>,
    },
    /// Lift a mute.
    Unmute { room: &'a str, user: &'a str },
}

/// The settings and moderation request types, in [`TYPES`] order after the
/// first ten.
pub const MODERATE_TYPES: [&str; 10] = [
    "create", "delete", "invite", "grant", "revoke", "kick", "ban", "unban", "mute", "unmute",
];

impl Moderate<'_> {
    fn type_index(&self) -> usize {
        match self {
            Moderate::Create { .. } => 0,
            Moderate::Delete { .. } => 1,
            Moderate::Invite { .. } => 2,
            Moderate::Grant { .. } => 3,
            Moderate::Revoke { .. } => 4,
            Moderate::Kick { .. } => 5,
            Moderate::Ban { .. } => 6,
            Moderate::Unban { .. } => 7,
            Moderate::Mute { .. } => 8,
            Moderate::Unmute { .. } => 9,
        }
    }
}

/// A client's position in a room's history (`join {since}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Since<'a> {
    /// The room's epoch the client last saw.
    pub epoch: &'a str,
    /// The offset of the last message the client got.
    pub offset: u64,
}

/// Longest `epoch` a client may send, in bytes.
pub const MAX_EPOCH_BYTES: usize = 64;

/// The request types, for metrics (index = position).
pub const TYPES: [&str; 21] = [
    "auth", "refresh", "join", "leave", "message", "private", "presence", "who", "typing", "ping",
    // Settings and moderation (`MODERATE_TYPES`).
    "create", "delete", "invite", "grant", "revoke", "kick", "ban", "unban", "mute", "unmute",
    "history",
];

impl Request<'_> {
    /// Index of this request's type in [`TYPES`].
    pub fn type_index(&self) -> usize {
        match self {
            Request::Auth { .. } => 0,
            Request::Refresh { .. } => 1,
            Request::Join { .. } => 2,
            Request::Leave { .. } => 3,
            Request::Message { .. } => 4,
            Request::Private { .. } => 5,
            Request::Presence { .. } => 6,
            Request::Who { .. } => 7,
            Request::Typing { .. } => 8,
            Request::Ping => 9,
            Request::Moderate(m) => 10 + m.type_index(),
            Request::History { .. } => 20,
        }
    }
}

/// A request that could not be parsed: the error to send back (with the id
/// when one could be read).
#[derive(Debug)]
pub struct Invalid<'a> {
    /// The error code.
    pub code: ErrorCode,
    /// What was wrong, for a person.
    pub message: String,
    /// The request's id, when it had a valid one.
    pub id: Option<Id<'a>>,
}

fn bad<'a>(id: Option<Id<'a>>, message: String) -> Invalid<'a> {
    Invalid {
        code: ErrorCode::BadRequest,
        message,
        id,
    }
}

/// Parses `text` (already copied into `buf`, which simd-json parses in place).
pub fn parse_value<'a>(
    buf: &'a mut [u8],
    buffers: &mut simd_json::Buffers,
) -> Result<Value<'a>, Invalid<'static>> {
    if too_deep(buf) {
        return Err(Invalid {
            code: ErrorCode::BadJson,
            message: format!("nested deeper than {MAX_DEPTH} levels"),
            id: None,
        });
    }
    simd_json::to_borrowed_value_with_buffers(buf, buffers).map_err(|e| Invalid {
        code: ErrorCode::BadJson,
        message: format!("not valid JSON: {e}"),
        id: None,
    })
}

/// Whether `json` nests arrays and objects deeper than [`MAX_DEPTH`]. One
/// pass over the bytes, skipping strings; exact for valid JSON (invalid JSON
/// is refused by the parser anyway).
fn too_deep(json: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Reads the request out of a parsed message.
pub fn request<'a>(value: &'a Value<'a>) -> Result<(Option<Id<'a>>, Request<'a>), Invalid<'a>> {
    let Some(obj) = value.as_object() else {
        return Err(bad(None, "a message must be a JSON object".into()));
    };
    let id = match obj.get("id") {
        None | Some(Value::Static(StaticNode::Null)) => None,
        Some(Value::String(s)) if s.len() <= MAX_ID_BYTES => Some(Id::Str(s.as_ref())),
        Some(Value::Static(StaticNode::I64(n))) => Some(Id::Int(*n)),
        Some(Value::Static(StaticNode::U64(n))) if i64::try_from(*n).is_ok() => {
            Some(Id::Int(*n as i64))
        }
        Some(_) => {
            return Err(bad(
                None,
                format!("`id` must be an integer or a string of at most {MAX_ID_BYTES} bytes"),
            ))
        }
    };
    let kind = match obj.get("type") {
        Some(Value::String(s)) => s.as_ref(),
        Some(_) => return Err(bad(id, "`type` must be a string".into())),
        None => return Err(bad(id, "missing `type`".into())),
    };
    let fields: &[&str] = match kind {
        "auth" | "refresh" => &["token"],
        "join" => &["room", "password", "since"],
        "leave" | "typing" => &["room"],
        "message" => &["room", "data", "exclude_self"],
        "private" => &["to", "data"],
        "presence" => &["status"],
        "who" => &["room", "cursor", "limit"],
        "ping" => &[],
        k if MODERATE_TYPES.contains(&k) => moderate_fields(k),
        "history" => &["room", "since", "limit"],
        _ => {
            return Err(Invalid {
                code: ErrorCode::UnknownType,
                message: format!("unknown message type `{}`", clip(kind)),
                id,
            })
        }
    };
    for key in obj.keys() {
        let key: &str = key.as_ref();
        if key != "type" && key != "id" && !fields.contains(&key) {
            return Err(bad(
                id,
                format!("unknown field `{}` in `{kind}`", clip(key)),
            ));
        }
    }
    let f = Fields { obj, kind, id };
    let req = match kind {
        "auth" => Request::Auth {
            token: f.string("token", MAX_TOKEN_BYTES)?,
        },
        "refresh" => Request::Refresh {
            token: f.string("token", MAX_TOKEN_BYTES)?,
        },
        "join" => Request::Join {
            room: f.room()?,
            password: f.opt_string("password", 256)?,
            since: f.opt_since()?,
        },
        "leave" => Request::Leave { room: f.room()? },
        "typing" => Request::Typing { room: f.room()? },
        "message" => Request::Message {
            room: f.room()?,
            data: f.data()?,
            exclude_self: f.opt_bool("exclude_self")?.unwrap_or(false),
        },
        "private" => Request::Private {
            to: f.string("to", super::auth::MAX_USER_ID_BYTES)?,
            data: f.data()?,
        },
        "presence" => {
            let s = f.string("status", 16)?;
            let status = Status::parse(s).ok_or_else(|| {
                bad(
                    id,
                    "`status` must be one of online, away, busy, offline".into(),
                )
            })?;
            Request::Presence { status }
        }
        "who" => Request::Who {
            room: f.room()?,
            cursor: f.opt_string("cursor", MAX_CURSOR_BYTES)?,
            limit: f.opt_count("limit")?,
        },
        k if MODERATE_TYPES.contains(&k) => Request::Moderate(moderate(&f)?),
        "history" => Request::History {
            room: f.room()?,
            since: f.opt_offset("since")?,
            limit: f.opt_count("limit")?,
        },
        _ => Request::Ping,
    };
    Ok((id, req))
}

/// The fields of each settings and moderation request.
fn moderate_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "create" => &[
            "room",
            "public",
            "password",
            "moderated",
            "max_members",
            "history",
        ],
        "delete" => &["room"],
        "kick" => &["room", "user", "reason"],
        "ban" | "mute" => &["room", "user", "duration_s", "reason"],
        // invite, grant, revoke, unban, unmute
        _ => &["room", "user"],
    }
}

/// Reads a settings or moderation request (its fields already checked
/// against [`moderate_fields`]).
fn moderate<'a>(f: &Fields<'a>) -> Result<Moderate<'a>, Invalid<'a>> {
    use super::moderation::{MAX_PASSWORD_BYTES, MAX_REASON_BYTES};
    let user = || f.string("user", super::auth::MAX_USER_ID_BYTES);
    let duration = || f.opt_count("duration_s").map(|d| d.map(|d| d as u64));
    let reason = || f.opt_string("reason", MAX_REASON_BYTES);
    Ok(match f.kind {
        "create" => Moderate::Create {
            room: f.room()?,
            options: super::moderation::RoomOptions {
                public: f.opt_bool("public")?.unwrap_or(true),
                password: f
                    .opt_string("password", MAX_PASSWORD_BYTES)?
                    .map(str::to_owned),
                moderated: f.opt_bool("moderated")?.unwrap_or(false),
                max_members: f.opt_count("max_members")?,
                history: f.history()?,
            },
        },
        "delete" => Moderate::Delete { room: f.room()? },
        "invite" => Moderate::Invite {
            room: f.room()?,
            user: user()?,
        },
        "grant" => Moderate::Grant {
            room: f.room()?,
            user: user()?,
        },
        "revoke" => Moderate::Revoke {
            room: f.room()?,
            user: user()?,
        },
        "kick" => Moderate::Kick {
            room: f.room()?,
            user: user()?,
            reason: reason()?,
        },
        "ban" => Moderate::Ban {
            room: f.opt_room()?,
            user: user()?,
            duration_s: duration()?,
            reason: reason()?,
        },
        "unban" => Moderate::Unban {
            room: f.opt_room()?,
            user: user()?,
        },
        "mute" => Moderate::Mute {
            room: f.room()?,
            user: user()?,
            duration_s: duration()?,
            reason: reason()?,
        },
        _ => Moderate::Unmute {
            room: f.room()?,
            user: user()?,
        },
    })
}

/// Cuts a client-supplied string for an error message.
fn clip(s: &str) -> Cow<'_, str> {
    if s.len() <= 64 {
        return Cow::Borrowed(s);
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

struct Fields<'a> {
    obj: &'a simd_json::borrowed::Object<'a>,
    kind: &'a str,
    id: Option<Id<'a>>,
}

impl<'a> Fields<'a> {
    fn string(&self, name: &str, max: usize) -> Result<&'a str, Invalid<'a>> {
        self.opt_string(name, max)?
            .ok_or_else(|| bad(self.id, format!("`{}` needs a string `{name}`", self.kind)))
    }

    fn opt_string(&self, name: &str, max: usize) -> Result<Option<&'a str>, Invalid<'a>> {
        match self.obj.get(name) {
            None | Some(Value::Static(StaticNode::Null)) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => {
                Err(bad(self.id, format!("`{name}` must not be empty")))
            }
            Some(Value::String(s)) if s.len() > max => {
                Err(bad(self.id, format!("`{name}` is longer than {max} bytes")))
            }
            Some(Value::String(s)) => Ok(Some(s.as_ref())),
            Some(_) => Err(bad(self.id, format!("`{name}` must be a string"))),
        }
    }

    fn room(&self) -> Result<&'a str, Invalid<'a>> {
        let room = self.string("room", MAX_ROOM_BYTES)?;
        if room.chars().any(char::is_control) {
            return Err(bad(
                self.id,
                "`room` must not contain control characters".into(),
            ));
        }
        Ok(room)
    }

    fn opt_room(&self) -> Result<Option<&'a str>, Invalid<'a>> {
        match self.obj.get("room") {
            None | Some(Value::Static(StaticNode::Null)) => Ok(None),
            Some(_) => self.room().map(Some),
        }
    }

    /// `history: {size, ttl_s}` (both non-negative integers, no other field).
    fn history(&self) -> Result<Option<super::moderation::HistoryLimits>, Invalid<'a>> {
        let obj = match self.obj.get("history") {
            None | Some(Value::Static(StaticNode::Null)) => return Ok(None),
            Some(Value::Object(o)) => o,
            Some(_) => {
                return Err(bad(
                    self.id,
                    "`history` must be an object {size, ttl_s}".into(),
                ))
            }
        };
        for key in obj.keys() {
            let key: &str = key.as_ref();
            if key != "size" && key != "ttl_s" {
                return Err(bad(
                    self.id,
                    format!("unknown field `{}` in `history`", clip(key)),
                ));
            }
        }
        let num = |name: &str| match obj.get(name) {
            Some(Value::Static(StaticNode::U64(n))) => Ok(*n),
            Some(Value::Static(StaticNode::I64(n))) if *n >= 0 => Ok(*n as u64),
            _ => Err(bad(
                self.id,
                format!("`history` needs `{name}`, a non-negative integer"),
            )),
        };
        Ok(Some(super::moderation::HistoryLimits {
            size: num("size")?,
            ttl_s: num("ttl_s")?,
        }))
    }

    fn data(&self) -> Result<&'a Value<'a>, Invalid<'a>> {
        self.obj
            .get("data")
            .ok_or_else(|| bad(self.id, format!("`{}` needs `data`", self.kind)))
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, Invalid<'a>> {
        match self.obj.get(name) {
            None | Some(Value::Static(StaticNode::Null)) => Ok(None),
            Some(Value::Static(StaticNode::Bool(b))) => Ok(Some(*b)),
            Some(_) => Err(bad(self.id, format!("`{name}` must be true or false"))),
        }
    }

    /// A non-negative integer (an offset).
    fn opt_offset(&self, name: &str) -> Result<Option<u64>, Invalid<'a>> {
        offset_of(self.obj.get(name)).map_err(|()| {
            bad(
                self.id,
                format!("`{name}` must be an offset (an integer >= 0)"),
            )
        })
    }

    /// `since: {epoch, offset}`, nothing else.
    fn opt_since(&self) -> Result<Option<Since<'a>>, Invalid<'a>> {
        let obj = match self.obj.get("since") {
            None | Some(Value::Static(StaticNode::Null)) => return Ok(None),
            Some(Value::Object(o)) => o,
            Some(_) => {
                return Err(bad(
                    self.id,
                    "`since` must be an object {\"epoch\": string, \"offset\": integer}".into(),
                ))
            }
        };
        for key in obj.keys() {
            let key: &str = key.as_ref();
            if key != "epoch" && key != "offset" {
                return Err(bad(
                    self.id,
                    format!("unknown field `{}` in `since`", clip(key)),
                ));
            }
        }
        let epoch = match obj.get("epoch") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_EPOCH_BYTES => s.as_ref(),
            _ => {
                return Err(bad(
                    self.id,
                    format!("`since.epoch` must be a string of 1 to {MAX_EPOCH_BYTES} bytes"),
                ))
            }
        };
        let offset = match offset_of(obj.get("offset")) {
            Ok(Some(o)) => o,
            _ => {
                return Err(bad(
                    self.id,
                    "`since.offset` must be an offset (an integer >= 0)".into(),
                ))
            }
        };
        Ok(Some(Since { epoch, offset }))
    }

    fn opt_count(&self, name: &str) -> Result<Option<usize>, Invalid<'a>> {
        match self.obj.get(name) {
            None | Some(Value::Static(StaticNode::Null)) => Ok(None),
            Some(Value::Static(StaticNode::U64(n))) if *n >= 1 => {
                Ok(Some(usize::try_from(*n).unwrap_or(usize::MAX)))
            }
            Some(Value::Static(StaticNode::I64(n))) if *n >= 1 => Ok(Some(*n as usize)),
            Some(_) => Err(bad(self.id, format!("`{name}` must be a positive integer"))),
        }
    }
}

/// An optional non-negative integer.
fn offset_of(v: Option<&Value<'_>>) -> Result<Option<u64>, ()> {
    match v {
        None | Some(Value::Static(StaticNode::Null)) => Ok(None),
        Some(Value::Static(StaticNode::U64(n))) => Ok(Some(*n)),
        Some(Value::Static(StaticNode::I64(n))) if *n >= 0 => Ok(Some(*n as u64)),
        Some(_) => Err(()),
    }
}

/// Writes server messages. Strings are escaped by serde_json; `data` is
/// written back from the parsed value (same JSON, canonical spacing).
#[derive(Debug, Default)]
pub struct Out {
    /// The message being built.
    pub buf: Vec<u8>,
}

impl Out {
    /// Starts a message of `kind` (with the request's `id`, when given).
    pub fn start(&mut self, kind: &str, id: Option<Id<'_>>) -> &mut Self {
        self.buf.clear();
        self.buf.extend_from_slice(b"{\"type\":\"");
        self.buf.extend_from_slice(kind.as_bytes());
        self.buf.push(b'"');
        if let Some(id) = id {
            self.buf.extend_from_slice(b",\"id\":");
            match id {
                Id::Int(n) => {
                    let _ = write!(self.buf, "{n}");
                }
                Id::Str(s) => self.string(s),
            }
        }
        self
    }

    /// Adds `"key":"value"`.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        self.string(value);
        self
    }

    /// Adds `"key":number`.
    pub fn num(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        let _ = write!(self.buf, "{value}");
        self
    }

    /// Adds `"key":true|false`.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// Adds `"key":<raw JSON>` (the caller guarantees it is valid JSON).
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.buf.extend_from_slice(json.as_bytes());
        self
    }

    /// Adds `"key":{"id":..,"name":..}`.
    pub fn user(&mut self, key: &str, id: &str, name: &str) -> &mut Self {
        self.key(key);
        self.buf.extend_from_slice(b"{\"id\":");
        self.string(id);
        self.buf.extend_from_slice(b",\"name\":");
        self.string(name);
        self.buf.push(b'}');
        self
    }

    /// Adds `"key":<value>` for a client's JSON value.
    pub fn value(&mut self, key: &str, value: &Value<'_>) -> &mut Self {
        self.key(key);
        // Writing into a Vec cannot fail.
        let _ = value.write(&mut self.buf);
        self
    }

    /// Ends the message and returns it as text.
    pub fn finish(&mut self) -> &str {
        self.buf.push(b'}');
        // Only valid UTF-8 was written: ASCII, escaped strings and simd-json's output.
        std::str::from_utf8(&self.buf).unwrap_or("{}")
    }

    fn key(&mut self, key: &str) {
        self.buf.push(b',');
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// Appends a JSON string literal.
    pub fn string(&mut self, s: &str) {
        let _ = serde_json::to_writer(&mut self.buf, s);
    }
}

/// An `error` message.
pub fn error<'o>(out: &'o mut Out, id: Option<Id<'_>>, code: ErrorCode, message: &str) -> &'o str {
    out.start("error", id)
        .str("code", code.as_str())
        .str("message", message)
        .finish()
}

/// Renders `{"error":code,"message":..}` for an HTTP body.
pub fn http_error(code: ErrorCode, message: &str) -> String {
    let mut s = String::from("{\"type\":\"error\",\"code\":\"");
    s.push_str(code.as_str());
    s.push_str("\",\"message\":");
    s.push_str(&serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into()));
    let _ = writeln!(s, "}}");
    s
}

/// A client-supplied name (a room, a user) for an error message: at most
/// 64 bytes, cut on a character boundary.
pub(crate) fn clip_name(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<String, (ErrorCode, String, Option<String>)> {
        let mut buf = text.as_bytes().to_vec();
        let mut buffers = simd_json::Buffers::default();
        let v = parse_value(&mut buf, &mut buffers).map_err(|e| (e.code, e.message, None))?;
        request(&v)
            .map(|(id, r)| format!("{id:?} {r:?}"))
            .map_err(|e| (e.code, e.message, e.id.map(|i| format!("{i:?}"))))
    }

    #[test]
    fn requests_parse_with_their_ids() {
        let ok = parse(r#"{"type":"join","room":"lobby","id":7}"#).unwrap();
        assert!(ok.contains("Int(7)") && ok.contains("lobby"), "{ok}");
        let ok = parse(r#"{"type":"message","room":"r","data":{"a":[1,"x"]},"id":"m1"}"#).unwrap();
        assert!(ok.contains("Str(\"m1\")"), "{ok}");
        assert!(parse(r#"{"type":"ping"}"#).is_ok());
        assert!(parse(r#"{"type":"who","room":"r","limit":5,"cursor":null}"#).is_ok());
    }

    #[test]
    fn bad_input_names_what_is_wrong() {
        let e = parse("{not json").unwrap_err();
        assert_eq!(e.0, ErrorCode::BadJson);
        let e = parse("[1,2]").unwrap_err();
        assert_eq!(e.0, ErrorCode::BadRequest);
        let e = parse(r#"{"type":"fly","id":1}"#).unwrap_err();
        assert_eq!(
            (e.0, e.2.as_deref()),
            (ErrorCode::UnknownType, Some("Int(1)"))
        );
        let e = parse(r#"{"type":"join","room":"r","romo":1,"id":2}"#).unwrap_err();
        assert_eq!(e.0, ErrorCode::BadRequest);
        assert!(e.1.contains("romo"), "{}", e.1);
        assert_eq!(
            e.2.as_deref(),
            Some("Int(2)"),
            "the id is kept for the reply"
        );
        let e = parse(r#"{"type":"join","room":5}"#).unwrap_err();
        assert!(e.1.contains("room"), "{}", e.1);
        let long = "x".repeat(1000);
        let e = parse(&format!(r#"{{"type":"ping","id":"{long}"}}"#)).unwrap_err();
        assert_eq!((e.0, e.2), (ErrorCode::BadRequest, None));
        let e = parse(r#"{"type":"ping","id":1.5}"#).unwrap_err();
        assert_eq!(e.0, ErrorCode::BadRequest);
        let e = parse(r#"{"type":"ping","id":18446744073709551615}"#).unwrap_err();
        assert_eq!(e.0, ErrorCode::BadRequest);
        let e = parse(r#"{"type":"presence","status":"sleepy"}"#).unwrap_err();
        assert_eq!(e.0, ErrorCode::BadRequest);
        let e = parse(r#"{"type":"who","room":"r","limit":0}"#).unwrap_err();
        assert_eq!(e.0, ErrorCode::BadRequest);
        let e = parse(r#"{"type":"join","room":"a\u0000b"}"#).unwrap_err();
        assert_eq!(e.0, ErrorCode::BadRequest);
        assert!(parse("1e400").is_err());
    }

    #[test]
    fn nesting_is_limited_before_parsing() {
        let nested = |levels: usize| {
            format!(
                r#"{{"type":"message","room":"r","data":{}1{}}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        // The request object is one level.
        assert!(parse(&nested(MAX_DEPTH - 1)).is_ok());
        let e = parse(&nested(MAX_DEPTH)).unwrap_err();
        assert_eq!(e.0, ErrorCode::BadJson);
        assert!(e.1.contains("nested"), "{}", e.1);
        // 30,000 levels (64 KiB) is an error, not a stack overflow.
        assert_eq!(parse(&nested(30_000)).unwrap_err().0, ErrorCode::BadJson);
        let objects = format!("{}{}", r#"{"a":"#.repeat(30_000), "}".repeat(30_000));
        assert_eq!(parse(&objects).unwrap_err().0, ErrorCode::BadJson);
        // Brackets in strings, escaped quotes included, do not count.
        let text = format!(
            r#"{{"type":"message","room":"r","data":"\"{}\\"}}"#,
            "[{".repeat(MAX_DEPTH)
        );
        assert!(parse(&text).is_ok(), "{text}");
    }

    #[test]
    fn messages_are_valid_json_with_escaped_strings() {
        let mut out = Out::default();
        let mut buf = br#"{"k":["\"quoted\"",1.5,null,{"n":true}]}"#.to_vec();
        let mut buffers = simd_json::Buffers::default();
        let data = parse_value(&mut buf, &mut buffers).unwrap();
        let text = out
            .start("message", Some(Id::Str("a\"b")))
            .str("room", "r\n1")
            .user("from", "u", "Ünï \"x\"")
            .value("data", &data)
            .num("ts", 5)
            .finish()
            .to_owned();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], "a\"b");
        assert_eq!(v["room"], "r\n1");
        assert_eq!(v["from"]["name"], "Ünï \"x\"");
        assert_eq!(v["data"]["k"][0], "\"quoted\"");
        assert_eq!(v["data"]["k"][3]["n"], true);
        let e: serde_json::Value =
            serde_json::from_str(&http_error(ErrorCode::Unauthorized, "bad \"token\"")).unwrap();
        assert_eq!(e["code"], "unauthorized");
    }
}
