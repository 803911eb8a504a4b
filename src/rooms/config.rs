//! The room server's configuration: one typed struct, read from a TOML file,
//! `EDGEWS_*` environment variables and command-line flags (in that order of
//! precedence, later wins), on top of a profile's defaults.
//!
//! Limits carry their unit in their name (`max_message_bytes`,
//! `auth_timeout_secs`). Unknown keys are an error that names the key.
//!
//! # Layers
//!
//! [`RoomServerConfig::load`] builds the effective configuration:
//!
//! 1. the defaults of the [`Profile`] chosen by the highest layer that sets
//!    `profile` (default `standard`);
//! 2. the TOML file (`edgews serve --config edgews.toml`);
//! 3. the environment: `EDGEWS_` followed by the key in capitals, with `__`
//!    between a section and its key: `EDGEWS_MAX_MESSAGE_BYTES=131072`,
//!    `EDGEWS_AUTH__HS256_SECRET_FILE=/run/secrets/jwt`,
//!    `EDGEWS_RATE_LIMIT__BURST=80`. Lists are comma-separated
//!    (`EDGEWS_ALLOWED_ORIGINS=https://a.example,https://b.example`) or a TOML
//!    array. Variables in [`NON_CONFIG_ENV`] (`EDGEWS_LOG`, the log level)
//!    are not config; an `EDGEWS_*` variable that is not a key but looks
//!    like one (`EDGEWS_MAX_MESAGE_BYTES`) is an error naming it;
//! 4. flags: `--listen`, `--workers`, `--profile` and `--set key=value`
//!    (dotted keys for sections: `--set rate_limit.burst=80`), values
//!    written as in the environment.
//!
//! Then [`RoomServerConfig::validate`] checks the result; every error names
//! the key (and the file or variable it came from). [`RoomServerConfig::to_toml`]
//! prints the effective configuration (`edgews serve --print-config`); loading
//! that text as the file gives the same configuration back.
//!
//! # Profiles
//!
//! A profile only supplies defaults; every key it sets can still be set by a
//! layer above it. Relative to `standard` (the defaults documented on each
//! field):
//!
//! | key | `standard` | `high-throughput` | `low-memory` |
//! |---|---:|---:|---:|
//! | `max_message_bytes` | 64 KiB | 1 MiB | 16 KiB |
//! | `receive_buffer_bytes` (per worker) | 256 KiB | 1 MiB | 64 KiB |
//! | `backpressure_bytes` | 1 MiB | 4 MiB | 64 KiB |
//! | `max_queued_bytes` | 16 MiB | 64 MiB | 1 MiB |
//! | `compression` | `shared` | `off` | `off` |
//! | `max_rooms_per_connection` | 100 | 100 | 20 |
//! | `handshake_timeout_secs` | 10 | 10 | 5 |
//! | `rate_limit.messages_per_sec` | 20 | 100 | 20 |
//! | `rate_limit.burst` | 40 | 200 | 40 |
//!
//! `high-throughput` is for fewer, busier connections: larger messages and
//! queues before a slow reader is dropped or closed, no deflate CPU, a higher
//! message rate. `low-memory` is for the most idle connections per GiB:
//! smaller buffers, and a connection's queue is capped early, so one slow
//! reader cannot hold megabytes; no deflate state at all.
//!
//! # Dev mode
//!
//! With none of `auth.hs256_secret`, `auth.hs256_secret_file`,
//! `auth.rs256_public_key_file`, `auth.es256_public_key_file` set
//! ([`RoomServerConfig::is_dev_mode`]), `edgews` generates an HS256 secret in
//! `auth.dev_secret_file` and only listens on a loopback address.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::protocol::deflate::{CompressorPreset, DecompressorPreset};

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
    /// Most connections one user may have open (0: unlimited; close 4029
    /// past it). With `broker = "redis"` it counts the user's connections
    /// on every node.
    pub max_connections_per_user: usize,
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
    /// With `compression = "dedicated"`: memory of each connection's
    /// compressor, `3kb` to `256kb` (uWebSockets-style presets; README's
    /// density table has each one's memory and ratio).
    pub compression_preset: String,
    /// With `compression = "dedicated"`: window of each connection's
    /// inflater, `512b` to `32kb` (clients that accept a limit are asked to
    /// compress within it).
    pub decompression_preset: String,
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
    /// Scale-out: `none` (one node, everything in-process) or `redis`
    /// (rooms, presence and private messages shared through `redis.url`;
    /// see docs/scale-out.md).
    pub broker: BrokerKind,
    /// The Redis broker's settings (used with `broker = "redis"`).
    pub redis: RedisConfig,
    /// On SIGTERM/SIGINT, each client is told to reconnect after a delay
    /// spread evenly over this window (`{"type":"drain","reconnect_after_ms":..}`)
    /// before the 1001 close, so the other nodes take the reconnects
    /// gradually (0: no hint, close at once).
    pub drain_window_secs: u64,
    /// The admin HTTP API (its own listener; off unless `admin.listen` is set).
    pub admin: AdminConfig,
    /// Room history: store, limits (`docs/protocol.md`, "History and recovery").
    pub history: super::history::HistoryConfig,
}

/// Which broker spans rooms over several nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BrokerKind {
    /// One node: rooms live in this process only (the default).
    #[default]
    None,
    /// Redis pub/sub (sharded channels) and Redis keys for presence.
    Redis,
}

/// The Redis broker's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: String,
    /// Prefix of every key and channel (several clusters can share one Redis).
    pub prefix: String,
    /// Room and user channels are hashed onto this many shard channels; a
    /// node subscribes only to the shards of its local rooms and users.
    pub shards: u32,
    /// A node's heartbeat key lives this long; a node silent for longer is
    /// dead and the survivors remove its users.
    pub node_ttl_secs: u64,
    /// How often a node sends a probe through its own channel; a
    /// subscription that sees no probe for 3 intervals is wedged and redone.
    pub probe_interval_ms: u64,
    /// Publishes gathered this long (microseconds) go to Redis in one pipeline.
    pub batch_micros: u64,
    /// Operations waiting for Redis, at most (past it they are dropped and
    /// counted, and the affected rooms get a `gap` event).
    pub max_pending: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/".into(),
            prefix: "edgews".into(),
            shards: 64,
            node_ttl_secs: 10,
            probe_interval_ms: 1000,
            batch_micros: 200,
            max_pending: 65_536,
        }
    }
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

