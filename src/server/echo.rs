//! The echo server (what Autobahn and the benchmarks run against), with an
//! optional text pub-sub protocol any client can drive.

use crate::protocol::Message;
use crate::runtime::{Accept, Conn, Handler, Reject, Request};

/// Echoes every message. With `pubsub`, text messages `sub:<room>` and
/// `unsub:<room>` join and leave a room, and `pub:<room>:<payload>` sends
/// `<payload>` as text to every member of `<room>` (the sender included if it
/// is a member); everything else is echoed.
///
/// ```no_run
/// use edgews::runtime::{Config, Server};
/// use edgews::server::EchoHandler;
/// Server::bind(Config::default(), |_| EchoHandler::new(true))?.run()?;
/// # Ok::<(), edgews::runtime::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EchoHandler {
    pubsub: bool,
}

impl EchoHandler {
    /// An echo handler, with the pub-sub commands when `pubsub` is true.
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
