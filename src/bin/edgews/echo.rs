//! `edgews echo`: the engine as an echo server (the one Autobahn and the
//! benchmarks run against), optionally with the text pub-sub protocol.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use edgews::protocol::deflate::{CompressorPreset, DecompressorPreset};
use edgews::runtime::tls::{reload_on_sighup, CertStore};
use edgews::runtime::{shutdown_on_signals, Compression, Config, Server, SlowConsumerPolicy};
use edgews::server::EchoHandler;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SlowConsumer {
    /// Skip room messages for a member that is over its backpressure limit.
    Drop,
    /// Close such a member with 1008.
    Close,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum CompressionArg {
    /// Never negotiate permessage-deflate.
    Off,
    /// No context takeover: one compressor per worker, ~0 bytes per connection,
    /// broadcasts compressed once.
    Shared,
    /// Context takeover: a compressor per connection (better ratio, more memory).
    Dedicated,
}

fn compressor_preset(name: &str) -> Result<CompressorPreset, String> {
    CompressorPreset::named(name).ok_or_else(|| {
        let names: Vec<_> = CompressorPreset::ALL.iter().map(|(n, _)| *n).collect();
        format!("not a compressor preset; one of {}", names.join(", "))
    })
}

fn decompressor_preset(name: &str) -> Result<DecompressorPreset, String> {
    DecompressorPreset::named(name).ok_or_else(|| {
        let names: Vec<_> = DecompressorPreset::ALL.iter().map(|(n, _)| *n).collect();
        format!("not a decompressor preset; one of {}", names.join(", "))
    })
}

/// Options of `edgews echo`.
#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    /// Address to listen on (every worker binds it with SO_REUSEPORT).
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Worker threads (event loops); default: one per CPU.
    #[arg(long)]
    workers: Option<usize>,
    /// Largest message accepted, in bytes; larger ones are closed with 1009.
    #[arg(long, default_value_t = 16 << 20)]
    max_message_size: usize,
    /// Largest HTTP request head, in bytes; larger ones get 431.
    #[arg(long, default_value_t = 8 << 10)]
    max_header_size: usize,
    /// Bytes of buffered input (partial messages, inflation in progress,
    /// split request heads) each worker may hold for all its connections; a
    /// connection that would pass it is closed with 1013. Default: a quarter
    /// of the machine's memory divided among the workers (at least 64 MiB and
    /// twice --max-message-size).
    #[arg(long, value_name = "BYTES")]
    max_buffered_input: Option<usize>,
    /// A connection's unsent bytes above which its input is paused and room
    /// messages follow --slow-consumer.
    #[arg(long, default_value_t = 1 << 20)]
    backpressure: usize,
    /// A connection's unsent bytes above which it is closed with 1008.
    #[arg(long, default_value_t = 64 << 20)]
    max_queue: usize,
    /// What a publish does to a member over --backpressure.
    #[arg(long, value_enum, default_value_t = SlowConsumer::Drop)]
    slow_consumer: SlowConsumer,
    /// Most open connections; more are answered with 503.
    #[arg(long, default_value_t = 1_000_000)]
    max_connections: usize,
    /// Seconds of silence after which a connection is closed (0: never).
    #[arg(long, default_value_t = 120)]
    idle_timeout: u64,
    /// Seconds of silence after which the server pings (0: never); must be
    /// shorter than --idle-timeout.
    #[arg(long, default_value_t = 0)]
    ping_interval: u64,
    /// Seconds allowed for the opening handshake.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// permessage-deflate mode.
    #[arg(long, value_enum, default_value_t = CompressionArg::Off)]
    compression: CompressionArg,
    /// LZ77 window of `--compression dedicated`, as a power of two (9-15),
    /// both ways, with zlib's default memLevel 8. The presets below size
    /// compressor and inflater more finely.
    #[arg(long, conflicts_with_all = ["compression_preset", "decompression_preset"])]
    compression_window_bits: Option<u8>,
    /// Memory of each connection's compressor in `--compression dedicated`
    /// (uWebSockets-style presets): 3kb, 4kb, 8kb, 16kb, 32kb, 64kb, 128kb or
    /// 256kb. Smaller: less memory, a worse ratio. README's density table
    /// has what each costs per connection.
    #[arg(long, default_value = "256kb", value_parser = compressor_preset)]
    compression_preset: CompressorPreset,
    /// Window of each connection's inflater in `--compression dedicated`:
    /// 512b, 1kb, 2kb, 4kb, 8kb, 16kb or 32kb. Clients that accept a limit
    /// (browsers do) are asked to compress within it.
    #[arg(long, default_value = "32kb", value_parser = decompressor_preset)]
    decompression_preset: DecompressorPreset,
    /// Messages shorter than this many bytes are sent uncompressed.
    #[arg(long, default_value_t = 256)]
    compression_threshold: usize,
    /// PEM certificate chain: serve wss (TLS) instead of ws. Reloaded on SIGHUP.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key matching --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Serve /healthz, /metrics and /status only on this address (default:
    /// on the WebSocket port).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Enable the text pub-sub protocol: `sub:<room>`, `unsub:<room>`,
    /// `pub:<room>:<payload>` (sends <payload> to every member of <room>).
    /// Any other message is echoed.
    #[arg(long)]
    pubsub: bool,
}

impl EchoArgs {
    fn config(&self) -> Config {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let mut cfg = Config::default()
            .listen(self.listen)
            .max_message_bytes(self.max_message_size)
            .max_header_bytes(self.max_header_size)
            .max_buffered_input_bytes(self.max_buffered_input)
            .backpressure_bytes(self.backpressure)
            .max_queued_bytes(self.max_queue)
            .slow_consumer(match self.slow_consumer {
                SlowConsumer::Drop => SlowConsumerPolicy::Drop,
                SlowConsumer::Close => SlowConsumerPolicy::Close,
            })
            .max_connections(self.max_connections)
            .idle_timeout(secs(self.idle_timeout))
            .ping_interval(secs(self.ping_interval))
            .handshake_timeout(Duration::from_secs(self.handshake_timeout.max(1)))
            .compression(match self.compression {
                CompressionArg::Off => Compression::Off,
                CompressionArg::Shared => Compression::Shared,
                CompressionArg::Dedicated => match self.compression_window_bits {
                    Some(bits) => Compression::dedicated_window_bits(bits),
                    None => Compression::Dedicated {
                        compressor: self.compression_preset,
                        decompressor: self.decompression_preset,
                    },
                },
            })
            .compression_threshold_bytes(self.compression_threshold)
            .admin_listen(self.admin_listen);
        if let Some(w) = self.workers {
            cfg = cfg.workers(w);
        }
        cfg
    }
}

/// Loads the certificate when --tls-cert/--tls-key are given, and reloads it on SIGHUP.
fn tls(
    args: &EchoArgs,
) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, edgews::runtime::Error> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let store = std::sync::Arc::new(CertStore::load(cert, key)?);
    let config = store.server_config()?;
    reload_on_sighup(store)?;
    Ok(Some(config))
}

/// Runs the echo server until SIGINT/SIGTERM.
pub fn run(args: EchoArgs) -> Result<(), edgews::runtime::Error> {
    let pubsub = args.pubsub;
    tls(&args)
        .and_then(|tls| Server::bind(args.config().tls(tls), |_| EchoHandler::new(pubsub)))
        .and_then(|server| {
            shutdown_on_signals(server.handle())?;
            server.run()
        })
}
