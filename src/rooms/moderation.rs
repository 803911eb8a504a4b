//! Room settings and moderation: the service layer.
//!
//! Every operation here is a plain function of the shared state
//! ([`Shared`]), an [`Actor`] and its arguments, returning a `Result` whose
//! error is a [`Refused`] (an [`ErrorCode`] and a message). Nothing depends on
//! a WebSocket connection: the room handler maps the result to an `ack` or an
//! `error`, the admin HTTP API maps it to JSON and an HTTP status
//! ([`Refused::http_status`]). Events to rooms go out through the engine's
//! [`crate::runtime::ServerHandle`]; the target's connections, on whatever
//! worker, are told through `ServerHandle::notify`, so each leaves its room
//! on its own worker through the normal leave path (see
//! [`super::handler::RoomHandler`]'s `on_notify`).
//!
//! ## Who may do what
//!
//! A user's **rank** in a room is the highest of: `admin` (JWT role, or the
//! admin API), the room's **creator**, `moderator` (JWT role: every room, or
//! granted in this room by its creator), **member** (anyone else).
//!
//! | operation | needs |
//! |---|---|
//! | `create` | any user; rooms named `admin-…` need `admin`, `moderator-…` need `moderator` or `admin` |
//! | `delete` | creator or admin (admin: auto-created rooms too) |
//! | `grant` / `revoke` | creator or admin |
//! | `invite`, `kick`, `ban`, `unban`, `mute`, `unmute` | moderator or above |
//! | server-wide `ban` / `unban` (no `room`) | admin |
//!
//! An actor acts only on users of a lower rank in the room, as far as the
//! room knows them (its creator, its granted moderators; a target's JWT roles
//! are not known to the room), and never on itself.
//!
//! ## State and its lifetime
//!
//! A room's settings and moderation state live here, keyed by room name,
//! apart from its members (`super::directory`): a **created** room keeps its
//! entry until it is deleted, members or not. A room **auto-created** by a
//! join has no entry (the config's defaults apply) until a moderator bans,
//! mutes, invites or grants in it; that entry goes away once it holds
//! nothing (the last ban/mute/invite/grant removed or expired). Timed bans
//! and mutes expire lazily (checked where they are read, no timer and no
//! event). Nothing here is per connection: an idle connection costs no more.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::Message;

use super::auth::role;
use super::auth::unix_ms;
use super::codes::{ErrorCode, CLOSE_BANNED};
use super::server::Shared;
use super::wire::clip_name as clip;
use super::wire::Out;

/// The `tracing` target of the audit log: one `info` line per moderation or
/// settings action (refused ones too, at `warn`), with the fields `actor`,
/// `action`, `room`, `target`, `reason`, `duration_s` and `outcome`.
pub const AUDIT_TARGET: &str = "edgews::audit";
/// Most entries in each per-room list (bans, mutes, invites, moderators).
pub const MAX_LIST_ENTRIES: usize = 10_000;
/// Most rooms with settings or moderation state on the server.
pub const MAX_ROOM_ENTRIES: usize = 100_000;
/// Most rooms one user may have created (and not deleted).
pub const MAX_CREATED_PER_USER: usize = 100;
/// Most server-wide bans.
pub const MAX_SERVER_BANS: usize = 100_000;
/// Longest room password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 256;
/// Longest `reason`, in bytes.
pub const MAX_REASON_BYTES: usize = 512;
/// Longest ban or mute `duration_s` (a year; omit it for "until lifted").
pub const MAX_DURATION_S: u64 = 366 * 24 * 3600;
/// Largest `history.size` a room may ask for.
pub const MAX_HISTORY_SIZE: u64 = 1_000_000;
/// Longest `history.ttl_s` a room may ask for.
pub const MAX_HISTORY_TTL_S: u64 = 366 * 24 * 3600;

const SHARDS: usize = 16;

/// One shard of the rooms' state, by name.
type Shard = Mutex<HashMap<Box<str>, RoomState>>;

/// Who asks for an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor<'a> {
    /// A connected user, with the role bits of its token
    /// ([`super::auth::Claims::role_bits`]).
    User {
        /// The user id (`sub`).
        id: &'a str,
        /// Role bits (`super::auth::role`).
        roles: u8,
    },
    /// The admin HTTP API (authenticated by its admin token): acts as `admin`.
    AdminApi,
}

impl Actor<'_> {
    /// The user id, `None` for the admin API.
    pub fn user(&self) -> Option<&str> {
        match self {
            Actor::User { id, .. } => Some(id),
            Actor::AdminApi => None,
        }
    }

    /// The name in the audit log: the user id, or `admin-api`.
    pub fn label(&self) -> &str {
        self.user().unwrap_or("admin-api")
    }

    fn roles(&self) -> u8 {
        match self {
            Actor::User { roles, .. } => *roles,
            Actor::AdminApi => role::ADMIN,
        }
    }
}

/// Why an operation was refused: the wire error code and a message for
/// people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The error code (`docs/protocol.md`).
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

