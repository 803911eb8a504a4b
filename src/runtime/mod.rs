//! The runtime: per-core mio event loops that drive the protocol core over
//! TCP sockets.
//!
//! - [`Server`] binds one SO_REUSEPORT listener per worker and starts one
//!   thread per worker; [`ServerHandle`] reaches it from any thread.
//! - A [`Handler`] (one instance per worker) gets the callbacks; [`Conn`] is
//!   its view of a connection.
//! - [`Config`] holds every limit and timeout.
//!
//! Inside a worker: connections live in a slab; reads go into one receive
//! buffer per worker and messages are handed out from it without a copy;
//! writes are batched per loop turn (one `writev` per connection); timers are
//! a lazy wheel; a connection holds heap memory only while it has a partial
//! message or unsent bytes.

mod compression;
mod config;
mod conn;
mod connection;
mod error;
mod handle;
mod handler;
mod inflation;
mod ip_limit;
mod listener;
mod memory;
mod outbox;
mod server;
mod signals;
pub mod stats;
mod timer;
pub mod tls;
mod transport;
mod worker;

pub use config::{AppStatus, Compression, Config, SlowConsumerPolicy};
pub use conn::{Conn, SendStatus};
pub use error::Error;
pub use handle::{ConnectionInfo, ServerHandle};
pub use handler::{Accept, CloseInfo, ConnId, Handler, HttpResponse, Reject, Request};
pub use server::{Running, Server};
pub use signals::shutdown_on_signals;

/// Bytes of a worker's slab slot for a connection whose handler data is `D`
/// (the socket, decoder, timers and `D` inline), for memory budgets.
pub fn connection_bytes<D>() -> usize {
    std::mem::size_of::<connection::Connection<D>>()
}
