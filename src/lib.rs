//! # edgews
//!
//! A WebSocket engine (RFC 6455) on raw `mio`, built for dense edge servers:
//! one event loop per core, no locks on the message path, idle connections
//! that hold no buffers, and broadcasts framed once.
//!
//! - [`protocol`]: the sans-IO core — frame codec, masking, UTF-8
//!   validation, message assembly, close handshake, HTTP upgrade — usable on
//!   its own (bytes in, events out) for tests, fuzzing and other runtimes.
//! - [`runtime`]: the per-core mio workers that drive it over TCP, and the
//!   embedding API ([`runtime::Handler`], [`runtime::Conn`], [`runtime::Server`]).
//! - [`pubsub`]: rooms and publish/subscribe across all workers.
//! - [`http`]: the built-in health, metrics and status endpoints.
//! - [`server`]: ready-made handlers (the echo server).
//! - [`client`]: the client role on a mio loop of the caller's
//!   ([`client::Connection`]), or sans-IO ([`client::Session`]).
//!
//! ## Embedding
//!
//! ```no_run
//! use edgews::protocol::Message;
//! use edgews::runtime::{Accept, Config, Conn, Handler, Reject, Request, Server};
//!
//! struct Chat;
//! impl Handler for Chat {
//!     type Data = ();
//!     fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<()>, Reject> {
//!         match req.path() {
//!             "/chat" => Ok(Accept::new(())),
//!             _ => Err(Reject::not_found()),
//!         }
//!     }
//!     fn on_open(&mut self, conn: &mut Conn<'_, ()>) {
//!         conn.subscribe("lobby");
//!     }
//!     fn on_message(&mut self, conn: &mut Conn<'_, ()>, msg: Message<'_>) {
//!         conn.publish("lobby", msg); // framed once, to every member on every core
//!     }
//! }
//!
//! let server = Server::bind(Config::default(), |_worker| Chat)?;
//! edgews::runtime::shutdown_on_signals(server.handle())?;
//! server.run()?;
//! # Ok::<(), edgews::runtime::Error>(())
//! ```
//!
//! What it does not do: HTTP/2 or HTTP/3 WebSockets, TLS on the client side,
//! blocking or async (`Future`) APIs — callbacks run on the event loop and
//! must not block.
#![deny(unsafe_op_in_unsafe_fn)]
// Network input never reaches an unwrap: library code uses `?` or `expect`
// with the invariant that makes it safe. (Tests may unwrap.)
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod client;
pub mod http;
pub mod protocol;
pub mod pubsub;
pub mod rooms;
pub mod runtime;
pub mod server;
