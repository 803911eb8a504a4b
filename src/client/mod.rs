//! The client role over mio: connect, send and receive on the caller's own
//! event loop.
//!
//! - [`Session`]: the client side of a connection as a sans-IO state machine
//!   (upgrade request, 101 check, frames through the protocol core's client
//!   role, automatic pongs and close replies, permessage-deflate).
//! - [`Connection`]: a `Session` over a non-blocking `mio::net::TcpStream`,
//!   driven by readiness events of a `mio::Poll` the caller owns, so
//!   client connections can share a loop with anything else.
//! - [`Config`]: limits, timeouts, the permessage-deflate offer.
//!
//! Conformance: the Autobahn testsuite's client cases, all 517 with
//! permessage-deflate (`autobahn/run-client.sh`, driven by
//! `examples/autobahn_client.rs`).
//!
//! What it does not do: TLS (`wss://`), URL parsing or DNS (give it a
//! socket address and the `Host` value), redirects, fragmenting outgoing
//! messages.
//!
//! ```no_run
//! use std::time::Instant;
//! use edgews::client::{Config, Connection, Event, State};
//! use edgews::protocol::Message;
//! use mio::{Events, Poll, Token};
//!
//! let mut poll = Poll::new()?;
//! let addr = "127.0.0.1:9001".parse().unwrap();
//! let mut conn = Connection::connect(addr, "127.0.0.1:9001", "/", &Config::default())?;
//! conn.register(poll.registry(), Token(0))?;
//! let mut events = Events::with_capacity(16);
//! loop {
//!     let timeout = conn.deadline().map(|d| d.saturating_duration_since(Instant::now()));
//!     poll.poll(&mut events, timeout)?;
//!     let state = conn.ready(|event, sender| match event {
//!         Event::Open => sender.send(Message::Text("hello")).unwrap(),
//!         Event::Message(m) => {
//!             println!("got {} bytes", m.len());
//!             sender.close(edgews::protocol::CloseCode::NORMAL, "done").unwrap();
//!         }
//!         _ => {}
//!     });
//!     if state == State::Closed {
//!         break;
//!     }
//! }
//! if let Some(e) = conn.error() {
//!     eprintln!("failed: {e}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod connection;
mod error;
mod session;

pub use config::Config;
pub use connection::Connection;
pub use error::Error;
pub use session::{Event, Sender, Session, State};
