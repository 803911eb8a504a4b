//! Shared bits of the peer servers: command-line parsing, runtime construction,
//! the pub/sub text protocol and the room registry.
//!
//! Protocol (text messages only; binary messages are always echoed):
//! * `sub:<room>`             subscribe this connection to `<room>`
//! * `unsub:<room>`           unsubscribe
//! * `pub:<room>:<payload>`   send `<payload>` as a text message to every member of
//!   `<room>` (including the sender if it is subscribed)
//! * anything else            echoed back unchanged

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::UnboundedSender;

/// Command-line options shared by all peers.
#[derive(Debug, Clone)]
pub struct Args {
    /// Address to listen on (`--listen 127.0.0.1:PORT`).
    pub listen: SocketAddr,
    /// Runtime worker threads (`--threads N`); 1 = current-thread runtime.
    pub threads: usize,
}

/// Parses `--listen ADDR` (default 127.0.0.1:9001) and `--threads N` (default 1).
pub fn parse_args(name: &str) -> Args {
    let mut listen: SocketAddr = "127.0.0.1:9001".parse().expect("default addr");
    let mut threads = 1usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = |k: &str| -> String {
            inline
                .clone()
                .or_else(|| it.next())
                .unwrap_or_else(|| usage(name, &format!("missing value for {k}")))
        };
        match key.as_str() {
            "--listen" | "-l" => {
                let v = value("--listen");
                listen = v
                    .parse()
                    .unwrap_or_else(|e| usage(name, &format!("bad --listen {v}: {e}")));
            }
            "--threads" | "-t" => {
                let v = value("--threads");
                threads = match v.parse() {
                    Ok(n) if n >= 1 => n,
                    _ => usage(name, &format!("bad --threads {v}")),
                };
            }
            "--help" | "-h" => {
                println!("usage: {name} [--listen 127.0.0.1:PORT] [--threads N]");
                std::process::exit(0);
            }
            other => usage(name, &format!("unknown argument {other}")),
        }
    }
    Args { listen, threads }
}

fn usage(name: &str, msg: &str) -> ! {
    eprintln!("{name}: {msg}\nusage: {name} [--listen 127.0.0.1:PORT] [--threads N]");
    std::process::exit(2)
}

/// A current-thread runtime for `threads == 1` (so `taskset -c 0` pins the whole
/// server to one core), a multi-thread runtime with `threads` workers otherwise.
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    let mut b = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_io()
        .enable_time()
        .build()
        .expect("build tokio runtime")
}

/// A parsed protocol command. Offsets index into the original message bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Cmd<'a> {
    /// `sub:<room>`
    Sub(&'a str),
    /// `unsub:<room>`
    Unsub(&'a str),
    /// `pub:<room>:<payload>`; `payload_at` is the byte offset of the payload.
    Pub { room: &'a str, payload_at: usize },
    /// Anything else: echo.
    Echo,
}

/// Parses a *text* message. `pub:<room>` without a second ':' is echoed.
#[inline]
pub fn parse_cmd(text: &str) -> Cmd<'_> {
    let b = text.as_bytes();
    if b.len() >= 4 {
        if let Some(rest) = text.strip_prefix("pub:") {
            if let Some(i) = rest.find(':') {
                return Cmd::Pub {
                    room: &rest[..i],
                    payload_at: 4 + i + 1,
                };
            }
            return Cmd::Echo;
        }
        if let Some(room) = text.strip_prefix("sub:") {
            return Cmd::Sub(room);
        }
        if let Some(room) = text.strip_prefix("unsub:") {
            return Cmd::Unsub(room);
        }
    }
    Cmd::Echo
}

type Members<T> = HashMap<u64, UnboundedSender<T>>;

/// Room registry: room name -> (connection id -> that connection's outbound queue).
#[derive(Debug)]
pub struct Rooms<T> {
    map: Mutex<HashMap<Box<str>, Members<T>>>,
    next_id: AtomicU64,
}

impl<T: Clone> Default for Rooms<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }
}

impl<T: Clone> Rooms<T> {
    /// Sends `msg` to every member of `room`; returns the number of members reached.
    pub fn publish(&self, room: &str, msg: T) -> usize {
        let map = self.map.lock().expect("rooms lock");
        let Some(members) = map.get(room) else {
            return 0;
        };
        let mut n = 0;
        for tx in members.values() {
            if tx.send(msg.clone()).is_ok() {
                n += 1;
            }
        }
        n
    }
}

/// One connection's view of the registry; leaves all its rooms on drop.
#[derive(Debug)]
pub struct Member<T: Clone> {
    rooms: Arc<Rooms<T>>,
    id: u64,
    tx: UnboundedSender<T>,
    joined: HashSet<Box<str>>,
}

impl<T: Clone> Member<T> {
    /// Registers a connection whose outbound queue is `tx`.
    pub fn new(rooms: Arc<Rooms<T>>, tx: UnboundedSender<T>) -> Self {
        let id = rooms.next_id.fetch_add(1, Ordering::Relaxed);
        Self {
            rooms,
            id,
            tx,
            joined: HashSet::new(),
        }
    }

    /// `sub:<room>`
    pub fn subscribe(&mut self, room: &str) {
        if self.joined.contains(room) {
            return;
        }
        let room: Box<str> = room.into();
        self.rooms
            .map
            .lock()
            .expect("rooms lock")
            .entry(room.clone())
            .or_default()
            .insert(self.id, self.tx.clone());
        self.joined.insert(room);
    }

    /// `unsub:<room>`
    pub fn unsubscribe(&mut self, room: &str) {
        if self.joined.remove(room) {
            let mut map = self.rooms.map.lock().expect("rooms lock");
            leave(&mut map, room, self.id);
        }
    }

    /// `pub:<room>:<payload>`
    pub fn publish(&self, room: &str, msg: T) -> usize {
        self.rooms.publish(room, msg)
    }
}

fn leave<T>(map: &mut HashMap<Box<str>, Members<T>>, room: &str, id: u64) {
    if let Some(members) = map.get_mut(room) {
        members.remove(&id);
        if members.is_empty() {
            map.remove(room);
        }
    }
}

impl<T: Clone> Drop for Member<T> {
    fn drop(&mut self) {
        if self.joined.is_empty() {
            return;
        }
        if let Ok(mut map) = self.rooms.map.lock() {
            for room in self.joined.drain() {
                leave(&mut map, &room, self.id);
            }
        }
    }
}

/// Binds the listener with a reasonably large backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!(parse_cmd("sub:a"), Cmd::Sub("a"));
        assert_eq!(parse_cmd("unsub:a"), Cmd::Unsub("a"));
        assert_eq!(
            parse_cmd("pub:a:x:y"),
            Cmd::Pub {
                room: "a",
                payload_at: 6
            }
        );
        assert_eq!(&"pub:a:x:y"[6..], "x:y");
        assert_eq!(parse_cmd("pub:a"), Cmd::Echo);
        assert_eq!(parse_cmd("pub:"), Cmd::Echo);
        assert_eq!(parse_cmd("hello"), Cmd::Echo);
        assert_eq!(parse_cmd(""), Cmd::Echo);
        assert_eq!(
            parse_cmd("pub::"),
            Cmd::Pub {
                room: "",
                payload_at: 5
            }
        );
    }
}
