//! Setting up a room server session before a scenario gets the connection:
//! authenticate in-band (`{"type":"auth","token":..}` after the handshake,
//! with a token the generator mints itself), wait for `welcome`, join the
//! connection's room and wait for the join's `ack`. Only then does the
//! wrapped scenario see `on_open`, and from then on every message.
//!
//! Events that arrive during set-up (`user_joined` from earlier members) are
//! dropped. A refused token or join counts the connection as failed, so
//! `main` stops with the server's error instead of measuring nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use edgews::protocol::OpCode;
use edgews::rooms::auth::{unix_now, Claims, Keys};
use edgews::rooms::config::AuthConfig;

use super::wire::{is_type, Rooms};
use super::Shared;
use crate::runner::{Io, Scenario};

/// Who the connections are and where they go.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The server's HS256 secret.
    pub secret: String,
    /// User ids are `<prefix><global connection id>`.
    pub user_prefix: String,
    /// Connections that share one user id (1: every connection its own user).
    pub conns_per_user: usize,
    /// The room each connection joins.
    pub rooms: Rooms,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Auth,
    Join,
    Ready,
    Failed,
}

struct Setup {
    plan: Plan,
    keys: Keys,
    first: usize,
    phase: Vec<Phase>,
    shared: Arc<Shared>,
    /// The first refusal seen, for the error message.
    refused: Option<String>,
}

/// A scenario behind room server set-up; with no plan, a pass-through.
pub struct Session<S> {
    inner: S,
    setup: Option<Setup>,
}

impl<S: Scenario> Session<S> {
    /// Wraps `inner` for `count` connections whose global ids start at
    /// `first`. `plan: None` (the plain protocol) adds nothing.
    pub fn new(
        inner: S,
        plan: Option<Plan>,
        first: usize,
        count: usize,
        shared: Arc<Shared>,
    ) -> Session<S> {
        let setup = plan.map(|plan| Setup {
            keys: Keys::hs256(plan.secret.as_bytes(), &AuthConfig::default()),
            plan,
            first,
            phase: vec![Phase::Auth; count],
            shared,
            refused: None,
        });
        Session { inner, setup }
    }

    /// The first refusal from the server during set-up, if any.
    pub fn refused(&self) -> Option<&str> {
        self.setup.as_ref().and_then(|s| s.refused.as_deref())
    }
}

impl Setup {
    fn user_of(&self, id: usize) -> String {
        let global = self.first + id;
        format!(
            "{}{}",
            self.plan.user_prefix,
            global / self.plan.conns_per_user.max(1)
        )
    }

    fn fail(&mut self, id: usize, why: String) {
        self.phase[id] = Phase::Failed;
        self.shared.failed.fetch_add(1, Ordering::AcqRel);
        self.refused.get_or_insert(why);
    }
}

impl<S: Scenario> Scenario for Session<S> {
    fn on_open(&mut self, io: &mut Io<'_>, id: usize, now: u64) {
        let Some(setup) = self.setup.as_mut() else {
            return self.inner.on_open(io, id, now);
        };
        let sub = setup.user_of(id);
        let claims = Claims {
            sub,
            exp: Some(unix_now() + 24 * 3600),
            ..Claims::default()
        };
        match setup.keys.mint(&claims) {
            Ok(token) => {
                let msg = format!("{{\"type\":\"auth\",\"token\":\"{token}\"}}");
                io.send(id, OpCode::Text, msg.as_bytes());
            }
            Err(e) => setup.fail(id, e.to_string()),
        }
    }

    fn on_message(&mut self, io: &mut Io<'_>, id: usize, payload: &[u8], now: u64) {
        let Some(setup) = self.setup.as_mut() else {
            return self.inner.on_message(io, id, payload, now);
        };
        match setup.phase[id] {
            Phase::Ready => self.inner.on_message(io, id, payload, now),
            Phase::Failed => {}
            Phase::Auth | Phase::Join if is_type(payload, "error") => {
                let why = String::from_utf8_lossy(payload).into_owned();
                setup.fail(id, why);
            }
            Phase::Auth if is_type(payload, "welcome") => {
                let room = setup.plan.rooms.room_of(setup.first + id);
                let msg = format!("{{\"type\":\"join\",\"id\":1,\"room\":\"{room}\"}}");
                io.send(id, OpCode::Text, msg.as_bytes());
                setup.phase[id] = Phase::Join;
            }
            Phase::Join if is_type(payload, "ack") => {
                setup.phase[id] = Phase::Ready;
                self.inner.on_open(io, id, now);
            }
            // user_joined of earlier members, before this one is ready.
            Phase::Auth | Phase::Join => {}
        }
    }

    fn on_closed(&mut self, id: usize, code: Option<u16>) {
        if let Some(setup) = self.setup.as_mut() {
            if setup.phase[id] != Phase::Ready {
                if let Some(code) = code {
                    setup
                        .refused
                        .get_or_insert(format!("closed {code} during set-up"));
                }
            }
        }
        self.inner.on_closed(id, code);
    }

    fn tick(&mut self, io: &mut Io<'_>, now: u64) -> bool {
        self.inner.tick(io, now)
    }
}