/// The admin HTTP API (`docs/protocol.md`, "Admin HTTP API").
///
/// It listens on an address of its own, never on the WebSocket port, so it
/// can be kept on a private interface. With `listen` set and no token, every
/// request is refused with 403 (the API is disabled, and says so).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Address of the admin API (unset: no admin API).
    pub listen: Option<SocketAddr>,
    /// Bearer token for every admin route (prefer `token_file`: this one
    /// shows in `--print-config`).
    pub token: Option<String>,
    /// File holding the bearer token for every admin route.
    pub token_file: Option<PathBuf>,
    /// Bearer token for the read-only routes (`GET`); 403 on the others.
    pub read_token: Option<String>,
    /// File holding the read-only bearer token.
    pub read_token_file: Option<PathBuf>,
    /// Largest request body (JSON) in bytes; larger ones get 400.
    pub max_body_bytes: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            token: None,
            token_file: None,
            read_token: None,
            read_token_file: None,
            max_body_bytes: 1 << 20,
        }
    }
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
            max_connections_per_user: 0,
            auth_timeout_secs: 5,
            ping_interval_secs: 25,
            idle_timeout_secs: 60,
            handshake_timeout_secs: 10,
            shutdown_timeout_secs: 10,
            backpressure_bytes: 1 << 20,
            max_queued_bytes: 16 << 20,
            receive_buffer_bytes: 256 << 10,
            compression: CompressionMode::Shared,
            compression_preset: "256kb".into(),
            decompression_preset: "32kb".into(),
            member_events_max_room_size: 1000,
            who_default_limit: 100,
            who_max_limit: 1000,
            rate_limit: RateLimitConfig::default(),
            auth: AuthConfig::default(),
            tls: None,
            broker: BrokerKind::None,
            redis: RedisConfig::default(),
            drain_window_secs: 5,
            admin: AdminConfig::default(),
            history: super::history::HistoryConfig::default(),
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
                CompressionMode::Dedicated => crate::runtime::Compression::Dedicated {
                    compressor: CompressorPreset::named(&self.compression_preset)
                        .ok_or("compression_preset: not a preset")?,
                    decompressor: DecompressorPreset::named(&self.decompression_preset)
                        .ok_or("decompression_preset: not a preset")?,
                },
            });
        if self.workers > 0 {
            cfg = cfg.workers(self.workers);
        }
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

/// `EDGEWS_*` environment variables that are never configuration: the log
/// level, and variables of the project's scripts and tests. Other `EDGEWS_*`
/// variables are configuration when they look like it (see
/// [`RoomServerConfig::load`]).
pub const NON_CONFIG_ENV: &[&str] = &[
    "EDGEWS_LOG",
    "EDGEWS_WSTEST_HOME",
    "EDGEWS_BIN",
    "EDGEWS_SERVER_CPU",
    "EDGEWS_REQUIRE_REDIS",
];

/// The prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "EDGEWS_";

/// A configuration that cannot be used: names the key, and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    key: Option<String>,
    message: String,
}

impl ConfigError {
    fn new(key: Option<&str>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.map(str::to_owned),
            message: message.into(),
        }
    }

    fn key(key: &str, message: impl fmt::Display) -> Self {
        ConfigError::new(Some(key), format!("{key}: {message}"))
    }

    /// The offending key (dotted: `rate_limit.burst`), when there is one.
    pub fn key_name(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where a layer's values came from, for error messages.
#[derive(Clone, Copy)]
enum Source<'a> {
    File(&'a Path),
    Env(&'a str),
    Flag,
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "in {}", p.display()),
            Source::Env(var) => write!(f, "from the environment variable {var}"),
            Source::Flag => f.write_str("from the command line"),
        }
    }
}

impl Profile {
    /// Every setting as this profile has it (see the module doc's table).
    pub fn defaults(self) -> RoomServerConfig {
        let standard = RoomServerConfig::default();
        match self {
            Profile::Standard => standard,
            Profile::HighThroughput => RoomServerConfig {
                profile: self,
                max_message_bytes: 1 << 20,
                receive_buffer_bytes: 1 << 20,
                backpressure_bytes: 4 << 20,
                max_queued_bytes: 64 << 20,
                compression: CompressionMode::Off,
                rate_limit: RateLimitConfig {
                    messages_per_sec: 100,
                    burst: 200,
                    ..standard.rate_limit.clone()
                },
                ..standard
            },
            Profile::LowMemory => RoomServerConfig {
                profile: self,
                max_message_bytes: 16 << 10,
                receive_buffer_bytes: 64 << 10,
                backpressure_bytes: 64 << 10,
                max_queued_bytes: 1 << 20,
                compression: CompressionMode::Off,
                max_rooms_per_connection: 20,
                handshake_timeout_secs: 5,
                ..standard
            },
        }
    }
}

