//! The echo server, with the optional text pub-sub protocol.

use edgews::protocol::Message;
use edgews::runtime::{Accept, Conn, Handler, Reject, Request};

/// Echoes every message; with `pubsub`, also understands `sub:`, `unsub:`
/// and `pub:<room>:<payload>` text messages.
pub struct EchoHandler {
    pubsub: bool,
}

impl EchoHandler {
    pub fn new(pubsub: bool) -> Self {
        EchoHandler { pubsub }
    }

    /// Handles a pub-sub command; false when `text` is not one.
    fn command(conn: &mut Conn<'_, ()>, text: &str) -> bool {
        if let Some(room) = text.strip_prefix("sub:") {
            conn.subscribe(room);
        } else if let Some(room) = text.strip_prefix("unsub:") {
            conn.unsubscribe(room);
        } else if let Some((room, payload)) =
            text.strip_prefix("pub:").and_then(|r| r.split_once(':'))
        {
            conn.publish(room, Message::Text(payload));
        } else {
            return false;
        }
        true
    }
}

impl Handler for EchoHandler {
    type Data = ();

    fn on_upgrade(&mut self, _req: &Request<'_>) -> Result<Accept<()>, Reject> {
        Ok(Accept::new(()))
    }

    fn on_message(&mut self, conn: &mut Conn<'_, ()>, msg: Message<'_>) {
        if self.pubsub {
            if let Message::Text(text) = msg {
                if Self::command(conn, text) {
                    return;
                }
            }
        }
        conn.send(msg);
    }
}