impl Refused {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refused {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status that goes with the code (for the admin API).
    pub fn http_status(&self) -> u16 {
        match self.code {
            ErrorCode::Forbidden
            | ErrorCode::Banned
            | ErrorCode::Muted
            | ErrorCode::Moderated
            | ErrorCode::NotInvited
            | ErrorCode::WrongPassword => 403,
            ErrorCode::RoomNotFound | ErrorCode::UserNotInRoom | ErrorCode::UserOffline => 404,
            ErrorCode::RoomExists => 409,
            ErrorCode::LimitExceeded | ErrorCode::RoomFull | ErrorCode::TooManyRooms => 429,
            ErrorCode::Unauthorized | ErrorCode::TokenExpired => 401,
            ErrorCode::Internal => 500,
            _ => 400,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Refused {}

/// A room's history limits (`create {history: {size, ttl_s}}`): kept in the
/// room's settings for the history store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryLimits {
    /// Most messages kept.
    pub size: u64,
    /// Longest a message is kept, in seconds (0: no age limit).
    pub ttl_s: u64,
}

/// The settings of `create` (every field optional on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomOptions {
    /// Anyone may join (default). A private room needs an invite or its
    /// password.
    pub public: bool,
    /// Joining needs this password (or an invite). Stored hashed.
    pub password: Option<String>,
    /// Only moderators (and the creator and admins) post.
    pub moderated: bool,
    /// Most distinct users (`None`: the server's `max_members_per_room`; at
    /// most that when the server has one).
    pub max_members: Option<usize>,
    /// History limits for the history store.
    pub history: Option<HistoryLimits>,
}

impl Default for RoomOptions {
    fn default() -> Self {
        RoomOptions {
            public: true,
            password: None,
            moderated: false,
            max_members: None,
            history: None,
        }
    }
}

/// A room's settings and moderation state, as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoomView {
    /// The room name.
    pub room: String,
    /// Created with `create` (else auto-created by a join).
    pub created: bool,
    /// Who created it.
    pub creator: Option<String>,
    /// When it was created (ms since the epoch).
    pub created_at: Option<u64>,
    /// Anyone may join.
    pub public: bool,
    /// Joining needs a password.
    pub has_password: bool,
    /// Only moderators post.
    pub moderated: bool,
    /// The member limit in force (0: none).
    pub max_members: usize,
    /// History limits, if set.
    pub history: Option<HistoryLimits>,
    /// Distinct users in the room now.
    pub members: usize,
    /// Users granted moderator here, by id.
    pub moderators: Vec<String>,
    /// Invited users, by id.
    pub invites: Vec<String>,
    /// Active bans.
    pub bans: Vec<SanctionView>,
    /// Active mutes.
    pub mutes: Vec<SanctionView>,
}

/// One ban or mute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SanctionView {
    /// The user id.
    pub user: String,
    /// When it ends (ms since the epoch), `None`: until lifted.
    pub until: Option<u64>,
    /// The reason given.
    pub reason: Option<String>,
    /// Who imposed it (`None`: the admin API).
    pub by: Option<String>,
}

/// What a ban or mute did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Sanction {
    /// When it ends (ms since the epoch), `None`: until lifted.
    pub until: Option<u64>,
    /// Connections of the target that were told to leave the room (room
    /// ban; 0 when the user was not in it) or closed (server-wide ban); 0
    /// for a mute.
    pub connections: usize,
}

/// A notification to one of the target's connections (through
/// `ServerHandle::notify`), decoded by the room handler's `on_notify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice<'a> {
    /// Kicked from the room: leave it (the room hears `user_left`).
    Kicked(&'a str),
    /// Banned from the room: leave it (the room hears `user_left`).
    Banned(&'a str),
    /// The room was deleted: leave it silently (the room heard `room_deleted`).
    Deleted(&'a str),
}

impl<'a> Notice<'a> {
    /// The payload: one byte for the kind, then the room name.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, room) = match self {
            Notice::Kicked(r) => (b'k', r),
            Notice::Banned(r) => (b'b', r),
            Notice::Deleted(r) => (b'd', r),
        };
        let mut v = Vec::with_capacity(1 + room.len());
        v.push(kind);
        v.extend_from_slice(room.as_bytes());
        v
    }

    /// Reads a payload made by [`Notice::encode`].
    pub fn decode(payload: &'a [u8]) -> Option<Notice<'a>> {
        let (&kind, room) = payload.split_first()?;
        let room = std::str::from_utf8(room).ok()?;
        Some(match kind {
            b'k' => Notice::Kicked(room),
            b'b' => Notice::Banned(room),
            b'd' => Notice::Deleted(room),
            _ => return None,
        })
    }

    /// The room it is about.
    pub fn room(&self) -> &'a str {
        match self {
            Notice::Kicked(r) | Notice::Banned(r) | Notice::Deleted(r) => r,
        }
    }
}

#[derive(Debug, Clone)]
struct Ban {
    until: Option<u64>,
    reason: Option<Box<str>>,
    by: Option<Box<str>>,
}

impl Ban {
    fn active(&self, now: u64) -> bool {
        self.until.is_none_or(|u| now < u)
    }

    fn view(&self, user: &str) -> SanctionView {
        SanctionView {
            user: user.to_owned(),
            until: self.until,
            reason: self.reason.as_deref().map(str::to_owned),
            by: self.by.as_deref().map(str::to_owned),
        }
    }
}

/// One room's settings and moderation state.
#[derive(Debug)]
struct RoomState {
    creator: Option<Box<str>>,
    created_at: u64,
    public: bool,
    password: Option<password::Hashed>,
    moderated: bool,
    max_members: Option<usize>,
    history: Option<HistoryLimits>,
    moderators: HashSet<Box<str>>,
    invites: HashSet<Box<str>>,
    bans: HashMap<Box<str>, Ban>,
    mutes: HashMap<Box<str>, Ban>,
}

impl Default for RoomState {
    fn default() -> Self {
        RoomState {
            creator: None,
            created_at: 0,
            public: true,
            password: None,
            moderated: false,
            max_members: None,
            history: None,
            moderators: HashSet::new(),
            invites: HashSet::new(),
            bans: HashMap::new(),
            mutes: HashMap::new(),
        }
    }
}

impl RoomState {
    /// An auto-created room's entry that holds nothing any more.
    fn is_idle(&self, now: u64) -> bool {
        self.creator.is_none()
            && self.moderators.is_empty()
            && self.invites.is_empty()
            && !self.bans.values().any(|b| b.active(now))
            && !self.mutes.values().any(|b| b.active(now))
    }

    fn banned(&mut self, user: &str, now: u64) -> bool {
        match self.bans.get(user) {
            Some(b) if b.active(now) => true,
            Some(_) => {
                self.bans.remove(user);
                false
            }
            None => false,
        }
    }

    fn muted(&mut self, user: &str, now: u64) -> bool {
        match self.mutes.get(user) {
            Some(b) if b.active(now) => true,
            Some(_) => {
                self.mutes.remove(user);
                false
            }
            None => false,
        }
    }

