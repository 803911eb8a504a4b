//! Servers built on the engine: ready-made handlers.
//!
//! - [`EchoHandler`]: echo, with an optional text pub-sub protocol (the
//!   server Autobahn and the load generator run against).

mod echo;

pub use echo::EchoHandler;