impl RoomServerConfig {
    /// The effective configuration: `file` (TOML) over the profile's
    /// defaults, then the `EDGEWS_*` variables of `env`, then `overrides`
    /// (`(dotted key, value)`, from flags), validated. See the module doc.
    ///
    /// An `EDGEWS_*` variable that is not a key is an error when it looks
    /// like one: its first part is a key or section (`EDGEWS_RATE_LIMIT__TYPO`),
    /// its first word starts a key (`EDGEWS_MAX_CONNS`), or it is within two
    /// edits of a key (`EDGEWS_LISTN`). Others (`EDGEWS_BIN` of a test
    /// script) are left alone, so tools can share the prefix.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let schema = schema();
        let mut layers = Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(None, format!("cannot read {}: {e}", path.display()))
            })?;
            merge(&mut layers, parse_file(&text, path, &schema)?);
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !NON_CONFIG_ENV.contains(&k.as_str()))
            .collect();
        env.sort();
        for (var, raw) in &env {
            let path: Vec<String> = var[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect();
            if !looks_like_config(&path, &schema) {
                tracing::debug!(variable = %var, "not a config variable, ignored");
                continue;
            }
            set(&mut layers, &schema, &path, raw, Source::Env(var))?;
        }
        for (key, raw) in overrides {
            let path: Vec<String> = key.split('.').map(|k| k.trim().to_owned()).collect();
            set(&mut layers, &schema, &path, raw, Source::Flag)?;
        }
        let profile = match layers.get("profile") {
            Some(v) => v
                .clone()
                .try_into::<Profile>()
                .map_err(|e| ConfigError::key("profile", e.message()))?,
            None => Profile::Standard,
        };
        let mut merged = Table::try_from(profile.defaults())
            .map_err(|e| ConfigError::new(None, format!("cannot write the defaults: {e}")))?;
        merge(&mut merged, layers);
        let cfg: RoomServerConfig = merged.try_into().map_err(|e| {
            ConfigError::new(None, format!("invalid configuration: {}", e.message()))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration as TOML (`edgews serve --print-config`); loading it
    /// back gives the same configuration. It includes `auth.hs256_secret`
    /// when that is set (prefer `auth.hs256_secret_file`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("every field of the config has a TOML form")
    }

    /// True when no token key is configured: `edgews` then runs in dev mode.
    pub fn is_dev_mode(&self) -> bool {
        let a = &self.auth;
        a.hs256_secret.is_none()
            && a.hs256_secret_file.is_none()
            && a.rs256_public_key_file.is_none()
            && a.es256_public_key_file.is_none()
    }

    /// Checks the settings together; the error names the key to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, msg: String| Err(ConfigError::key(key, msg));
        if self.is_dev_mode() && !self.listen.ip().is_loopback() {
            return err(
                "listen",
                format!(
                    "{} is not a loopback address, and no auth key is configured: dev mode \
                     only listens on 127.0.0.1 or ::1. Configure auth.hs256_secret_file \
                     (or another auth key) to serve other hosts",
                    self.listen
                ),
            );
        }
        if self.workers > 256 {
            return err(
                "workers",
                format!("must be 0 (one per CPU) to 256, not {}", self.workers),
            );
        }
        if self.max_connections == 0 {
            return err("max_connections", "must be at least 1".into());
        }
        if self.max_message_bytes < 1024 {
            return err(
                "max_message_bytes",
                format!(
                    "must be at least 1024 (an auth message carries a token), not {}",
                    self.max_message_bytes
                ),
            );
        }
        if CompressorPreset::named(&self.compression_preset).is_none() {
            let names: Vec<_> = CompressorPreset::ALL.iter().map(|(n, _)| *n).collect();
            return err(
                "compression_preset",
                format!(
                    "must be one of {}, not `{}`",
                    names.join(", "),
                    self.compression_preset
                ),
            );
        }
        if DecompressorPreset::named(&self.decompression_preset).is_none() {
            let names: Vec<_> = DecompressorPreset::ALL.iter().map(|(n, _)| *n).collect();
            return err(
                "decompression_preset",
                format!(
                    "must be one of {}, not `{}`",
                    names.join(", "),
                    self.decompression_preset
                ),
            );
        }
        if self.max_rooms_per_connection == 0 {
            return err("max_rooms_per_connection", "must be at least 1".into());
        }
        if !(1..=3600).contains(&self.auth_timeout_secs) {
            return err(
                "auth_timeout_secs",
                format!("must be 1 to 3600, not {}", self.auth_timeout_secs),
            );
        }
        if self.handshake_timeout_secs == 0 {
            return err("handshake_timeout_secs", "must be at least 1".into());
        }
        if self.ping_interval_secs > 0
            && self.idle_timeout_secs > 0
            && self.ping_interval_secs >= self.idle_timeout_secs
        {
            return err(
                "ping_interval_secs",
                format!(
                    "must be shorter than idle_timeout_secs ({} >= {})",
                    self.ping_interval_secs, self.idle_timeout_secs
                ),
            );
        }
        if self.backpressure_bytes == 0 {
            return err("backpressure_bytes", "must be at least 1".into());
        }
        if self.max_queued_bytes < self.backpressure_bytes {
            return err(
                "max_queued_bytes",
                format!(
                    "must be >= backpressure_bytes ({} < {})",
                    self.max_queued_bytes, self.backpressure_bytes
                ),
            );
        }
        if self.receive_buffer_bytes < 4096 {
            return err(
                "receive_buffer_bytes",
                format!("must be at least 4096, not {}", self.receive_buffer_bytes),
            );
        }
        if self.who_default_limit == 0 {
            return err("who_default_limit", "must be at least 1".into());
        }
        if self.who_max_limit < self.who_default_limit {
            return Err(ConfigError::new(
                Some("who_max_limit"),
                format!(
                    "who_max_limit must be >= who_default_limit ({} < {})",
                    self.who_max_limit, self.who_default_limit
                ),
            ));
        }
        if self.who_max_limit > 100_000 {
            return err(
                "who_max_limit",
                format!("must be at most 100000, not {}", self.who_max_limit),
            );
        }
        for p in &self.trusted_proxies {
            if p.parse::<ipnet::IpNet>().is_err() && p.parse::<std::net::IpAddr>().is_err() {
                return err(
                    "trusted_proxies",
                    format!("`{p}` is not an address or CIDR range"),
                );
            }
        }
        for o in &self.allowed_origins {
            let ok = o.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && !rest.trim_end_matches('/').is_empty()
                    && !rest.trim_end_matches('/').contains('/')
            });
            if !ok {
                return err(
                    "allowed_origins",
                    format!("`{o}` is not an origin (scheme://host[:port], no path)"),
                );
            }
        }
        let rl = &self.rate_limit;
        if rl.messages_per_sec > 1_000_000 {
            return err(
                "rate_limit.messages_per_sec",
                format!("must be at most 1000000, not {}", rl.messages_per_sec),
            );
        }
        if rl.messages_per_sec > 0 && !(1..=1_000_000).contains(&rl.burst) {
            return err(
                "rate_limit.burst",
                format!(
                    "must be 1 to 1000000 when there is a rate, not {}",
                    rl.burst
                ),
            );
        }
        if rl.abuse_strikes > u32::from(u16::MAX) {
            return err(
                "rate_limit.abuse_strikes",
                format!("must be at most {}, not {}", u16::MAX, rl.abuse_strikes),
            );
        }
        if !(1..=3600).contains(&rl.abuse_window_secs) {
            return err(
                "rate_limit.abuse_window_secs",
                format!("must be 1 to 3600, not {}", rl.abuse_window_secs),
            );
        }
        let h = &self.history;
        if h.size > 1_000_000 {
            return err(
                "history.size",
                format!("must be at most 1000000, not {}", h.size),
            );
        }
        if !(1..=100_000).contains(&h.max_limit) {
            return err(
                "history.max_limit",
                format!("must be 1 to 100000, not {}", h.max_limit),
            );
        }
        if !(1..=h.max_limit).contains(&h.default_limit) {
            return err(
                "history.default_limit",
                format!("must be 1 to history.max_limit, not {}", h.default_limit),
            );
        }
        if h.max_memory_bytes < 1 << 16 {
            return err(
                "history.max_memory_bytes",
                format!("must be at least 65536, not {}", h.max_memory_bytes),
            );
        }
        let a = &self.auth;
        let keys = [
            ("auth.hs256_secret", a.hs256_secret.is_some()),
            ("auth.hs256_secret_file", a.hs256_secret_file.is_some()),
            (
                "auth.rs256_public_key_file",
                a.rs256_public_key_file.is_some(),
            ),
            (
                "auth.es256_public_key_file",
                a.es256_public_key_file.is_some(),
            ),
        ];
        let set: Vec<&str> = keys.iter().filter(|k| k.1).map(|k| k.0).collect();
        if set.len() > 1 {
            return err(
                set[1],
                format!("set only one auth key, not {}", set.join(" and ")),
            );
        }
        if a.hs256_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return err("auth.hs256_secret", "must be at least 16 bytes".into());
        }
        if a.leeway_secs > 600 {
            return err(
                "auth.leeway_secs",
                format!("must be at most 600, not {}", a.leeway_secs),
            );
        }
        if a.dev_secret_file.as_os_str().is_empty() {
            return err("auth.dev_secret_file", "must not be empty".into());
        }
        let r = &self.redis;
        if self.broker == BrokerKind::Redis {
            let scheme = r.url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("redis" | "rediss" | "unix" | "redis+unix")) {
                return err(
                    "redis.url",
                    format!(
                        "`{}` is not a Redis URL (redis://host:port, rediss:// for TLS)",
                        r.url
                    ),
                );
            }
        }
        if r.prefix.is_empty() || r.prefix.len() > 64 || r.prefix.contains(char::is_whitespace) {
            return err(
                "redis.prefix",
                format!("must be 1 to 64 bytes without spaces, not `{}`", r.prefix),
            );
        }
        if !(1..=65_536).contains(&r.shards) {
            return err(
                "redis.shards",
                format!("must be 1 to 65536, not {}", r.shards),
            );
        }
        if !(2..=3600).contains(&r.node_ttl_secs) {
            return err(
                "redis.node_ttl_secs",
                format!("must be 2 to 3600, not {}", r.node_ttl_secs),
            );
        }
        if r.probe_interval_ms < 50 || r.probe_interval_ms * 2 > r.node_ttl_secs * 1000 {
            return err(
                "redis.probe_interval_ms",
                format!(
                    "must be at least 50 and at most half of node_ttl_secs, not {}",
                    r.probe_interval_ms
                ),
            );
        }
        if r.batch_micros > 100_000 {
            return err(
                "redis.batch_micros",
                format!("must be at most 100000, not {}", r.batch_micros),
            );
        }
        if r.max_pending == 0 {
            return err("redis.max_pending", "must be at least 1".into());
        }
        if self.drain_window_secs > 3600 {
            return err(
                "drain_window_secs",
                format!("must be at most 3600, not {}", self.drain_window_secs),
            );
        }
        if let Some(tls) = &self.tls {
            if tls.cert_file.as_os_str().is_empty() || tls.key_file.as_os_str().is_empty() {
                return err("tls", "needs both cert_file and key_file".into());
            }
        }
        let ad = &self.admin;
        for (key, token) in [
            ("admin.token", &ad.token),
            ("admin.read_token", &ad.read_token),
        ] {
            if token.as_ref().is_some_and(|t| t.trim().len() < 16) {
                return err(key, "must be at least 16 bytes".into());
            }
        }
        if ad.token.is_some() && ad.token_file.is_some() {
            return err(
                "admin.token_file",
                "set admin.token or admin.token_file, not both".into(),
            );
        }
        if ad.read_token.is_some() && ad.read_token_file.is_some() {
            return err(
                "admin.read_token_file",
                "set admin.read_token or admin.read_token_file, not both".into(),
            );
        }
        if !(1024..=64 << 20).contains(&ad.max_body_bytes) {
            return err(
                "admin.max_body_bytes",
                format!("must be 1024 to 67108864, not {}", ad.max_body_bytes),
            );
        }
        self.engine_config()
            .map(drop)
            .map_err(|e| ConfigError::new(None, format!("invalid configuration: {e}")))
    }
}

