//! The room handler's side of room settings and moderation: the requests
//! (`create`, `kick`, `ban`, ...) mapped onto the service layer
//! ([`crate::rooms::moderation`]) and its results onto `ack`/`error`, and
//! the notices a moderation action sends to the target's connections.

use std::time::Duration;

use super::super::moderation::{self as m, Actor, Notice, Refused};
use super::super::wire::{Id, Moderate};
use super::{RoomHandler, C};

impl RoomHandler {
    /// Sends `refused` as an `error` reply.
    pub(super) fn refused(&mut self, conn: &mut C<'_, '_>, id: Option<Id<'_>>, refused: &Refused) {
        self.error(conn, id, refused.code, &refused.message);
    }

    /// A settings or moderation request from an authenticated connection.
    pub(super) fn moderate(&mut self, conn: &mut C<'_, '_>, id: Option<Id<'_>>, req: Moderate<'_>) {
        let user = conn.data().user.clone().expect("authenticated");
        let actor = Actor::User {
            id: user.id(),
            roles: conn.data().roles,
        };
        let shared = self.shared.clone();
        let s = &*shared;
        let secs = |d: Option<u64>| d.map(Duration::from_secs);
        let result = match req {
            Moderate::Create { room, options } => m::create(s, actor, room, &options).map(|v| {
                let out = self.out.start("ack", id).str("room", room);
                out.bool("public", v.public)
                    .bool("moderated", v.moderated)
                    .bool("has_password", v.has_password)
                    .num("max_members", v.max_members as u64);
                out.finish().len()
            }),
            Moderate::Delete { room } => m::delete(s, actor, room).map(|n| {
                let out = self.out.start("ack", id).str("room", room);
                out.num("removed", n as u64).finish().len()
            }),
            Moderate::Invite { room, user } => {
                m::invite(s, actor, room, user).map(|_| self.ack_user(id, Some(room), user))
            }
            Moderate::Grant { room, user } => {
                m::grant(s, actor, room, user).map(|_| self.ack_user(id, Some(room), user))
            }
            Moderate::Revoke { room, user } => {
                m::revoke(s, actor, room, user).map(|_| self.ack_user(id, Some(room), user))
            }
            Moderate::Kick { room, user, reason } => {
                m::kick(s, actor, room, user, reason).map(|n| {
                    self.ack_user(id, Some(room), user);
                    self.out.buf.pop();
                    self.out.num("removed", n as u64).finish().len()
                })
            }
            Moderate::Ban {
                room: Some(room),
                user,
                duration_s,
                reason,
            } => m::ban(s, actor, room, user, secs(duration_s), reason)
                .map(|b| self.ack_sanction(id, Some(room), user, b)),
            Moderate::Ban {
                room: None,
                user,
                duration_s,
                reason,
            } => m::server_ban(s, actor, user, secs(duration_s), reason)
                .map(|b| self.ack_sanction(id, None, user, b)),
            Moderate::Unban {
                room: Some(room),
                user,
            } => m::unban(s, actor, room, user).map(|_| self.ack_user(id, Some(room), user)),
            Moderate::Unban { room: None, user } => {
                m::server_unban(s, actor, user).map(|_| self.ack_user(id, None, user))
            }
            Moderate::Mute {
                room,
                user,
                duration_s,
                reason,
            } => m::mute(s, actor, room, user, secs(duration_s), reason)
                .map(|b| self.ack_sanction(id, Some(room), user, b)),
            Moderate::Unmute { room, user } => {
                m::unmute(s, actor, room, user).map(|_| self.ack_user(id, Some(room), user))
            }
        };
        match result {
            // The ack was written into `self.out` by the closure.
            Ok(_) => {
                let text = std::str::from_utf8(&self.out.buf).unwrap_or("{}");
                conn.send_text(text);
            }
            Err(e) => self.refused(conn, id, &e),
        }
    }

    /// Writes `{"type":"ack","id":..,"room":..,"user":..}` into `self.out`.
    fn ack_user(&mut self, id: Option<Id<'_>>, room: Option<&str>, user: &str) -> usize {
        let out = self.out.start("ack", id);
        if let Some(room) = room {
            out.str("room", room);
        }
        out.str("user", user).finish().len()
    }

    /// Writes the ack of a ban or mute: `room` (absent for a server-wide
    /// ban), `user`, `until` (ms, or null) and `removed` (connections told to
    /// leave, or closed).
    fn ack_sanction(
        &mut self,
        id: Option<Id<'_>>,
        room: Option<&str>,
        user: &str,
        s: m::Sanction,
    ) -> usize {
        self.ack_user(id, room, user);
        self.out.buf.pop();
        match s.until {
            Some(t) => self.out.num("until", t),
            None => self.out.raw("until", "null"),
        };
        self.out.num("removed", s.connections as u64).finish().len()
    }

    /// A notice from a moderation action (through `ServerHandle::notify`):
    /// this connection leaves the room through the normal leave path.
    pub(super) fn notice(&mut self, conn: &mut C<'_, '_>, payload: &[u8]) {
        let Some(notice) = Notice::decode(payload) else {
            return;
        };
        let room = notice.room();
        let Some(r) = self.joined(conn, room) else {
            return;
        };
        conn.unsubscribe(room);
        match notice {
            Notice::Kicked(_) | Notice::Banned(_) => {
                self.left(conn, &r);
            }
            Notice::Deleted(_) => {
                // The room heard `room_deleted`: no `user_left` for each member.
                let user = conn.data().user.clone().expect("authenticated");
                self.shared.dir.leave(&user, &r);
            }
        }
    }

    /// A server-wide ban found when a connection authenticates: `error`
    /// `banned` and close 4009. True when the connection was refused.
    pub(super) fn refuse_banned(
        &mut self,
        conn: &mut C<'_, '_>,
        id: Option<Id<'_>>,
        user: &str,
    ) -> bool {
        match m::check_connect(&self.shared, user) {
            Ok(()) => false,
            Err(e) => {
                self.refused(conn, id, &e);
                conn.close(super::super::codes::CLOSE_BANNED, "banned from this server");
                true
            }
        }
    }

    /// The check before a `message` or `typing` in `room`: `muted`,
    /// `moderated` or `banned` are sent as errors. True when refused.
    pub(super) fn refuse_post(
        &mut self,
        conn: &mut C<'_, '_>,
        id: Option<Id<'_>>,
        room: &str,
        user: &str,
    ) -> bool {
        let roles = conn.data().roles;
        match m::check_post(&self.shared, room, user, roles) {
            Ok(()) => false,
            Err(e) => {
                self.refused(conn, id, &e);
                true
            }
        }
    }
}
