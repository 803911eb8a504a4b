//! The room server's configuration: one typed struct, read from a TOML file,
//! `EDGEWS_*` environment variables and command-line flags (in that order of
//! precedence, later wins), on top of a profile's defaults.
//!
//! Limits carry their unit in their name (`max_message_bytes`,
//! `auth_timeout_secs`). Unknown keys are an error that names the key.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Every setting of `edgews serve`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RoomServerConfig {
    /// Named set of defaults the other keys start from: `standard`,
    /// `high-throughput` or `low-memory`.
    pub profile: Profile,
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Event-loop threads (0: one per CPU).
    pub workers: usize,
    /// Most open connections for the whole server (503 past it).
    pub max_connections: usize,
    /// Most open connections from one client address (0: no limit). Checked
    /// at accept, before anything is allocated for the socket.
    pub max_connections_per_ip: usize,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed
    /// for the per-IP limit and logs.
    pub trusted_proxies: Vec<String>,
    /// Origins allowed to open a WebSocket (exact `scheme://host[:port]`);
    /// empty: any. A request with a mismatching `Origin` gets 403.
    pub allowed_origins: Vec<String>,
    /// Largest client message (1009 past it).
    pub max_message_bytes: usize,
    /// Most rooms one connection may be in (`too_many_rooms` past it).
    pub max_rooms_per_connection: usize,
    /// Most distinct users in one room (0: unlimited; `room_full` past it).
    pub max_members_per_room: usize,
    /// Time a connection opened without a token has to send `auth` (close 4001).
    pub auth_timeout_secs: u64,
    /// Server pings after this much silence (0: never).
    pub ping_interval_secs: u64,
    /// A connection silent this long is closed with 1001 (0: never).
    pub idle_timeout_secs: u64,
    /// Time allowed for the HTTP upgrade request.
    pub handshake_timeout_secs: u64,
    /// On shutdown, how long to wait for connections to close.
    pub shutdown_timeout_secs: u64,
    /// A connection's unsent bytes above which room messages to it are dropped.
    pub backpressure_bytes: usize,
    /// A connection's unsent bytes above which it is closed with 1008.
    pub max_queued_bytes: usize,
    /// Each worker's receive buffer.
    pub receive_buffer_bytes: usize,
    /// permessage-deflate: `off`, `shared` or `dedicated`.
    pub compression: CompressionMode,
    /// Rooms with more distinct users than this send no `user_joined` /
    /// `user_left` events (0: always send them). Each join in a room of N
    /// members is N messages, so a room filling up to N members costs N²/2
    /// of them; in big rooms clients read counts from acks and `who`.
    pub member_events_max_room_size: usize,
    /// Default page size of `who`.
    pub who_default_limit: usize,
    /// Largest page size of `who`.
    pub who_max_limit: usize,
    /// Per-connection message rate limit.
    pub rate_limit: RateLimitConfig,
    /// Token verification.
    pub auth: AuthConfig,
    /// TLS (wss): both files or neither.
    pub tls: Option<TlsConfig>,
}

/// A named set of defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Profile {
    /// Balanced defaults for a public chat server.
    #[default]
    Standard,
    /// Bigger buffers and queues for fewer, busier connections.
    HighThroughput,
    /// Smaller buffers and limits for the most connections per GiB.
    LowMemory,
}

/// permessage-deflate mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CompressionMode {
    /// Never negotiate compression.
    Off,
    /// No context takeover: one compressor per worker (cheap per connection).
    #[default]
    Shared,
    /// A compressor per connection: better ratio, more memory.
    Dedicated,
}

/// Token bucket per connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Sustained client messages per second (0: no limit).
    pub messages_per_sec: u32,
    /// Messages allowed in a burst above the sustained rate.
    pub burst: u32,
    /// Rate-limited messages within `abuse_window_secs` after which the
    /// connection is closed with 4008.
    pub abuse_strikes: u32,
    /// The window `abuse_strikes` are counted in.
    pub abuse_window_secs: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            messages_per_sec: 20,
            burst: 40,
            abuse_strikes: 50,
            abuse_window_secs: 10,
        }
    }
}

/// How tokens are verified. With no key at all the server runs in dev mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// HS256 shared secret.
    pub hs256_secret: Option<String>,
    /// File holding the HS256 secret.
    pub hs256_secret_file: Option<PathBuf>,
    /// PEM file with the RS256 public key.
    pub rs256_public_key_file: Option<PathBuf>,
    /// PEM file with the ES256 public key.
    pub es256_public_key_file: Option<PathBuf>,
    /// Required `iss` claim, if set.
    pub issuer: Option<String>,
    /// Required `aud` claim, if set.
    pub audience: Option<String>,
    /// Clock leeway for `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
    /// Where dev mode keeps its generated HS256 secret.
    pub dev_secret_file: PathBuf,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            hs256_secret: None,
            hs256_secret_file: None,
            rs256_public_key_file: None,
            es256_public_key_file: None,
            issuer: None,
            audience: None,
            leeway_secs: 30,
            dev_secret_file: PathBuf::from(".edgews/dev-secret"),
        }
    }
}

/// Certificate and key for wss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM certificate chain (reloaded on SIGHUP).
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

impl Default for RoomServerConfig {
    fn default() -> Self {
        RoomServerConfig {
            profile: Profile::Standard,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            max_connections: 1_000_000,
            max_connections_per_ip: 1_000,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            max_message_bytes: 64 << 10,
            max_rooms_per_connection: 100,
            max_members_per_room: 0,
            auth_timeout_secs: 5,
            ping_interval_secs: 25,
            idle_timeout_secs: 60,
            handshake_timeout_secs: 10,
            shutdown_timeout_secs: 10,
            backpressure_bytes: 1 << 20,
            max_queued_bytes: 16 << 20,
            receive_buffer_bytes: 256 << 10,
            compression: CompressionMode::Shared,
            member_events_max_room_size: 1000,
            who_default_limit: 100,
            who_max_limit: 1000,
            rate_limit: RateLimitConfig::default(),
            auth: AuthConfig::default(),
            tls: None,
        }
    }
}

impl RoomServerConfig {
    /// The engine configuration these settings make (TLS is added by the caller).
    pub fn engine_config(&self) -> Result<crate::runtime::Config, String> {
        use std::time::Duration;
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let proxies = self
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("trusted_proxies: `{p}` is not an address or CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut cfg = crate::runtime::Config::default()
            .listen(self.listen)
            .max_connections(self.max_connections)
            .max_connections_per_ip(self.max_connections_per_ip)
            .trusted_proxies(proxies)
            .max_message_bytes(self.max_message_bytes)
            .backpressure_bytes(self.backpressure_bytes)
            .max_queued_bytes(self.max_queued_bytes)
            .receive_buffer_bytes(self.receive_buffer_bytes)
            .ping_interval(secs(self.ping_interval_secs))
            .idle_timeout(secs(self.idle_timeout_secs))
            .handshake_timeout(Duration::from_secs(self.handshake_timeout_secs.max(1)))
            .shutdown_timeout(Duration::from_secs(self.shutdown_timeout_secs))
            .compression(match self.compression {
                CompressionMode::Off => crate::runtime::Compression::Off,
                CompressionMode::Shared => crate::runtime::Compression::Shared,
                CompressionMode::Dedicated => {
                    crate::runtime::Compression::Dedicated { window_bits: 15 }
                }
            });
        if self.workers > 0 {
            cfg = cfg.workers(self.workers);
        }
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}