/// Every key with a value of its type: the shape that file, environment and
/// flags are checked against (a test keeps it in step with the structs).
fn schema() -> Table {
    let cfg = RoomServerConfig {
        auth: AuthConfig {
            hs256_secret: Some(String::new()),
            hs256_secret_file: Some(PathBuf::new()),
            rs256_public_key_file: Some(PathBuf::new()),
            es256_public_key_file: Some(PathBuf::new()),
            issuer: Some(String::new()),
            audience: Some(String::new()),
            ..AuthConfig::default()
        },
        tls: Some(TlsConfig {
            cert_file: PathBuf::from("cert.pem"),
            key_file: PathBuf::from("key.pem"),
        }),
        trusted_proxies: vec![String::new()],
        allowed_origins: vec![String::new()],
        admin: AdminConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            token: Some(String::new()),
            token_file: Some(PathBuf::new()),
            read_token: Some(String::new()),
            read_token_file: Some(PathBuf::new()),
            ..AdminConfig::default()
        },
        ..RoomServerConfig::default()
    };
    Table::try_from(cfg).expect("every field of the config has a TOML form")
}

/// Parses the file layer: unknown keys (at any depth) and wrong types are
/// errors naming the key.
fn parse_file(text: &str, path: &Path, schema: &Table) -> Result<Table, ConfigError> {
    let table: Table = text
        .parse()
        .map_err(|e| ConfigError::new(None, format!("{}: {e}", path.display())))?;
    check_keys(&table, schema, "", Source::File(path))?;
    // Types, with the line and column toml reports.
    toml::from_str::<RoomServerConfig>(text)
        .map_err(|e| ConfigError::new(None, format!("{}: {e}", path.display())))?;
    Ok(table)
}

