//! Every limit and timeout of the engine, in one struct with a builder.
//!
//! Limits carry their unit in their name. Defaults are documented on each
//! field and chosen for a public-facing server.

use std::net::SocketAddr;
use std::time::Duration;

use super::error::Error;
use crate::protocol::deflate::{CompressorPreset, DecompressorPreset};

/// What to do with a connection whose send queue is over
/// [`Config::backpressure_bytes`] when a room message is published to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowConsumerPolicy {
    /// Skip the message for that connection and count the drop (default).
    #[default]
    Drop,
    /// Close the connection with 1008 ("slow consumer").
    Close,
}

/// permessage-deflate (RFC 7692), as offered to clients that ask for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Never negotiate compression (default).
    #[default]
    Off,
    /// No context takeover in either direction: one compressor per worker,
    /// almost no memory per connection, and a broadcast is compressed once.
    Shared,
    /// Context takeover: a compressor and decompressor per connection (each
    /// made on first use), sized by presets to bound their memory. README's
    /// density table gives each preset's resident memory and ratio.
    Dedicated {
        /// Window and hash size of each connection's compressor.
        compressor: CompressorPreset,
        /// Window of each connection's inflater (clients that offer
        /// `client_max_window_bits` are asked to stay within it).
        decompressor: DecompressorPreset,
    },
}

impl Compression {
    /// Dedicated mode with the largest presets (32 KiB windows, memLevel 8):
    /// the best ratio, ~256 KiB of zlib buffers per sending connection.
    pub const DEDICATED: Compression = Compression::Dedicated {
        compressor: CompressorPreset::SIZE_256KB,
        decompressor: DecompressorPreset::SIZE_32KB,
    };

    /// Dedicated mode with windows of `2^window_bits` bytes both ways and
    /// zlib's default memLevel 8 (the `--compression-window-bits` option).
    pub const fn dedicated_window_bits(window_bits: u8) -> Compression {
        Compression::Dedicated {
            compressor: CompressorPreset::new(window_bits, 8),
            decompressor: DecompressorPreset::new(window_bits),
        }
    }
}

/// Engine configuration.
///
/// ```
/// use std::time::Duration;
/// use edgews::runtime::Config;
/// let cfg = Config::default()
///     .listen("127.0.0.1:0".parse().unwrap())
///     .workers(2)
///     .max_message_bytes(1 << 20)
///     .idle_timeout(Some(Duration::from_secs(60)));
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Address every worker listens on (SO_REUSEPORT). Default `127.0.0.1:9001`.
    pub listen: SocketAddr,
    /// Event-loop threads, each with its own listener and connections.
    /// Default: the number of CPUs.
    pub workers: usize,
    /// Largest data message after reassembly (and after inflation). Larger ones
    /// are refused with close code 1009. Default 16 MiB.
    pub max_message_bytes: usize,
    /// Largest HTTP request head. Larger ones get 431. Default 8 KiB.
    pub max_header_bytes: usize,
    /// Soft limit on a connection's unsent bytes. Above it the connection's
    /// input is paused until the peer reads (so echo-style traffic is
    /// flow-controlled by TCP), and room messages follow
    /// [`Config::slow_consumer`]. Default 1 MiB.
    pub backpressure_bytes: usize,
    /// Hard limit on a connection's unsent bytes: a send that finds the queue
    /// already over it closes the connection with 1008. Default 64 MiB.
    pub max_queued_bytes: usize,
    /// What a publish does to a member over `backpressure_bytes`.
    pub slow_consumer: SlowConsumerPolicy,
    /// Most open connections for the whole server; more are answered with 503.
    /// Default 1,000,000.
    pub max_connections: usize,
    /// Time allowed from accept to a complete upgrade request. Default 10 s.
    pub handshake_timeout: Duration,
    /// Close a connection (1001) when nothing was received for this long.
    /// `None` disables it. Default 120 s.
    pub idle_timeout: Option<Duration>,
    /// Send a ping when nothing was received for this long, so a live peer's
    /// pong keeps it from the idle timeout. Must be shorter than
    /// `idle_timeout`. Default off.
    pub ping_interval: Option<Duration>,
    /// Time allowed for the peer to finish the close handshake, or to read a
    /// final HTTP response, before the socket is dropped. Default 5 s.
    pub close_timeout: Duration,
    /// On shutdown, how long to wait for connections to close before exiting. Default 10 s.
    pub shutdown_timeout: Duration,
    /// Most bytes of buffered input one worker holds for all its connections
    /// together: partial messages, inflated output in progress, request heads
    /// split over reads. A connection whose input would push its worker past
    /// it is closed with 1013 (try again later) and counted; the others are
    /// not affected. `None` (default): a quarter of the machine's memory
    /// divided among the workers, at least 64 MiB and at least twice
    /// `max_message_bytes` (see [`Config::buffered_input_budget`]).
    pub max_buffered_input_bytes: Option<usize>,
    /// Size of each worker's receive buffer, shared by all its connections.
    /// Default 512 KiB: a message of up to about that size that is all in
    /// the socket when it is read arrives in one read and is handed to the
    /// handler where it lies, without being copied into a message buffer
    /// (the rest of a larger frame is read straight into its message buffer).
    pub receive_buffer_bytes: usize,
    /// permessage-deflate mode. Default off.
    pub compression: Compression,
    /// Messages shorter than this are sent uncompressed even on a compressed
    /// connection. Default 256 bytes: below that, JSON-like messages shrink
    /// by ~10% while a no-context-takeover compression costs ~2.8 µs
    /// (mostly resetting the compressor; `cargo bench --bench deflate`).
    pub compression_threshold_bytes: usize,
    /// TLS: when set, every connection is wss (rustls inside the event loop).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Serve `/healthz`, `/metrics` and `/status` on this separate address
    /// only (a small blocking thread), instead of on the WebSocket port.
    pub admin_listen: Option<SocketAddr>,
    /// Most open connections from one client IP address, over all workers
    /// (0: no limit, the default). A direct peer over it is disconnected at
    /// accept, before anything is allocated for it; a client behind a
    /// [trusted proxy](Config::trusted_proxies) is refused with 429 at the
    /// upgrade.
    pub max_connections_per_ip: usize,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is
    /// believed: connections from them are counted against the forwarded
    /// client's address, not the proxy's, and [`super::Request::client_ip`]
    /// reports the client. Empty by default: the header is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The application's own health, metrics and status, added to the
    /// built-in endpoints.
    pub app_status: Option<std::sync::Arc<dyn AppStatus>>,
}

