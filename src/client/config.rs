//! What a client connection accepts and offers.

use std::time::Duration;

use crate::protocol::deflate::DeflateOffer;

/// Limits, timeouts and the permessage-deflate offer of a client connection.
///
/// ```
/// use edgews::client::Config;
/// use edgews::protocol::deflate::DeflateOffer;
/// let cfg = Config::default()
///     .max_message_bytes(1 << 20)
///     .deflate(Some(DeflateOffer::default()));
/// assert_eq!(cfg.max_message_bytes, 1 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest message accepted from the server, after reassembly and after
    /// inflation, in bytes; a larger one fails the connection with 1009.
    /// Default 16 MiB.
    pub max_message_bytes: usize,
    /// Largest handshake response head (status line and headers), in bytes.
    /// Default 8 KiB.
    pub max_header_bytes: usize,
    /// Most bytes queued for the socket; [`super::Sender::send`] refuses a
    /// message that would go past it. Default 64 MiB.
    pub max_queue_bytes: usize,
    /// From the connect to the server's 101. Default 10 s.
    pub handshake_timeout: Duration,
    /// From the first close frame (sent or received) to the server closing
    /// TCP; past it we close it. Default 5 s.
    pub close_timeout: Duration,
    /// The permessage-deflate offer, or `None` (the default) for none.
    pub deflate: Option<DeflateOffer>,
    /// Messages shorter than this go uncompressed even when deflate was
    /// agreed (zlib rarely shrinks them). Default 256 bytes.
    pub compression_threshold_bytes: usize,
    /// Extra request headers (name, value), e.g. `Origin` or an auth token.
    pub headers: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_bytes: 16 << 20,
            max_header_bytes: 8 << 10,
            max_queue_bytes: 64 << 20,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            deflate: None,
            compression_threshold_bytes: 256,
            headers: Vec::new(),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        impl Config {
            $(
                $(#[$doc])*
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$name = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`Config::max_message_bytes`].
    max_message_bytes: usize,
    /// Sets [`Config::max_header_bytes`].
    max_header_bytes: usize,
    /// Sets [`Config::max_queue_bytes`].
    max_queue_bytes: usize,
    /// Sets [`Config::handshake_timeout`].
    handshake_timeout: Duration,
    /// Sets [`Config::close_timeout`].
    close_timeout: Duration,
    /// Sets [`Config::deflate`].
    deflate: Option<DeflateOffer>,
    /// Sets [`Config::compression_threshold_bytes`].
    compression_threshold_bytes: usize,
}

impl Config {
    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}