fn check_keys(
    table: &Table,
    schema: &Table,
    prefix: &str,
    src: Source<'_>,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let key = format!("{prefix}{k}");
        match (schema.get(k), v) {
            (None, _) => {
                return Err(ConfigError::new(
                    Some(&key),
                    format!("unknown key `{key}` {src} (see edgews.example.toml for every key)"),
                ))
            }
            (Some(Value::Table(s)), Value::Table(t)) => check_keys(t, s, &format!("{key}."), src)?,
            _ => {}
        }
    }
    Ok(())
}

/// Every key of `schema` as an environment variable's tail (lowercase,
/// `__` between a section and its key).
fn env_keys(schema: &Table) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in schema {
        match v {
            Value::Table(t) => out.extend(t.keys().map(|kk| format!("{k}__{kk}"))),
            _ => out.push(k.clone()),
        }
    }
    out
}

/// See [`RoomServerConfig::load`].
fn looks_like_config(path: &[String], schema: &Table) -> bool {
    let Some(first) = path.first() else {
        return false;
    };
    if schema.contains_key(first) {
        return true;
    }
    let name = path.join("__");
    let word = first.split('_').next().unwrap_or_default();
    env_keys(schema)
        .iter()
        .any(|k| k.split('_').next() == Some(word) || strsim::levenshtein(&name, k) <= 2)
}

/// The key nearest to `name` (an environment variable's tail), for a hint.
fn nearest_env_key(name: &str, schema: &Table) -> Option<String> {
    env_keys(schema)
        .into_iter()
        .map(|k| (strsim::levenshtein(name, &k), k))
        .filter(|(d, k)| *d <= k.len() / 2)
        .min()
        .map(|(_, k)| format!("{ENV_PREFIX}{}", k.to_ascii_uppercase()))
}

/// Sets `path` to `raw` (typed by the schema) in `layers`.
fn set(
    layers: &mut Table,
    schema: &Table,
    path: &[String],
    raw: &str,
    src: Source<'_>,
) -> Result<(), ConfigError> {
    let key = path.join(".");
    let unknown = || {
        let hint = match src {
            Source::Env(_) => "config variables are EDGEWS_ and the key in capitals, `__` between \
                               a section and its key, e.g. EDGEWS_RATE_LIMIT__BURST; see docs/config.md",
            _ => "sections and keys are separated by `.`, e.g. rate_limit.burst; see docs/config.md",
        };
        let msg = match src {
            Source::Env(var) => match nearest_env_key(&path.join("__"), schema) {
                Some(near) => {
                    format!("{var} is not a config variable: did you mean {near}? ({hint})")
                }
                None => format!("{var} is not a config variable: `{key}` is no key ({hint})"),
            },
            _ => format!("unknown key `{key}` {src} ({hint})"),
        };
        ConfigError::new(Some(&key), msg)
    };
    let (last, parents) = path.split_last().ok_or_else(unknown)?;
    let mut shape = schema;
    for p in parents {
        shape = match shape.get(p) {
            Some(Value::Table(t)) => t,
            _ => return Err(unknown()),
        };
    }
    let value = match shape.get(last).ok_or_else(unknown)? {
        Value::String(_) => Value::String(raw.to_owned()),
        Value::Integer(_) => {
            let n: i64 = raw.trim().replace('_', "").parse().map_err(|_| {
                ConfigError::key(&key, format!("`{raw}` {src} is not a whole number"))
            })?;
            Value::Integer(n)
        }
        Value::Boolean(_) => match raw.trim() {
            "true" | "1" => Value::Boolean(true),
            "false" | "0" => Value::Boolean(false),
            _ => {
                return Err(ConfigError::key(
                    &key,
                    format!("`{raw}` {src} is not true or false"),
                ))
            }
        },
        Value::Array(_) if raw.trim_start().starts_with('[') => {
            let doc: Table = format!("v = {raw}").parse().map_err(|_| {
                ConfigError::key(&key, format!("`{raw}` {src} is not a TOML array"))
            })?;
            doc.get("v").cloned().unwrap_or(Value::Array(Vec::new()))
        }
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        Value::Table(_) => {
            return Err(ConfigError::key(
                &key,
                format!("is a section {src}; set one of its keys, e.g. `{key}.<key>`"),
            ))
        }
        _ => Value::String(raw.to_owned()),
    };
    // Type check: the schema with only this value replaced must deserialize.
    let mut probe = schema.clone();
    insert(&mut probe, path, value.clone());
    if let Err(e) = probe.try_into::<RoomServerConfig>() {
        return Err(ConfigError::key(
            &key,
            format!("`{raw}` {src}: {}", e.message()),
        ));
    }
    insert(layers, path, value);
    Ok(())
}