/// What an application adds to the built-in `/healthz`, `/metrics` and
/// `/status` endpoints (set it in [`Config::app_status`]). Called from
/// whichever thread serves the request: keep it quick and lock-light.
///
/// ```
/// use edgews::runtime::AppStatus;
/// #[derive(Debug)]
/// struct Chat;
/// impl AppStatus for Chat {
///     fn metrics(&self, out: &mut String) {
///         out.push_str("# TYPE chat_rooms gauge\nchat_rooms 3\n");
///     }
/// }
/// ```
pub trait AppStatus: Send + Sync + std::fmt::Debug + 'static {
    /// `Err(reason)` makes `/healthz` answer 503 with the reason.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// Appends Prometheus text-format metrics to `/metrics`.
    fn metrics(&self, out: &mut String) {
        let _ = out;
    }

    /// A JSON value added to `/status` under `"app"`.
    fn status(&self) -> Option<serde_json::Value> {
        None
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9001)),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_message_bytes: 16 << 20,
            max_header_bytes: 8 << 10,
            backpressure_bytes: 1 << 20,
            max_queued_bytes: 64 << 20,
            slow_consumer: SlowConsumerPolicy::Drop,
            max_connections: 1_000_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(120)),
            ping_interval: None,
            close_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            max_buffered_input_bytes: None,
            receive_buffer_bytes: 512 << 10,
            compression: Compression::Off,
            compression_threshold_bytes: 256,
            tls: None,
            admin_listen: None,
            max_connections_per_ip: 0,
            trusted_proxies: Vec::new(),
            app_status: None,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }
        )*
    };
}

impl Config {
    setters! {
        /// Sets [`Config::listen`].
        listen: SocketAddr,
        /// Sets [`Config::workers`].
        workers: usize,
        /// Sets [`Config::max_message_bytes`].
        max_message_bytes: usize,
        /// Sets [`Config::max_header_bytes`].
        max_header_bytes: usize,
        /// Sets [`Config::backpressure_bytes`].
        backpressure_bytes: usize,
        /// Sets [`Config::max_queued_bytes`].
        max_queued_bytes: usize,
        /// Sets [`Config::slow_consumer`].
        slow_consumer: SlowConsumerPolicy,
        /// Sets [`Config::max_connections`].
        max_connections: usize,
        /// Sets [`Config::handshake_timeout`].
        handshake_timeout: Duration,
        /// Sets [`Config::idle_timeout`].
        idle_timeout: Option<Duration>,
        /// Sets [`Config::ping_interval`].
        ping_interval: Option<Duration>,
        /// Sets [`Config::close_timeout`].
        close_timeout: Duration,
        /// Sets [`Config::shutdown_timeout`].
        shutdown_timeout: Duration,
        /// Sets [`Config::max_buffered_input_bytes`].
        max_buffered_input_bytes: Option<usize>,
        /// Sets [`Config::receive_buffer_bytes`].
        receive_buffer_bytes: usize,
        /// Sets [`Config::compression`].
        compression: Compression,
        /// Sets [`Config::compression_threshold_bytes`].
        compression_threshold_bytes: usize,
        /// Sets [`Config::tls`].
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        /// Sets [`Config::admin_listen`].
        admin_listen: Option<SocketAddr>,
        /// Sets [`Config::max_connections_per_ip`].
        max_connections_per_ip: usize,
        /// Sets [`Config::trusted_proxies`].
        trusted_proxies: Vec<ipnet::IpNet>,
        /// Sets [`Config::app_status`].
        app_status: Option<std::sync::Arc<dyn AppStatus>>,
    }

