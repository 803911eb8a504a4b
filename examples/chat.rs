//! A minimal chat server on the edgews engine: every connection joins the
//! room named by its path (`ws://127.0.0.1:9002/lobby`), text messages go to
//! the whole room, `/nick NAME` renames you, and the room hears who comes and
//! goes. A thread outside the event loops announces the time every 10 s.
//!
//! ```sh
//! cargo run --release --example chat
//! # then, in two other terminals, any WebSocket client, e.g.
//! python3 -m websockets ws://127.0.0.1:9002/lobby
//! ```

use std::time::Duration;

use edgews::protocol::Message;
use edgews::runtime::{
    shutdown_on_signals, Accept, CloseInfo, Config, Conn, Handler, Reject, Request, Server,
};

/// Per-connection state: the room and a nickname.
struct Member {
    room: String,
    nick: String,
}

struct Chat;

impl Handler for Chat {
    type Data = Member;

    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<Member>, Reject> {
        let room = req.path().trim_start_matches('/');
        if room.is_empty() || room.len() > 64 {
            return Err(Reject::bad_request("connect to /<room>"));
        }
        let nick = req.peer_addr().map_or("someone".into(), |a| a.to_string());
        Ok(Accept::new(Member {
            room: room.to_owned(),
            nick,
        }))
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Member>) {
        let room = conn.data().room.clone();
        conn.subscribe(&room);
        let hello = format!("* {} joined {room}", conn.data().nick);
        conn.publish(&room, Message::Text(&hello));
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Member>, msg: Message<'_>) {
        let Message::Text(text) = msg else {
            conn.send_text("* text only, please");
            return;
        };
        if let Some(nick) = text.strip_prefix("/nick ") {
            let old = std::mem::replace(&mut conn.data_mut().nick, nick.trim().to_owned());
            let note = format!("* {old} is now {}", conn.data().nick);
            let room = conn.data().room.clone();
            conn.publish(&room, Message::Text(&note));
            return;
        }
        let line = format!("<{}> {text}", conn.data().nick);
        let room = conn.data().room.clone();
        conn.publish(&room, Message::Text(&line));
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Member>, _close: CloseInfo<'_>) {
        // Our own membership is gone already; the others still hear it.
        let bye = format!("* {} left", conn.data().nick);
        let room = conn.data().room.clone();
        conn.publish(&room, Message::Text(&bye));
    }
}

fn main() -> Result<(), edgews::runtime::Error> {
    let config = Config::default()
        .listen("127.0.0.1:9002".parse().expect("a valid address"))
        .ping_interval(Some(Duration::from_secs(30)))
        .idle_timeout(Some(Duration::from_secs(75)));
    let server = Server::bind(config, |_worker| Chat)?;
    println!("chat on ws://{}/<room>", server.local_addr());
    let handle = server.handle();
    shutdown_on_signals(handle.clone())?;
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(10));
        if handle.is_shutting_down() {
            break;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        handle.publish("lobby", Message::Text(&format!("* server time {now}")));
    });
    server.run()
}