fn insert(table: &mut Table, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        t = match entry {
            Value::Table(t) => t,
            _ => unreachable!("made a table just above"),
        };
    }
    t.insert(last.clone(), value);
}

/// Deep merge: `from`'s tables merge into `into`'s, anything else replaces.
fn merge(into: &mut Table, from: Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgews-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(
        file: Option<&str>,
        vars: &[(&str, &str)],
        sets: &[(&str, &str)],
    ) -> Result<RoomServerConfig, ConfigError> {
        let path = file.map(|text| tmp(&format!("{:x}.toml", fxhash(text)), text));
        let sets: Vec<(String, String)> = sets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RoomServerConfig::load(path.as_deref(), env(vars), &sets)
    }

    fn fxhash(s: &str) -> u64 {
        s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    #[test]
    fn the_redis_broker_is_configured_checked_and_printed_back() {
        let cfg = load(
            Some("broker = \"redis\"\n[redis]\nshards = 16\n"),
            &[
                ("EDGEWS_REDIS__URL", "rediss://cache.internal:6380/2"),
                ("EDGEWS_REQUIRE_REDIS", "1"),
            ],
            &[("redis.node_ttl_secs", "4"), ("drain_window_secs", "30")],
        )
        .unwrap();
        assert_eq!(cfg.broker, BrokerKind::Redis);
        assert_eq!(cfg.redis.url, "rediss://cache.internal:6380/2");
        assert_eq!((cfg.redis.shards, cfg.redis.node_ttl_secs), (16, 4));
        assert_eq!(cfg.drain_window_secs, 30);
        let printed = load(Some(&cfg.to_toml()), &[], &[]).unwrap();
        assert_eq!(printed, cfg, "--print-config loads back the same");
        let e = load(None, &[], &[("broker", "redis"), ("redis.url", "http://x")]).unwrap_err();
        assert_eq!(e.key_name(), Some("redis.url"), "{e}");
        let e = load(None, &[], &[("redis.probe_interval_ms", "6000")]).unwrap_err();
        assert_eq!(e.key_name(), Some("redis.probe_interval_ms"), "{e}");
        let e = load(None, &[], &[("broker", "kafka")]).unwrap_err();
        assert_eq!(e.key_name(), Some("broker"), "{e}");
        assert_eq!(RoomServerConfig::default().broker, BrokerKind::None);
    }

    #[test]
    fn nothing_set_is_the_standard_defaults() {
        let cfg = load(None, &[("PATH", "/bin"), ("EDGEWS_LOG", "debug")], &[]).unwrap();
        assert_eq!(cfg, RoomServerConfig::default());
        assert!(cfg.is_dev_mode());
        assert_eq!(cfg.listen, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn flags_beat_env_beat_file_beat_profile() {
        let file = "profile = \"low-memory\"\nmax_message_bytes = 2048\nworkers = 1\n\
                    [rate_limit]\nburst = 7\n";
        let cfg = load(Some(file), &[], &[]).unwrap();
        assert_eq!(cfg.profile, Profile::LowMemory);
        assert_eq!(cfg.max_message_bytes, 2048, "file over profile");
        assert_eq!(cfg.max_queued_bytes, 1 << 20, "profile default kept");
        assert_eq!(cfg.rate_limit.burst, 7);
        assert_eq!(
            cfg.rate_limit.messages_per_sec, 20,
            "rest of the section kept"
        );

        let vars = [
            ("EDGEWS_MAX_MESSAGE_BYTES", "4096"),
            ("EDGEWS_WORKERS", "2"),
            ("EDGEWS_RATE_LIMIT__BURST", "9"),
        ];
        let cfg = load(Some(file), &vars, &[]).unwrap();
        assert_eq!(
            (cfg.max_message_bytes, cfg.workers),
            (4096, 2),
            "env over file"
        );
        assert_eq!(cfg.rate_limit.burst, 9);

        let cfg = load(
            Some(file),
            &vars,
            &[("workers", "3"), ("rate_limit.burst", "11")],
        )
        .unwrap();
        assert_eq!(
            (cfg.max_message_bytes, cfg.workers),
            (4096, 3),
            "flags over env"
        );
        assert_eq!(cfg.rate_limit.burst, 11);
    }

    #[test]
    fn the_highest_layer_picks_the_profile() {
        let cfg = load(
            Some("profile = \"low-memory\"\n"),
            &[],
            &[("profile", "high-throughput")],
        )
        .unwrap();
        assert_eq!(cfg, Profile::HighThroughput.defaults());
        let cfg = load(None, &[("EDGEWS_PROFILE", "low-memory")], &[]).unwrap();
        assert_eq!(cfg, Profile::LowMemory.defaults());
    }

    #[test]
    fn profiles_change_exactly_the_documented_keys() {
        let standard = Table::try_from(RoomServerConfig::default()).unwrap();
        let changed = |p: Profile| {
            let t = Table::try_from(p.defaults()).unwrap();
            let mut keys = Vec::new();
            for (k, v) in &t {
                match (v, &standard[k]) {
                    (Value::Table(a), Value::Table(b)) => keys.extend(
                        a.iter()
                            .filter(|(kk, vv)| b.get(*kk) != Some(vv))
                            .map(|(kk, _)| format!("{k}.{kk}")),
                    ),
                    (a, b) if a != b && k != "profile" => keys.push(k.clone()),
                    _ => {}
                }
            }
            keys.sort();
            keys
        };
        // The module doc's table and docs/config.md list these.
        assert_eq!(
            changed(Profile::HighThroughput),
            [
                "backpressure_bytes",
                "compression",
                "max_message_bytes",
                "max_queued_bytes",
                "rate_limit.burst",
                "rate_limit.messages_per_sec",
                "receive_buffer_bytes"
            ]
        );
        assert_eq!(
            changed(Profile::LowMemory),
            [
                "backpressure_bytes",
                "compression",
                "handshake_timeout_secs",
                "max_message_bytes",
                "max_queued_bytes",
                "max_rooms_per_connection",
                "receive_buffer_bytes"
            ]
        );
        for p in [
            Profile::Standard,
            Profile::HighThroughput,
            Profile::LowMemory,
        ] {
            p.defaults().validate().unwrap();
        }
    }

    #[test]
    fn unknown_keys_are_errors_naming_them() {
        let e = load(Some("max_mesage_bytes = 1\n"), &[], &[]).unwrap_err();
        assert_eq!(e.key_name(), Some("max_mesage_bytes"), "{e}");
        let e = load(Some("[rate_limit]\ntypo = 1\n"), &[], &[]).unwrap_err();
        assert_eq!(e.key_name(), Some("rate_limit.typo"), "{e}");
        assert!(e.to_string().contains("rate_limit.typo"), "{e}");
        let e = load(Some("[nope]\na = 1\n"), &[], &[]).unwrap_err();
        assert_eq!(e.key_name(), Some("nope"), "{e}");
        let e = load(None, &[("EDGEWS_MAX_MESAGE_BYTES", "1")], &[]).unwrap_err();
        assert!(e.to_string().contains("EDGEWS_MAX_MESAGE_BYTES"), "{e}");
        let e = load(None, &[("EDGEWS_RATE_LIMIT__TYPO", "1")], &[]).unwrap_err();
        assert!(e.to_string().contains("EDGEWS_RATE_LIMIT__TYPO"), "{e}");
        let e = load(None, &[("EDGEWS_LISTN", "127.0.0.1:1")], &[]).unwrap_err();
        assert!(e.to_string().contains("did you mean EDGEWS_LISTEN?"), "{e}");
        let e = load(None, &[("EDGEWS_MAX_CONNS", "5")], &[]).unwrap_err();
        assert!(e.to_string().contains("EDGEWS_MAX_CONNS"), "{e}");
        // Variables of tools that share the prefix are not config.
        let cfg = load(
            None,
            &[
                ("EDGEWS_BIN", "target/debug/edgews"),
                ("EDGEWS_SERVER_CPU", "0"),
                ("EDGEWS_DEMO_USERS", "3"),
                ("EDGEWS_LOG", "debug"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(cfg, RoomServerConfig::default());
        let e = load(None, &[("EDGEWS_AUTH", "x")], &[]).unwrap_err();
        assert!(e.to_string().contains("section"), "{e}");
        let e = load(None, &[], &[("rate_limit.typo", "1")]).unwrap_err();
        assert_eq!(e.key_name(), Some("rate_limit.typo"), "{e}");
        let e = load(None, &[], &[("", "1")]).unwrap_err();
        assert!(e.to_string().contains("unknown key"), "{e}");
    }

    #[test]
    fn wrong_types_are_errors_naming_the_key() {
        let e = load(Some("max_message_bytes = \"big\"\n"), &[], &[]).unwrap_err();
        assert!(e.to_string().contains("max_message_bytes"), "{e}");
        let e = load(None, &[("EDGEWS_WORKERS", "two")], &[]).unwrap_err();
        assert_eq!(e.key_name(), Some("workers"), "{e}");
        assert!(e.to_string().contains("EDGEWS_WORKERS"), "{e}");
        let e = load(None, &[("EDGEWS_WORKERS", "-1")], &[]).unwrap_err();
        assert_eq!(e.key_name(), Some("workers"), "{e}");
        let e = load(None, &[], &[("profile", "fast")]).unwrap_err();
        assert_eq!(e.key_name(), Some("profile"), "{e}");
        let e = load(None, &[], &[("listen", "localhost")]).unwrap_err();
        assert_eq!(e.key_name(), Some("listen"), "{e}");
        let e = load(None, &[], &[("compression", "max")]).unwrap_err();
        assert_eq!(e.key_name(), Some("compression"), "{e}");
        let e = load(None, &[], &[("compression_preset", "5kb")]).unwrap_err();
        assert_eq!(e.key_name(), Some("compression_preset"), "{e}");
        let e = load(None, &[("EDGEWS_DECOMPRESSION_PRESET", "3kb")], &[]).unwrap_err();
        assert_eq!(e.key_name(), Some("decompression_preset"), "{e}");
        let cfg = load(
            None,
            &[],
            &[
                ("compression", "dedicated"),
                ("compression_preset", "3kb"),
                ("decompression_preset", "512b"),
            ],
        )
        .unwrap();
        assert_eq!(
            cfg.engine_config().unwrap().compression,
            crate::runtime::Compression::Dedicated {
                compressor: CompressorPreset::SIZE_3KB,
                decompressor: DecompressorPreset::SIZE_512B,
            }
        );
        let e = load(Some("not toml = = 1"), &[], &[]).unwrap_err();
        assert!(e.to_string().contains(".toml"), "{e}");
    }

    #[test]
    fn lists_and_sections_from_the_environment() {
        let cfg = load(
            None,
            &[
                (
                    "EDGEWS_ALLOWED_ORIGINS",
                    "https://a.example, https://b.example",
                ),
                ("EDGEWS_TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
                ("EDGEWS_AUTH__HS256_SECRET", "0123456789abcdef0123"),
                ("EDGEWS_TLS__CERT_FILE", "c.pem"),
                ("EDGEWS_TLS__KEY_FILE", "k.pem"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            cfg.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(cfg.trusted_proxies, ["10.0.0.0/8"]);
        assert_eq!(
            cfg.auth.hs256_secret.as_deref(),
            Some("0123456789abcdef0123")
        );
        assert!(!cfg.is_dev_mode());
        let tls = cfg.tls.unwrap();
        assert_eq!(
            (tls.cert_file.to_str(), tls.key_file.to_str()),
            (Some("c.pem"), Some("k.pem"))
        );
        // A numeric-looking secret stays a string.
        let cfg = load(
            None,
            &[("EDGEWS_AUTH__HS256_SECRET", "12345678901234567")],
            &[],
        )
        .unwrap();
        assert_eq!(cfg.auth.hs256_secret.as_deref(), Some("12345678901234567"));
        let e = load(None, &[("EDGEWS_TLS__CERT_FILE", "c.pem")], &[]).unwrap_err();
        assert!(e.to_string().contains("key_file"), "{e}");
    }

    #[test]
    fn print_config_round_trips() {
        for cfg in [
            Profile::LowMemory.defaults(),
            load(
                Some(
                    "profile = \"high-throughput\"\nallowed_origins = [\"https://x.example\"]\n\
                      [auth]\nhs256_secret_file = \"/run/secret\"\nissuer = \"me\"\n\
                      [tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n",
                ),
                &[("EDGEWS_RATE_LIMIT__BURST", "300")],
                &[("listen", "0.0.0.0:9000")],
            )
            .unwrap(),
        ] {
            let text = cfg.to_toml();
            let back = load(Some(&text), &[], &[]).unwrap();
            assert_eq!(back, cfg, "{text}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("who_default_limit", "200"), ("who_max_limit", "100")],
                "who_max_limit",
            ),
            (&[("who_default_limit", "0")], "who_default_limit"),
            (&[("listen", "0.0.0.0:8080")], "listen"),
            (&[("listen", "[::]:0")], "listen"),
            (&[("workers", "1000")], "workers"),
            (&[("max_message_bytes", "10")], "max_message_bytes"),
            (
                &[("max_rooms_per_connection", "0")],
                "max_rooms_per_connection",
            ),
            (&[("auth_timeout_secs", "0")], "auth_timeout_secs"),
            (
                &[("ping_interval_secs", "60"), ("idle_timeout_secs", "60")],
                "ping_interval_secs",
            ),
            (&[("max_queued_bytes", "1024")], "max_queued_bytes"),
            (&[("receive_buffer_bytes", "100")], "receive_buffer_bytes"),
            (&[("trusted_proxies", "nope")], "trusted_proxies"),
            (&[("allowed_origins", "example.com")], "allowed_origins"),
            (
                &[("allowed_origins", "https://example.com/path")],
                "allowed_origins",
            ),
            (&[("rate_limit.burst", "0")], "rate_limit.burst"),
            (
                &[("rate_limit.abuse_strikes", "70000")],
                "rate_limit.abuse_strikes",
            ),
            (
                &[("rate_limit.abuse_window_secs", "0")],
                "rate_limit.abuse_window_secs",
            ),
            (&[("auth.hs256_secret", "short")], "auth.hs256_secret"),
            (
                &[
                    ("auth.hs256_secret", "0123456789abcdef"),
                    ("auth.hs256_secret_file", "/x"),
                ],
                "auth.hs256_secret_file",
            ),
        ];
        for (sets, key) in cases {
            let e = load(None, &[], sets).unwrap_err();
            assert_eq!(e.key_name(), Some(*key), "{sets:?}: {e}");
            assert!(e.to_string().contains(key), "{e}");
        }
        // With a key configured, any address is fine.
        let cfg = load(
            None,
            &[("EDGEWS_AUTH__HS256_SECRET_FILE", "/run/secret")],
            &[
                ("listen", "0.0.0.0:8080"),
                ("allowed_origins", "https://a.example/"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 8080);
        // Rate limit off: no burst needed.
        load(
            None,
            &[],
            &[
                ("rate_limit.messages_per_sec", "0"),
                ("rate_limit.burst", "0"),
            ],
        )
        .unwrap();
    }

    /// `edgews.example.toml` is the defaults, and lists every key (the
    /// optional ones commented out).
    #[test]
    fn the_example_file_is_the_defaults_and_lists_every_key() {
        let text = include_str!("../../edgews.example.toml");
        assert_eq!(
            load(Some(text), &[], &[]).unwrap(),
            RoomServerConfig::default()
        );
        let is_setting = |r: &str| {
            r.starts_with('[')
                || r.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                })
        };
        let all: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(r) if is_setting(r) => format!("{r}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        let table: Table = all.parse().unwrap();
        fn keys(t: &Table, prefix: &str, out: &mut Vec<String>) {
            for (k, v) in t {
                match v {
                    Value::Table(s) => keys(s, &format!("{prefix}{k}."), out),
                    _ => out.push(format!("{prefix}{k}")),
                }
            }
        }
        let (mut listed, mut every) = (Vec::new(), Vec::new());
        keys(&table, "", &mut listed);
        keys(&schema(), "", &mut every);
        assert_eq!(listed, every);
    }

    /// The schema must know every field of every section, or a valid key
    /// would be refused: serde lists a struct's fields to its deserializer.
    #[test]
    fn the_schema_has_every_field() {
        use serde::de::{self, Deserializer, Visitor};
        struct Fields;
        impl<'de> Deserializer<'de> for Fields {
            type Error = de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("not a struct"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom(fields.join(",")))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map enum identifier ignored_any
            }
        }
        fn fields<T: for<'de> Deserialize<'de>>() -> Vec<String> {
            let e = T::deserialize(Fields).err().unwrap().to_string();
            let mut f: Vec<String> = e.split(',').map(str::to_owned).collect();
            f.sort();
            f
        }
        let keys = |t: &Table| {
            let mut k: Vec<String> = t.keys().cloned().collect();
            k.sort();
            k
        };
        let schema = schema();
        assert_eq!(keys(&schema), fields::<RoomServerConfig>());
        let section = |name: &str| match &schema[name] {
            Value::Table(t) => keys(t),
            _ => panic!("{name} is a section"),
        };
        assert_eq!(section("rate_limit"), fields::<RateLimitConfig>());
        assert_eq!(section("auth"), fields::<AuthConfig>());
        assert_eq!(section("tls"), fields::<TlsConfig>());
        assert_eq!(section("admin"), fields::<AdminConfig>());
        assert_eq!(
            section("history"),
            fields::<super::super::history::HistoryConfig>()
        );
    }
}