    fn rank(&self, user: Option<&str>, roles: u8) -> Rank {
        if roles & role::ADMIN != 0 {
            Rank::Admin
        } else if user.is_some() && self.creator.as_deref() == user {
            Rank::Creator
        } else if roles & role::MODERATOR != 0 || user.is_some_and(|u| self.moderators.contains(u))
        {
            Rank::Moderator
        } else {
            Rank::Member
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Member,
    Moderator,
    Creator,
    Admin,
}

/// The settings and moderation state of every room, and the server-wide
/// bans. Kept in [`Shared`].
#[derive(Debug)]
pub struct Moderation {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
    /// Room entries: while 0, the message path looks nothing up.
    entries: AtomicUsize,
    server_bans: Mutex<HashMap<Box<str>, Ban>>,
    /// Server-wide bans: while 0, connecting looks nothing up.
    server_banned: AtomicUsize,
    created_by: Mutex<HashMap<Box<str>, usize>>,
}

impl Default for Moderation {
    fn default() -> Self {
        Moderation {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            entries: AtomicUsize::new(0),
            server_bans: Mutex::default(),
            server_banned: AtomicUsize::new(0),
            created_by: Mutex::default(),
        }
    }
}

impl Moderation {
    fn shard(&self, room: &str) -> MutexGuard<'_, HashMap<Box<str>, RoomState>> {
        lock(&self.shards[self.hasher.hash_one(room) as usize % SHARDS])
    }

    /// Runs `f` on the room's state, created (empty) if needed; removes the
    /// entry again if it ends up holding nothing.
    fn with_entry<T>(
        &self,
        room: &str,
        f: impl FnOnce(&mut RoomState) -> Result<T, Refused>,
    ) -> Result<T, Refused> {
        let mut shard = self.shard(room);
        let fresh = !shard.contains_key(room);
        if fresh && self.entries.load(Ordering::Relaxed) >= MAX_ROOM_ENTRIES {
            return Err(Refused::new(
                ErrorCode::LimitExceeded,
                format!("the server keeps state for {MAX_ROOM_ENTRIES} rooms, the most allowed"),
            ));
        }
        let state = shard.entry(room.into()).or_default();
        if fresh {
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
        let out = f(state);
        if state.is_idle(unix_ms()) {
            shard.remove(room);
            self.entries.fetch_sub(1, Ordering::Relaxed);
        }
        out
    }

    /// Rooms created with `create` (not deleted), by name.
    pub fn created_rooms(&self) -> Vec<String> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            all.extend(
                lock(shard)
                    .iter()
                    .filter(|(_, s)| s.creator.is_some())
                    .map(|(n, _)| n.to_string()),
            );
        }
        all.sort_unstable();
        all
    }

    /// Rooms with settings or moderation state.
    pub fn entries(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }
}

// ----- checks on the request paths ---------------------------------------------

/// May user `user` (with role bits `roles`) connect? `banned` while a
/// server-wide ban is in force. One atomic load while there is none.
pub fn check_connect(shared: &Shared, user: &str) -> Result<(), Refused> {
    let m = &shared.moderation;
    if m.server_banned.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    let mut bans = lock(&m.server_bans);
    let now = unix_ms();
    match bans.get(user) {
        Some(b) if b.active(now) => Err(Refused::new(
            ErrorCode::Banned,
            match &b.reason {
                Some(r) => format!("banned from this server: {r}"),
                None => "banned from this server".to_owned(),
            },
        )),
        Some(_) => {
            bans.remove(user);
            m.server_banned.store(bans.len(), Ordering::Relaxed);
            Ok(())
        }
        None => Ok(()),
    }
}

/// May `user` join `room` (with `password`, if given)? Returns the member
/// limit in force there (0: none). Checks, in order: reserved names, bans,
/// then for rooms with a password or private rooms: moderators pass, then an
/// invite, then the password.
pub fn check_join(
    shared: &Shared,
    room: &str,
    user: &str,
    roles: u8,
    password: Option<&str>,
) -> Result<usize, Refused> {
    reserved(room, roles)?;
    let default = shared.cfg.max_members_per_room;
    let m = &shared.moderation;
    if m.entries.load(Ordering::Relaxed) == 0 {
        return Ok(default);
    }
    let now = unix_ms();
    let hashed = {
        let mut shard = m.shard(room);
        let Some(state) = shard.get_mut(room) else {
            return Ok(default);
        };
        if state.banned(user, now) {
            return Err(Refused::new(
                ErrorCode::Banned,
                format!("banned from `{}`", clip(room)),
            ));
        }
        let max = state.max_members.unwrap_or(default);
        let free = state.rank(Some(user), roles) >= Rank::Moderator
            || state.invites.contains(user)
            || (state.public && state.password.is_none());
        if free {
            return Ok(max);
        }
        match &state.password {
            None => {
                return Err(Refused::new(
                    ErrorCode::NotInvited,
                    format!("`{}` is private: it needs an invite", clip(room)),
                ))
            }
            Some(h) => (h.clone(), max),
        }
    };
    // Hashing takes a while: not under the lock.
    match password {
        Some(p) if hashed.0.verify(p) => Ok(hashed.1),
        _ => Err(Refused::new(
            ErrorCode::WrongPassword,
            format!("`{}` needs its password", clip(room)),
        )),
    }
}

/// May `user` post in `room` (a member)? `muted`, `moderated` or `banned`
/// (a ban that raced the removal). One atomic load while no room has
/// settings or moderation state; otherwise one sharded lookup.
pub fn check_post(shared: &Shared, room: &str, user: &str, roles: u8) -> Result<(), Refused> {
    let m = &shared.moderation;
    if m.entries.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    let mut shard = m.shard(room);
    let Some(state) = shard.get_mut(room) else {
        return Ok(());
    };
    // The clock only when there is something to expire.
    let now = if state.bans.is_empty() && state.mutes.is_empty() {
        0
    } else {
        unix_ms()
    };
    if state.banned(user, now) {
        return Err(Refused::new(
            ErrorCode::Banned,
            format!("banned from `{}`", clip(room)),
        ));
    }
    if state.muted(user, now) {
        return Err(Refused::new(
            ErrorCode::Muted,
            format!("muted in `{}`", clip(room)),
        ));
    }
    if state.moderated && state.rank(Some(user), roles) < Rank::Moderator {
        return Err(Refused::new(
            ErrorCode::Moderated,
            format!("`{}` is moderated: only its moderators post", clip(room)),
        ));
    }
    Ok(())
}

