//! The stable codes of wire protocol v1: error codes in `error` replies and
//! the close codes the room server uses. Documented in `docs/protocol.md`;
//! clients rely on them, so add, never rename.

use crate::protocol::CloseCode;

/// Why a request failed (the `code` of an `error` reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The message is not valid JSON, or nests deeper than the parser allows.
    BadJson,
    /// Not a JSON object; a field is missing, has the wrong type, is too
    /// long, or is unknown; a binary frame.
    BadRequest,
    /// `type` names no request of this protocol.
    UnknownType,
    /// Not authenticated yet (only `auth` and `ping` are served), or a bad token.
    Unauthorized,
    /// The token has expired.
    TokenExpired,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// The request names a room this connection has not joined.
    NotInRoom,
    /// The room has `max_members_per_room` users.
    RoomFull,
    /// This connection is in `max_rooms_per_connection` rooms.
    TooManyRooms,
    /// The room's password does not match.
    WrongPassword,
    /// The user of a private message has no connection.
    UserOffline,
    /// Over the per-connection message rate.
    RateLimited,
    /// A server fault; the request may be retried.
    Internal,
    /// Banned from this room (or from the server).
    Banned,
    /// Muted in this room: messages are refused until unmuted.
    Muted,
    /// A moderated room: only its moderators post.
    Moderated,
    /// A private room: joining needs an invite (or its password).
    NotInvited,
    /// `create` of a room that exists already.
    RoomExists,
    /// The request names a room that has not been created.
    RoomNotFound,
    /// The user named by a moderation request is not in the room.
    UserNotInRoom,
    /// A moderation or settings limit was reached (the message names it).
    LimitExceeded,
    /// The admin API has no such route.
    NotFound,
    /// `history` on a node scaled out through Redis: each node's history
    /// holds only what was published on it until history lives in Redis.
    HistoryUnavailable,
}

impl ErrorCode {
    /// Every code, for documentation and metrics.
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::BadJson,
        ErrorCode::BadRequest,
        ErrorCode::UnknownType,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::Forbidden,
        ErrorCode::NotInRoom,
        ErrorCode::RoomFull,
        ErrorCode::TooManyRooms,
        ErrorCode::WrongPassword,
        ErrorCode::UserOffline,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::Banned,
        ErrorCode::Muted,
        ErrorCode::Moderated,
        ErrorCode::NotInvited,
        ErrorCode::RoomExists,
        ErrorCode::RoomNotFound,
        ErrorCode::UserNotInRoom,
        ErrorCode::LimitExceeded,
        ErrorCode::NotFound,
        ErrorCode::HistoryUnavailable,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::WrongPassword => "wrong_password",
            ErrorCode::UserOffline => "user_offline",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::Banned => "banned",
            ErrorCode::Muted => "muted",
            ErrorCode::Moderated => "moderated",
            ErrorCode::NotInvited => "not_invited",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::UserNotInRoom => "user_not_in_room",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::NotFound => "not_found",
            ErrorCode::HistoryUnavailable => "history_unavailable",
        }
    }
}

/// No valid token: none within `auth_timeout_secs`, or a bad one in `auth`.
pub const CLOSE_UNAUTHORIZED: CloseCode = CloseCode::new(4001);
/// The token expired and was not refreshed in time.
pub const CLOSE_TOKEN_EXPIRED: CloseCode = CloseCode::new(4003);
/// Kept sending over the rate limit.
pub const CLOSE_RATE_LIMIT: CloseCode = CloseCode::new(4008);
/// Banned from the server (a server-wide ban by an admin).
pub const CLOSE_BANNED: CloseCode = CloseCode::new(4009);
/// Closed by an administrator (`POST /api/admin/users/{user}/disconnect`).
pub const CLOSE_DISCONNECTED: CloseCode = CloseCode::new(4010);
/// The user already has `max_connections_per_user` connections (on any
/// node, with a broker).
pub const CLOSE_TOO_MANY_CONNECTIONS: CloseCode = CloseCode::new(4029);