    /// The buffered-input budget of each worker, in bytes:
    /// [`Config::max_buffered_input_bytes`] or the default derived from the
    /// machine's memory.
    pub fn buffered_input_budget(&self) -> usize {
        if let Some(b) = self.max_buffered_input_bytes {
            return b;
        }
        let memory = super::memory::physical_memory_bytes().unwrap_or(4 << 30);
        let share = usize::try_from(memory / 4 / self.workers.max(1) as u64).unwrap_or(usize::MAX);
        share
            .max(64 << 20)
            .max(self.max_message_bytes.saturating_mul(2))
    }

    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::config(what));
        if self.workers == 0 || self.workers > 256 {
            return bad(format!("workers must be 1 to 256, not {}", self.workers));
        }
        if self.max_message_bytes == 0 {
            return bad("max_message_bytes must be at least 1".into());
        }
        if self.max_header_bytes < 256 {
            return bad(format!(
                "max_header_bytes must be at least 256, not {}",
                self.max_header_bytes
            ));
        }
        if self.backpressure_bytes == 0 || self.max_queued_bytes < self.backpressure_bytes {
            return bad(format!(
                "need 0 < backpressure_bytes ({}) <= max_queued_bytes ({})",
                self.backpressure_bytes, self.max_queued_bytes
            ));
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1".into());
        }
        if let (Some(ping), Some(idle)) = (self.ping_interval, self.idle_timeout) {
            if ping >= idle {
                return bad(format!(
                    "ping_interval ({ping:?}) must be shorter than idle_timeout ({idle:?})"
                ));
            }
        }
        let ms = |d: Duration| d.as_millis();
        let longest = [
            Some(self.handshake_timeout),
            self.idle_timeout,
            self.ping_interval,
        ]
        .into_iter()
        .flatten()
        .chain([self.close_timeout])
        .map(ms)
        .max()
        .unwrap_or(0);
        if longest > u128::from(u32::MAX / 2) {
            return bad("timeouts must be shorter than 24 days".into());
        }
        if let Compression::Dedicated {
            compressor,
            decompressor,
        } = self.compression
        {
            if !compressor.is_valid() {
                return bad(format!(
                    "compression compressor window_bits must be 9 to 15 and mem_level 1 to 9, not {} and {}",
                    compressor.window_bits, compressor.mem_level
                ));
            }
            if !decompressor.is_valid() {
                return bad(format!(
                    "compression decompressor window_bits must be 9 to 15, not {}",
                    decompressor.window_bits
                ));
            }
        }
        if let Some(b) = self.max_buffered_input_bytes {
            if b < self.max_message_bytes {
                return bad(format!(
                    "max_buffered_input_bytes ({b}) must be at least max_message_bytes ({})",
                    self.max_message_bytes
                ));
            }
        }
        if self.receive_buffer_bytes < 4096 {
            return bad("receive_buffer_bytes must be at least 4096".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn rejects_inconsistent_values() {
        let c = Config::default().workers(0);
        assert!(c.validate().unwrap_err().to_string().contains("workers"));
        let c = Config::default().backpressure_bytes(10).max_queued_bytes(5);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("backpressure_bytes"));
        let c = Config::default()
            .ping_interval(Some(Duration::from_secs(60)))
            .idle_timeout(Some(Duration::from_secs(30)));
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ping_interval"));
        let c = Config::default().idle_timeout(Some(Duration::from_secs(40 * 86400)));
        assert!(c.validate().is_err());
        let c = Config::default()
            .max_message_bytes(1 << 20)
            .max_buffered_input_bytes(Some(1 << 19));
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_buffered_input_bytes"));
    }

    #[test]
    fn input_budget_defaults_to_a_share_of_memory() {
        let c = Config::default().workers(2).max_message_bytes(16 << 20);
        let b = c.buffered_input_budget();
        assert!(b >= 64 << 20, "{b}");
        if let Some(mem) = super::super::memory::physical_memory_bytes() {
            assert!(b as u64 <= (mem / 8).max(64 << 20), "{b} of {mem}");
        }
        // Never less than two messages at the limit.
        let big = Config::default().workers(2).max_message_bytes(1 << 30);
        assert!(big.buffered_input_budget() >= 2 << 30);
        let c = c.max_buffered_input_bytes(Some(20 << 20));
        assert_eq!(c.buffered_input_budget(), 20 << 20);
    }

    #[test]
    fn dedicated_presets_are_validated() {
        let c = Config::default().compression(Compression::dedicated_window_bits(8));
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("window_bits"));
        let c = Config::default().compression(Compression::Dedicated {
            compressor: CompressorPreset::new(9, 0),
            decompressor: DecompressorPreset::SIZE_512B,
        });
        assert!(c.validate().unwrap_err().to_string().contains("mem_level"));
        let c = Config::default().compression(Compression::Dedicated {
            compressor: CompressorPreset::SIZE_3KB,
            decompressor: DecompressorPreset::new(16),
        });
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("decompressor"));
        for (_, compressor) in CompressorPreset::ALL {
            for (_, decompressor) in DecompressorPreset::ALL {
                let mode = Compression::Dedicated {
                    compressor,
                    decompressor,
                };
                Config::default().compression(mode).validate().unwrap();
            }
        }
    }
}