/// Rooms named `admin-…` are for admins, `moderator-…` for moderators and
/// admins: `forbidden` for anyone else.
pub fn reserved(room: &str, roles: u8) -> Result<(), Refused> {
    let need = if room.starts_with("admin-") {
        role::ADMIN
    } else if room.starts_with("moderator-") {
        role::ADMIN | role::MODERATOR
    } else {
        return Ok(());
    };
    if roles & need != 0 {
        Ok(())
    } else {
        Err(Refused::new(
            ErrorCode::Forbidden,
            format!(
                "`{}` is reserved for the {} role",
                clip(room),
                if need == role::ADMIN {
                    "admin"
                } else {
                    "moderator"
                }
            ),
        ))
    }
}

// ----- room settings --------------------------------------------------------------

/// `create {room, ...}`: a room with settings, owned by its creator, that
/// outlives its last member until deleted. `room_exists` if it was created
/// already or has members (auto-created).
pub fn create(
    shared: &Shared,
    actor: Actor<'_>,
    room: &str,
    opts: &RoomOptions,
) -> Result<RoomView, Refused> {
    let r = create_inner(shared, actor, room, opts);
    audit(actor, "create", Some(room), None, None, None, &r);
    r
}

fn create_inner(
    shared: &Shared,
    actor: Actor<'_>,
    room: &str,
    opts: &RoomOptions,
) -> Result<RoomView, Refused> {
    validate_room(room)?;
    reserved(room, actor.roles())?;
    let server_max = shared.cfg.max_members_per_room;
    if let Some(n) = opts.max_members {
        if n == 0 || (server_max > 0 && n > server_max) {
            return Err(bad(format!(
                "`max_members` must be 1 to {}",
                if server_max > 0 {
                    server_max.to_string()
                } else {
                    "any size".into()
                }
            )));
        }
    }
    if let Some(p) = &opts.password {
        if p.is_empty() || p.len() > MAX_PASSWORD_BYTES {
            return Err(bad(format!(
                "`password` must be 1 to {MAX_PASSWORD_BYTES} bytes"
            )));
        }
    }
    if let Some(h) = &opts.history {
        if h.size == 0 || h.size > MAX_HISTORY_SIZE || h.ttl_s > MAX_HISTORY_TTL_S {
            return Err(bad(format!(
                "`history` needs `size` 1 to {MAX_HISTORY_SIZE} and `ttl_s` 0 to {MAX_HISTORY_TTL_S}"
            )));
        }
    }
    if shared.dir.room(room).is_some_and(|r| r.count() > 0) {
        return Err(Refused::new(
            ErrorCode::RoomExists,
            format!("`{}` exists (it has members)", clip(room)),
        ));
    }
    let creator: Box<str> = actor.label().into();
    if actor.user().is_some() {
        let by = lock(&shared.moderation.created_by);
        let n = by.get(&*creator).copied().unwrap_or(0);
        if n >= MAX_CREATED_PER_USER {
            return Err(Refused::new(
                ErrorCode::LimitExceeded,
                format!("you created {MAX_CREATED_PER_USER} rooms, the most allowed: delete one"),
            ));
        }
    }
    let hashed = match &opts.password {
        Some(p) => Some(
            password::Hashed::new(p)
                .ok_or_else(|| Refused::new(ErrorCode::Internal, "no randomness for a salt"))?,
        ),
        None => None,
    };
    let now = unix_ms();
    shared.moderation.with_entry(room, |state| {
        if state.creator.is_some() {
            return Err(Refused::new(
                ErrorCode::RoomExists,
                format!("`{}` was created already", clip(room)),
            ));
        }
        if let Some(user) = actor.user() {
            if state.banned(user, now) {
                return Err(Refused::new(
                    ErrorCode::Banned,
                    format!("banned from `{}`", clip(room)),
                ));
            }
        }
        state.creator = Some(creator.clone());
        state.created_at = now;
        state.public = opts.public;
        state.password = hashed;
        state.moderated = opts.moderated;
        state.max_members = opts.max_members;
        state.history = opts.history;
        Ok(())
    })?;
    if actor.user().is_some() {
        *lock(&shared.moderation.created_by)
            .entry(creator)
            .or_insert(0) += 1;
    }
    if let Some(h) = opts.history {
        let limits = super::history::HistoryLimits::new(
            usize::try_from(h.size).unwrap_or(usize::MAX),
            h.ttl_s,
        );
        shared.history.set_room_limits(room, limits).map_err(|e| {
            Refused::new(
                ErrorCode::Internal,
                format!("the history store refused the room's limits: {e}"),
            )
        })?;
    }
    // None only if a `delete` raced this create.
    room_view(shared, room).ok_or_else(|| {
        Refused::new(
            ErrorCode::RoomNotFound,
            format!("`{}` was deleted meanwhile", clip(room)),
        )
    })
}

/// `delete {room}`: the room gets `room_deleted`, every member connection
/// leaves it (on its own worker, without `user_left`), and its settings and
/// moderation state are dropped. Returns the connections told to leave.
pub fn delete(shared: &Shared, actor: Actor<'_>, room: &str) -> Result<usize, Refused> {
    let r = delete_inner(shared, actor, room);
    audit(actor, "delete", Some(room), None, None, None, &r);
    r
}

