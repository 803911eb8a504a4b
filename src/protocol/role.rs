//! The two roles of a WebSocket endpoint. Server and client differ only in
//! which direction masks (RFC 6455 §5.1) and in which side of the opening
//! handshake they speak; the codec is shared and parameterised by the role.

/// A side of the connection. Sealed: [`Server`] and [`Client`] are the only roles.
pub trait Role: sealed::Sealed + Copy + Default + Send + Sync + 'static {
    /// True for the server: it expects masked frames and sends unmasked ones.
    const IS_SERVER: bool;
}

/// The server role: receives masked frames, sends unmasked frames.
#[derive(Clone, Copy, Debug, Default)]
pub struct Server;

/// The client role: receives unmasked frames, sends masked frames.
#[derive(Clone, Copy, Debug, Default)]
pub struct Client;

impl Role for Server {
    const IS_SERVER: bool = true;
}

impl Role for Client {
    const IS_SERVER: bool = false;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Server {}
    impl Sealed for super::Client {}
}
