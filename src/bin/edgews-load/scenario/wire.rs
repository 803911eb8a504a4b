//! What the scenarios' messages look like on the wire: the engine's tiny
//! text pub-sub protocol (`edgews echo [--pubsub]`, the peers), or the room
//! server's wire protocol v1 (JSON). The scenarios' logic (pacing, sequence
//! checks, latency) is the same for both; only the bytes differ.
//!
//! The room protocol is written by hand here, not through a JSON library:
//! the generator controls every value it sends (ASCII room and user names,
//! filler data, base64url tokens), so nothing needs escaping, and at millions
//! of deliveries per second a full parse of each one would measure the
//! generator rather than the server.

use std::io::Write;

/// Rooms of the room server: which room a connection joins.
#[derive(Clone, Debug)]
pub struct Rooms {
    /// The room's name, or the prefix of the rooms' names.
    pub name: String,
    /// Connections per room, by global connection id (0: all in `name`).
    pub per_room: usize,
}

impl Rooms {
    /// The room connection `global` joins: `name`, or `name-<global / per_room>`.
    pub fn room_of(&self, global: usize) -> String {
        match global.checked_div(self.per_room) {
            None => self.name.clone(),
            Some(group) => format!("{}-{group}", self.name),
        }
    }
}

/// The protocol a scenario speaks.
#[derive(Clone, Debug)]
pub enum Wire {
    /// `sub:<room>` / `pub:<room>:<payload>`, and plain echo.
    Plain,
    /// Room server wire protocol v1; the connections join their rooms while
    /// they are set up ([`super::session`]).
    Rooms(Rooms),
}

/// The type of a room server message: `{"type":"<kind>"` at its start.
pub fn is_type(payload: &[u8], kind: &str) -> bool {
    payload
        .strip_prefix(b"{\"type\":\"")
        .and_then(|p| p.strip_prefix(kind.as_bytes()))
        .is_some_and(|p| p.first() == Some(&b'"'))
}

impl Wire {
    /// What a subscriber sends to join `room` (`None`: already a member).
    pub fn subscribe(&self, room: &str) -> Option<Vec<u8>> {
        match self {
            Wire::Plain => Some(format!("sub:{room}").into_bytes()),
            Wire::Rooms(_) => None,
        }
    }

    /// Starts a publish to `room` in `out`; the body follows, then
    /// [`Wire::end_publish`]. Room messages exclude the sender, who is a member.
    pub fn start_publish(&self, out: &mut Vec<u8>, room: &str) {
        out.clear();
        let _ = match self {
            Wire::Plain => write!(out, "pub:{room}:"),
            Wire::Rooms(_) => write!(
                out,
                "{{\"type\":\"message\",\"room\":\"{room}\",\"exclude_self\":true,\"data\":\""
            ),
        };
    }

    /// Ends what [`Wire::start_publish`] started.
    pub fn end_publish(&self, out: &mut Vec<u8>) {
        if let Wire::Rooms(_) = self {
            out.extend_from_slice(b"\"}");
        }
    }

    /// The published body inside a delivered message, if it is one: the
    /// message itself, or the `data` string of a room `message` event.
    pub fn delivery<'a>(&self, payload: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            Wire::Plain => Some(payload),
            Wire::Rooms(_) => {
                if !is_type(payload, "message") {
                    return None;
                }
                const KEY: &[u8] = b"\"data\":\"";
                let at = payload.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
                let rest = &payload[at..];
                let end = rest.iter().position(|&b| b == b'"')?;
                Some(&rest[..end])
            }
        }
    }

    /// The echo request of connection `global` with `body` (room messages
    /// go to the connection's own room, with an `id` so the server acks).
    pub fn request(&self, global: usize, body: &[u8]) -> Vec<u8> {
        match self {
            Wire::Plain => body.to_vec(),
            Wire::Rooms(rooms) => {
                let mut out = format!(
                    "{{\"type\":\"message\",\"id\":1,\"room\":\"{}\",\"data\":\"",
                    rooms.room_of(global)
                )
                .into_bytes();
                out.extend_from_slice(body);
                out.extend_from_slice(b"\"}");
                out
            }
        }
    }

    /// What an echo-side message is: `Some(true)` the reply to a request,
    /// `Some(false)` a wrong reply, `None` something else to ignore (the
    /// room's own `message` event, which the sender gets as a member).
    pub fn reply(&self, payload: &[u8], body_len: usize) -> Option<bool> {
        match self {
            Wire::Plain => Some(payload.len() == body_len),
            Wire::Rooms(_) if is_type(payload, "ack") => Some(true),
            Wire::Rooms(_) if is_type(payload, "message") => None,
            Wire::Rooms(_) => Some(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms() -> Wire {
        Wire::Rooms(Rooms {
            name: "echo".into(),
            per_room: 1,
        })
    }

    #[test]
    fn room_names() {
        let shared = Rooms {
            name: "bench".into(),
            per_room: 0,
        };
        assert_eq!(shared.room_of(7), "bench");
        let groups = Rooms {
            name: "idle".into(),
            per_room: 100,
        };
        assert_eq!(
            (groups.room_of(99), groups.room_of(100)),
            ("idle-0".into(), "idle-1".into())
        );
    }

    #[test]
    fn room_publish_round_trips_through_a_server_event() {
        let w = rooms();
        let mut out = Vec::new();
        w.start_publish(&mut out, "bench");
        out.extend_from_slice(b"3:17:99:xx");
        w.end_publish(&mut out);
        let sent: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(sent["exclude_self"], true);
        assert_eq!(sent["data"], "3:17:99:xx");
        // What the server sends every member (src/rooms/handler.rs).
        let event = br#"{"type":"message","room":"bench","from":{"id":"load-1","name":"load-1"},"data":"3:17:99:xx","ts":1}"#;
        assert_eq!(w.delivery(event), Some(&b"3:17:99:xx"[..]));
        let joined =
            br#"{"type":"user_joined","room":"bench","user":{"id":"a","name":"a"},"members":2}"#;
        assert_eq!(w.delivery(joined), None);
        assert_eq!(Wire::Plain.delivery(b"sync"), Some(&b"sync"[..]));
    }

    #[test]
    fn echo_requests_and_replies() {
        let w = rooms();
        let req: serde_json::Value = serde_json::from_slice(&w.request(5, b"eee")).unwrap();
        assert_eq!(
            (req["room"].as_str(), req["id"].as_i64()),
            (Some("echo-5"), Some(1))
        );
        assert_eq!(
            w.reply(br#"{"type":"ack","id":1,"room":"echo-5","ts":1}"#, 3),
            Some(true)
        );
        assert_eq!(w.reply(br#"{"type":"message","room":"echo-5"}"#, 3), None);
        assert_eq!(
            w.reply(br#"{"type":"error","id":1,"code":"not_in_room"}"#, 3),
            Some(false)
        );
        assert_eq!(Wire::Plain.reply(b"eee", 3), Some(true));
        assert_eq!(Wire::Plain.reply(b"ee", 3), Some(false));
        assert!(!is_type(br#"{"type":"acknowledged"}"#, "ack"));
    }
}