fn delete_inner(shared: &Shared, actor: Actor<'_>, room: &str) -> Result<usize, Refused> {
    let m = &shared.moderation;
    {
        let mut shard = m.shard(room);
        let rank = match shard.get(room) {
            Some(s) => s.rank(actor.user(), actor.roles()),
            None if shared.dir.room(room).is_some() => {
                RoomState::default().rank(actor.user(), actor.roles())
            }
            None => {
                return Err(Refused::new(
                    ErrorCode::RoomNotFound,
                    format!("no room `{}`", clip(room)),
                ))
            }
        };
        if rank < Rank::Creator {
            return Err(Refused::new(
                ErrorCode::Forbidden,
                "only the room's creator or an admin deletes it",
            ));
        }
        if let Some(state) = shard.remove(room) {
            m.entries.fetch_sub(1, Ordering::Relaxed);
            if let Some(c) = state.creator {
                let mut by = lock(&m.created_by);
                if let Some(n) = by.get_mut(&*c) {
                    *n -= 1;
                    if *n == 0 {
                        by.remove(&*c);
                    }
                }
            }
        }
    }
    let text = event("room_deleted", room, None, actor, None, None);
    publish(shared, room, &text);
    let notice = Notice::Deleted(room).encode();
    let mut told = 0;
    if let Some(r) = shared.dir.room(room) {
        let mut cursor: Option<String> = None;
        loop {
            let page = shared.dir.page(&r, cursor.as_deref(), 1000);
            for (user, _) in &page.members {
                told += notify_all(shared, &user.connections(), &notice);
            }
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
    }
    Ok(told)
}

/// `invite {room, user}`: `user` may join the private (or password) room
/// without the password. The user's connections get `invited`.
pub fn invite(shared: &Shared, actor: Actor<'_>, room: &str, user: &str) -> Result<(), Refused> {
    let r = invite_inner(shared, actor, room, user);
    audit(actor, "invite", Some(room), Some(user), None, None, &r);
    r
}

fn invite_inner(shared: &Shared, actor: Actor<'_>, room: &str, user: &str) -> Result<(), Refused> {
    validate_room(room)?;
    shared.moderation.with_entry(room, |state| {
        need(state, actor, Rank::Moderator)?;
        if !state.invites.contains(user) {
            full(state.invites.len(), "invites")?;
            state.invites.insert(user.into());
        }
        Ok(())
    })?;
    let mut out = Out::default();
    out.start("invited", None).str("room", room);
    by(&mut out, actor);
    let text = out.finish().to_owned();
    if let Some(h) = shared.handle.get() {
        for id in shared.dir.connections_of(user) {
            h.send(id, Message::Text(&text));
        }
    }
    Ok(())
}

/// `grant {room, user}`: makes `user` a moderator of `room` (creator or admin).
pub fn grant(shared: &Shared, actor: Actor<'_>, room: &str, user: &str) -> Result<(), Refused> {
    let r = validate_room(room).and_then(|_| {
        shared.moderation.with_entry(room, |state| {
            need(state, actor, Rank::Creator)?;
            not_self(actor, user)?;
            if !state.moderators.contains(user) {
                full(state.moderators.len(), "moderators")?;
                state.moderators.insert(user.into());
            }
            Ok(())
        })
    });
    audit(actor, "grant", Some(room), Some(user), None, None, &r);
    r
}

/// `revoke {room, user}`: takes back a `grant` (creator or admin).
pub fn revoke(shared: &Shared, actor: Actor<'_>, room: &str, user: &str) -> Result<(), Refused> {
    let r = validate_room(room).and_then(|_| {
        shared.moderation.with_entry(room, |state| {
            need(state, actor, Rank::Creator)?;
            if !state.moderators.remove(user) {
                return Err(bad(format!("`{}` is not a moderator here", clip(user))));
            }
            Ok(())
        })
    });
    audit(actor, "revoke", Some(room), Some(user), None, None, &r);
    r
}

/// One room's settings and moderation state; `None` when the room has
/// neither settings nor members.
pub fn room_view(shared: &Shared, room: &str) -> Option<RoomView> {
    let members = shared.dir.room(room).map_or(0, |r| r.count());
    let now = unix_ms();
    let shard = shared.moderation.shard(room);
    let default = shared.cfg.max_members_per_room;
    let Some(s) = shard.get(room) else {
        return (members > 0).then(|| RoomView {
            room: room.to_owned(),
            created: false,
            creator: None,
            created_at: None,
            public: true,
            has_password: false,
            moderated: false,
            max_members: default,
            history: None,
            members,
            moderators: Vec::new(),
            invites: Vec::new(),
            bans: Vec::new(),
            mutes: Vec::new(),
        });
    };
    let sorted = |set: &HashSet<Box<str>>| {
        let mut v: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        v.sort_unstable();
        v
    };
    let active = |map: &HashMap<Box<str>, Ban>| {
        let mut v: Vec<SanctionView> = map
            .iter()
            .filter(|(_, b)| b.active(now))
            .map(|(u, b)| b.view(u))
            .collect();
        v.sort_unstable_by(|a, b| a.user.cmp(&b.user));
        v
    };
    Some(RoomView {
        room: room.to_owned(),
        created: s.creator.is_some(),
        creator: s.creator.as_deref().map(str::to_owned),
        created_at: s.creator.as_ref().map(|_| s.created_at),
        public: s.public,
        has_password: s.password.is_some(),
        moderated: s.moderated,
        max_members: s.max_members.unwrap_or(default),
        history: s.history,
        members,
        moderators: sorted(&s.moderators),
        invites: sorted(&s.invites),
        bans: active(&s.bans),
        mutes: active(&s.mutes),
    })
}

// ----- moderation -----------------------------------------------------------------

/// `kick {room, user, reason?}`: the room gets `user_kicked` and every
/// connection of `user` leaves the room at once, on whatever worker (the
/// room then hears `user_left`). The user may join again. Returns the
/// connections told to leave; `user_not_in_room` if `user` is not a member.
pub fn kick(
    shared: &Shared,
    actor: Actor<'_>,
    room: &str,
    user: &str,
    reason: Option<&str>,
) -> Result<usize, Refused> {
    let r = kick_inner(shared, actor, room, user, reason);
    audit(actor, "kick", Some(room), Some(user), reason, None, &r);
    r
}

fn kick_inner(
    shared: &Shared,
    actor: Actor<'_>,
    room: &str,
    user: &str,
    reason: Option<&str>,
) -> Result<usize, Refused> {
    validate_room(room)?;
    check_reason(reason)?;
    may_act_on(shared, actor, room, user)?;
    let in_room = shared
        .dir
        .room(room)
        .is_some_and(|r| shared.dir.has_member(&r, user));
    if !in_room {
        return Err(Refused::new(
            ErrorCode::UserNotInRoom,
            format!("`{}` is not in `{}`", clip(user), clip(room)),
        ));
    }
    let text = event(
        "user_kicked",
        room,
        Some(user_of(shared, user)),
        actor,
        reason,
        None,
    );
    publish(shared, room, &text);
    Ok(notify_all(
        shared,
        &shared.dir.connections_of(user),
        &Notice::Kicked(room).encode(),
    ))
}

/// `ban {room, user, duration_s?, reason?}`: by user id, so it holds across
/// reconnects and new tokens, for `duration` or until `unban`. The room gets
/// `user_banned`, the user's connections leave the room at once, and its
/// joins (and posts) get `banned`.
pub fn ban(
    shared: &Shared,
    actor: Actor<'_>,
    room: &str,
    user: &str,
    duration: Option<Duration>,
    reason: Option<&str>,
) -> Result<Sanction, Refused> {
    let r = sanction(shared, actor, room, user, duration, reason, true);
    audit(actor, "ban", Some(room), Some(user), reason, duration, &r);
    r
}

/// `mute {room, user, duration_s?, reason?}`: the user stays in the room but
/// its `message` and `typing` there get `muted`, for `duration` or until
/// `unmute`. The room gets `user_muted`.
pub fn mute(
    shared: &Shared,
    actor: Actor<'_>,
    room: &str,
    user: &str,
    duration: Option<Duration>,
    reason: Option<&str>,
) -> Result<Sanction, Refused> {
    let r = sanction(shared, actor, room, user, duration, reason, false);
    audit(actor, "mute", Some(room), Some(user), reason, duration, &r);
    r
}

fn sanction(
    shared: &Shared,
    actor: Actor<'_>,
    room: &str,
    user: &str,
    duration: Option<Duration>,
    reason: Option<&str>,
    is_ban: bool,
) -> Result<Sanction, Refused> {
    validate_room(room)?;
    check_reason(reason)?;
    let until = until(duration)?;
    may_act_on(shared, actor, room, user)?;
    shared.moderation.with_entry(room, |state| {
        let map = if is_ban {
            &mut state.bans
        } else {
            &mut state.mutes
        };
        if !map.contains_key(user) {
            full(map.len(), if is_ban { "bans" } else { "mutes" })?;
        }
        map.insert(
            user.into(),
            Ban {
                until,
                reason: reason.map(Into::into),
                by: actor.user().map(Into::into),
            },
        );
        Ok(())
    })?;
    let kind = if is_ban { "user_banned" } else { "user_muted" };
    let text = event(
        kind,
        room,
        Some(user_of(shared, user)),
        actor,
        reason,
        Some(until),
    );
    publish(shared, room, &text);
    let member = shared
        .dir
        .room(room)
        .is_some_and(|r| shared.dir.has_member(&r, user));
    let connections = if is_ban && member {
        notify_all(
            shared,
            &shared.dir.connections_of(user),
            &Notice::Banned(room).encode(),
        )
    } else {
        0
    };
    Ok(Sanction { until, connections })
}

/// `unban {room, user}`: lifts a room ban; the room gets `user_unbanned`.
pub fn unban(shared: &Shared, actor: Actor<'_>, room: &str, user: &str) -> Result<(), Refused> {
    let r = lift(shared, actor, room, user, true);
    audit(actor, "unban", Some(room), Some(user), None, None, &r);
    r
}

/// `unmute {room, user}`: lifts a mute; the room gets `user_unmuted`.
pub fn unmute(shared: &Shared, actor: Actor<'_>, room: &str, user: &str) -> Result<(), Refused> {
    let r = lift(shared, actor, room, user, false);
    audit(actor, "unmute", Some(room), Some(user), None, None, &r);
    r
}

fn lift(
    shared: &Shared,
    actor: Actor<'_>,
    room: &str,
    user: &str,
    is_ban: bool,
) -> Result<(), Refused> {
    validate_room(room)?;
    let what = if is_ban { "banned" } else { "muted" };
    let now = unix_ms();
    shared.moderation.with_entry(room, |state| {
        need(state, actor, Rank::Moderator)?;
        let map = if is_ban {
            &mut state.bans
        } else {
            &mut state.mutes
        };
        match map.remove(user) {
            Some(b) if b.active(now) => Ok(()),
            _ => Err(bad(format!(
                "`{}` is not {what} in `{}`",
                clip(user),
                clip(room)
            ))),
        }
    })?;
    let kind = if is_ban {
        "user_unbanned"
    } else {
        "user_unmuted"
    };
    let text = event(kind, room, Some(user_of(shared, user)), actor, None, None);
    publish(shared, room, &text);
    Ok(())
}

/// Server-wide ban (admin only; `ban` without `room`): every connection of
/// `user` is closed with 4009 ([`CLOSE_BANNED`]) and new ones are refused
/// (`403` at the upgrade, `banned` at `auth`) for `duration` or until
/// [`server_unban`].
pub fn server_ban(
    shared: &Shared,
    actor: Actor<'_>,
    user: &str,
    duration: Option<Duration>,
    reason: Option<&str>,
) -> Result<Sanction, Refused> {
    let r = server_ban_inner(shared, actor, user, duration, reason);
    audit(actor, "server_ban", None, Some(user), reason, duration, &r);
    r
}

fn server_ban_inner(
    shared: &Shared,
    actor: Actor<'_>,
    user: &str,
    duration: Option<Duration>,
    reason: Option<&str>,
) -> Result<Sanction, Refused> {
    admin_only(actor)?;
    not_self(actor, user)?;
    check_reason(reason)?;
    let until = until(duration)?;
    let m = &shared.moderation;
    {
        let mut bans = lock(&m.server_bans);
        if !bans.contains_key(user) && bans.len() >= MAX_SERVER_BANS {
            return Err(Refused::new(
                ErrorCode::LimitExceeded,
                format!("{MAX_SERVER_BANS} server-wide bans, the most allowed"),
            ));
        }
        bans.insert(
            user.into(),
            Ban {
                until,
                reason: reason.map(Into::into),
                by: actor.user().map(Into::into),
            },
        );
        m.server_banned.store(bans.len(), Ordering::Relaxed);
    }
    // Recorded first, then the connections are looked up: a connection
    // registering meanwhile checks the ban after registering (handler).
    let mut closed = 0;
    if let Some(h) = shared.handle.get() {
        for id in shared.dir.connections_of(user) {
            if h.close(id, CLOSE_BANNED, "banned from this server") {
                closed += 1;
            }
        }
    }
    Ok(Sanction {
        until,
        connections: closed,
    })
}

/// Lifts a server-wide ban (admin only; `unban` without `room`).
pub fn server_unban(shared: &Shared, actor: Actor<'_>, user: &str) -> Result<(), Refused> {
    let r = admin_only(actor).and_then(|_| {
        let m = &shared.moderation;
        let mut bans = lock(&m.server_bans);
        let now = unix_ms();
        let had = bans.remove(user).is_some_and(|b| b.active(now));
        m.server_banned.store(bans.len(), Ordering::Relaxed);
        if had {
            Ok(())
        } else {
            Err(bad(format!(
                "`{}` is not banned from the server",
                clip(user)
            )))
        }
    });
    audit(actor, "server_unban", None, Some(user), None, None, &r);
    r
}

/// Active server-wide bans, by user id.
pub fn server_bans(shared: &Shared) -> Vec<SanctionView> {
    let now = unix_ms();
    let mut v: Vec<SanctionView> = lock(&shared.moderation.server_bans)
        .iter()
        .filter(|(_, b)| b.active(now))
        .map(|(u, b)| b.view(u))
        .collect();
    v.sort_unstable_by(|a, b| a.user.cmp(&b.user));
    v
}

// ----- helpers ----------------------------------------------------------------------

/// The actor needs `min` rank in the room, and the target a lower one.
fn may_act_on(shared: &Shared, actor: Actor<'_>, room: &str, user: &str) -> Result<(), Refused> {
    not_self(actor, user)?;
    let shard = shared.moderation.shard(room);
    let default = RoomState::default();
    let state = shard.get(room).unwrap_or(&default);
    need(state, actor, Rank::Moderator)?;
    let mine = state.rank(actor.user(), actor.roles());
    let theirs = state.rank(Some(user), 0);
    if theirs >= mine {
        return Err(Refused::new(
            ErrorCode::Forbidden,
            format!(
                "`{}` is this room's {}: not yours to moderate",
                clip(user),
                if theirs == Rank::Creator {
                    "creator"
                } else {
                    "moderator"
                }
            ),
        ));
    }
    Ok(())
}

fn need(state: &RoomState, actor: Actor<'_>, min: Rank) -> Result<(), Refused> {
    if state.rank(actor.user(), actor.roles()) >= min {
        return Ok(());
    }
    Err(Refused::new(
        ErrorCode::Forbidden,
        match min {
            Rank::Creator | Rank::Admin => "only the room's creator or an admin may do this",
            _ => "only the room's moderators may do this",
        },
    ))
}

fn admin_only(actor: Actor<'_>) -> Result<(), Refused> {
    if actor.roles() & role::ADMIN != 0 {
        Ok(())
    } else {
        Err(Refused::new(
            ErrorCode::Forbidden,
            "a server-wide ban needs the admin role (give a `room` for a room ban)",
        ))
    }
}

fn not_self(actor: Actor<'_>, user: &str) -> Result<(), Refused> {
    if actor.user() == Some(user) {
        Err(bad("not on yourself".to_owned()))
    } else {
        Ok(())
    }
}

fn full(len: usize, what: &str) -> Result<(), Refused> {
    if len >= MAX_LIST_ENTRIES {
        Err(Refused::new(
            ErrorCode::LimitExceeded,
            format!("this room has {MAX_LIST_ENTRIES} {what}, the most allowed"),
        ))
    } else {
        Ok(())
    }
}

fn validate_room(room: &str) -> Result<(), Refused> {
    if room.is_empty()
        || room.len() > super::wire::MAX_ROOM_BYTES
        || room.chars().any(char::is_control)
    {
        return Err(bad(format!(
            "`room` must be 1 to {} bytes without control characters",
            super::wire::MAX_ROOM_BYTES
        )));
    }
    Ok(())
}

fn check_reason(reason: Option<&str>) -> Result<(), Refused> {
    match reason {
        Some(r) if r.len() > MAX_REASON_BYTES => Err(bad(format!(
            "`reason` is longer than {MAX_REASON_BYTES} bytes"
        ))),
        _ => Ok(()),
    }
}

fn until(duration: Option<Duration>) -> Result<Option<u64>, Refused> {
    match duration {
        None => Ok(None),
        Some(d) if d.is_zero() || d.as_secs() > MAX_DURATION_S => {
            Err(bad(format!("`duration_s` must be 1 to {MAX_DURATION_S}")))
        }
        Some(d) => Ok(Some(unix_ms() + d.as_millis() as u64)),
    }
}

fn bad(message: String) -> Refused {
    Refused::new(ErrorCode::BadRequest, message)
}

/// `(id, display name)` of a user: the name when it is online, else the id.
fn user_of<'a>(shared: &Shared, id: &'a str) -> (&'a str, String) {
    let name = shared
        .dir
        .find_user(id)
        .map_or_else(|| id.to_owned(), |u| u.name().to_owned());
    (id, name)
}

/// A room event: `{"type":kind,"room":..,"user":{..},"by":..,"reason":..,"until":..}`.
fn event(
    kind: &str,
    room: &str,
    user: Option<(&str, String)>,
    actor: Actor<'_>,
    reason: Option<&str>,
    until: Option<Option<u64>>,
) -> String {
    let mut out = Out::default();
    out.start(kind, None).str("room", room);
    if let Some((id, name)) = user {
        out.user("user", id, &name);
    }
    by(&mut out, actor);
    if let Some(r) = reason {
        out.str("reason", r);
    }
    match until {
        Some(Some(t)) => {
            out.num("until", t);
        }
        Some(None) => {
            out.raw("until", "null");
        }
        None => {}
    }
    out.finish().to_owned()
}

fn by(out: &mut Out, actor: Actor<'_>) {
    match actor.user() {
        Some(id) => out.str("by", id),
        None => out.raw("by", "null"),
    };
}

fn publish(shared: &Shared, room: &str, text: &str) {
    if let Some(h) = shared.handle.get() {
        h.publish(room, Message::Text(text));
    }
}

fn notify_all(shared: &Shared, ids: &[crate::runtime::ConnId], payload: &[u8]) -> usize {
    let Some(h) = shared.handle.get() else {
        return 0;
    };
    ids.iter().filter(|id| h.notify(**id, payload)).count()
}

/// One audit line per action (refused ones at `warn`).
fn audit<T>(
    actor: Actor<'_>,
    action: &str,
    room: Option<&str>,
    target: Option<&str>,
    reason: Option<&str>,
    duration: Option<Duration>,
    result: &Result<T, Refused>,
) {
    let room = room.unwrap_or("");
    let target = target.unwrap_or("");
    let reason = reason.unwrap_or("");
    let duration_s = duration.map_or(0, |d| d.as_secs());
    match result {
        Ok(_) => tracing::info!(
            target: "edgews::audit",
            actor = actor.label(),
            action,
            room,
            target,
            reason,
            duration_s,
            outcome = "ok",
            "moderation"
        ),
        Err(e) => tracing::warn!(
            target: "edgews::audit",
            actor = actor.label(),
            action,
            room,
            target,
            reason,
            duration_s,
            outcome = e.code.as_str(),
            "moderation refused"
        ),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Room passwords: PBKDF2-HMAC-SHA256 with a random 16-byte salt, from
/// `ring` (already in the build for rustls and jsonwebtoken; maintained,
/// audited; its `pbkdf2::verify` compares in constant time).
mod password {
    use std::num::NonZeroU32;

    use ring::pbkdf2;
    use ring::rand::{SecureRandom, SystemRandom};

    /// Iterations. A join with a password hashes on the worker's event
    /// loop, so this is a trade-off between the cost of a stolen memory dump
    /// and a join's latency (see the unit test's figure).
    pub const ITERATIONS: u32 = 2_000;
    const ALG: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;

    /// A salted hash.
    #[derive(Clone)]
    pub struct Hashed {
        salt: [u8; 16],
        hash: [u8; 32],
    }

    impl std::fmt::Debug for Hashed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Hashed(..)")
        }
    }

    fn iterations() -> NonZeroU32 {
        NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN)
    }

    impl Hashed {
        /// Hashes `password` with a fresh salt (`None`: no system randomness).
        pub fn new(password: &str) -> Option<Hashed> {
            let mut salt = [0u8; 16];
            SystemRandom::new().fill(&mut salt).ok()?;
            let mut hash = [0u8; 32];
            pbkdf2::derive(ALG, iterations(), &salt, password.as_bytes(), &mut hash);
            Some(Hashed { salt, hash })
        }

        /// Whether `password` matches (constant time).
        pub fn verify(&self, password: &str) -> bool {
            pbkdf2::verify(
                ALG,
                iterations(),
                &self.salt,
                password.as_bytes(),
                &self.hash,
            )
            .is_ok()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn matches_only_the_password_and_salts_differ() {
            let h = Hashed::new("hunter2").unwrap();
            assert!(h.verify("hunter2"));
            assert!(!h.verify("hunter3"));
            assert!(!h.verify(""));
            let h2 = Hashed::new("hunter2").unwrap();
            assert_ne!(h.salt, h2.salt);
            assert_ne!(
                h.hash, h2.hash,
                "same password, different salt, different hash"
            );
            let started = std::time::Instant::now();
            for _ in 0..10 {
                h.verify("x");
            }
            println!(
                "verify ({ITERATIONS} iterations): {:?} each",
                started.elapsed() / 10
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        for n in [
            Notice::Kicked("lobby"),
            Notice::Banned("ünïcode room"),
            Notice::Deleted(""),
        ] {
            assert_eq!(Notice::decode(&n.encode()), Some(n));
        }
        assert_eq!(Notice::decode(b""), None);
        assert_eq!(Notice::decode(b"xroom"), None);
        assert_eq!(Notice::decode(b"k\xff"), None);
    }

    #[test]
    fn reserved_names_need_their_role() {
        assert!(reserved("lobby", 0).is_ok());
        assert_eq!(
            reserved("admin-ops", 0).unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert!(reserved("admin-ops", role::MODERATOR).is_err());
        assert!(reserved("admin-ops", role::ADMIN).is_ok());
        assert!(reserved("moderator-x", role::MODERATOR).is_ok());
        assert!(reserved("moderator-x", role::ADMIN).is_ok());
        assert!(reserved("moderator-x", 0).is_err());
    }

    #[test]
    fn ranks_order_admin_creator_moderator_member() {
        let mut s = RoomState {
            creator: Some("carol".into()),
            ..RoomState::default()
        };
        s.moderators.insert("mo".into());
        assert_eq!(s.rank(Some("carol"), 0), Rank::Creator);
        assert_eq!(s.rank(Some("mo"), 0), Rank::Moderator);
        assert_eq!(s.rank(Some("x"), role::MODERATOR), Rank::Moderator);
        assert_eq!(s.rank(Some("x"), role::ADMIN), Rank::Admin);
        assert_eq!(s.rank(None, 0), Rank::Member);
        assert_eq!(s.rank(Some("x"), 0), Rank::Member);
    }

    #[test]
    fn expired_sanctions_are_dropped_where_read() {
        let mut s = RoomState::default();
        s.bans.insert(
            "old".into(),
            Ban {
                until: Some(1),
                reason: None,
                by: None,
            },
        );
        s.mutes.insert(
            "forever".into(),
            Ban {
                until: None,
                reason: None,
                by: None,
            },
        );
        let now = unix_ms();
        assert!(!s.banned("old", now));
        assert!(s.bans.is_empty());
        assert!(s.muted("forever", now));
        assert!(!s.is_idle(now));
        s.mutes.clear();
        assert!(s.is_idle(now));
    }
}
