//! `edgews`: the command-line server.
//!
//! `edgews echo` runs the engine as an echo server (the one Autobahn runs
//! against), optionally with the text pub-sub protocol used by benchmarks.

#![warn(clippy::unwrap_used)]

mod logging;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use edgews::protocol::deflate::{CompressorPreset, DecompressorPreset};
use edgews::runtime::tls::{reload_on_sighup, CertStore};
use edgews::runtime::{shutdown_on_signals, Compression, Config, Server, SlowConsumerPolicy};
use edgews::server::EchoHandler;

/// A fast, lean WebSocket server.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log format: human-readable text or one JSON object per line.
    /// The level comes from the EDGEWS_LOG variable (e.g. `EDGEWS_LOG=debug`), default `info`.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Echo every message back (the default when no command is given).
    Echo(EchoArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

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

/// `--compression-preset`: memory of each connection's compressor (zlib's
/// estimate of its buffers; its state adds ~6 KB).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum CompressorArg {
    /// 512 B window, memLevel 1.
    #[value(name = "3kb")]
    Kb3,
    /// 512 B window, memLevel 2.
    #[value(name = "4kb")]
    Kb4,
    /// 1 KiB window, memLevel 3.
    #[value(name = "8kb")]
    Kb8,
    /// 2 KiB window, memLevel 4.
    #[value(name = "16kb")]
    Kb16,
    /// 4 KiB window, memLevel 5.
    #[value(name = "32kb")]
    Kb32,
    /// 8 KiB window, memLevel 6.
    #[value(name = "64kb")]
    Kb64,
    /// 16 KiB window, memLevel 7.
    #[value(name = "128kb")]
    Kb128,
    /// 32 KiB window, memLevel 8: the best ratio.
    #[value(name = "256kb")]
    Kb256,
}

impl CompressorArg {
    fn preset(self) -> CompressorPreset {
        match self {
            CompressorArg::Kb3 => CompressorPreset::SIZE_3KB,
            CompressorArg::Kb4 => CompressorPreset::SIZE_4KB,
            CompressorArg::Kb8 => CompressorPreset::SIZE_8KB,
            CompressorArg::Kb16 => CompressorPreset::SIZE_16KB,
            CompressorArg::Kb32 => CompressorPreset::SIZE_32KB,
            CompressorArg::Kb64 => CompressorPreset::SIZE_64KB,
            CompressorArg::Kb128 => CompressorPreset::SIZE_128KB,
            CompressorArg::Kb256 => CompressorPreset::SIZE_256KB,
        }
    }
}

/// `--decompression-preset`: window of each connection's inflater (zlib's
/// state adds ~7 KB).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum DecompressorArg {
    /// 512 B window.
    #[value(name = "512b")]
    B512,
    /// 1 KiB window.
    #[value(name = "1kb")]
    Kb1,
    /// 2 KiB window.
    #[value(name = "2kb")]
    Kb2,
    /// 4 KiB window.
    #[value(name = "4kb")]
    Kb4,
    /// 8 KiB window.
    #[value(name = "8kb")]
    Kb8,
    /// 16 KiB window.
    #[value(name = "16kb")]
    Kb16,
    /// 32 KiB window: what clients use unless asked for less.
    #[value(name = "32kb")]
    Kb32,
}

impl DecompressorArg {
    fn preset(self) -> DecompressorPreset {
        match self {
            DecompressorArg::B512 => DecompressorPreset::SIZE_512B,
            DecompressorArg::Kb1 => DecompressorPreset::SIZE_1KB,
            DecompressorArg::Kb2 => DecompressorPreset::SIZE_2KB,
            DecompressorArg::Kb4 => DecompressorPreset::SIZE_4KB,
            DecompressorArg::Kb8 => DecompressorPreset::SIZE_8KB,
            DecompressorArg::Kb16 => DecompressorPreset::SIZE_16KB,
            DecompressorArg::Kb32 => DecompressorPreset::SIZE_32KB,
        }
    }
}

/// Options of `edgews echo`.
#[derive(Args, Debug, Clone)]
struct EchoArgs {
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
    /// (uWebSockets-style presets; smaller: less memory, worse ratio).
    #[arg(long, value_enum, default_value_t = CompressorArg::Kb256)]
    compression_preset: CompressorArg,
    /// Window of each connection's inflater in `--compression dedicated`;
    /// clients that accept a limit are asked to compress within it.
    #[arg(long, value_enum, default_value_t = DecompressorArg::Kb32)]
    decompression_preset: DecompressorArg,
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

impl Default for EchoArgs {
    fn default() -> Self {
        match Cli::parse_from(["edgews", "echo"]).command {
            Some(Command::Echo(args)) => args,
            None => unreachable!("the echo command was given"),
        }
    }
}

impl EchoArgs {
    fn config(&self) -> Config {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let mut cfg = Config::default()
            .listen(self.listen)
            .max_message_bytes(self.max_message_size)
            .max_header_bytes(self.max_header_size)
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
                        compressor: self.compression_preset.preset(),
                        decompressor: self.decompression_preset.preset(),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format == LogFormat::Json);
    let args = match cli.command {
        Some(Command::Echo(args)) => args,
        None => EchoArgs::default(),
    };
    let pubsub = args.pubsub;
    let result = tls(&args)
        .and_then(|tls| Server::bind(args.config().tls(tls), |_| EchoHandler::new(pubsub)))
        .and_then(|server| {
            shutdown_on_signals(server.handle())?;
            server.run()
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("edgews: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(args: &[&str]) -> Result<Config, clap::Error> {
        let argv = ["edgews", "echo"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Some(Command::Echo(args)) => Ok(args.config()),
            None => unreachable!("the echo command was given"),
        }
    }

    #[test]
    fn compression_presets_and_window_bits() -> Result<(), clap::Error> {
        let cfg = echo(&["--compression", "dedicated"])?;
        assert_eq!(cfg.compression, Compression::DEDICATED);
        let cfg = echo(&[
            "--compression",
            "dedicated",
            "--compression-preset",
            "3kb",
            "--decompression-preset",
            "512b",
        ])?;
        assert_eq!(
            cfg.compression,
            Compression::Dedicated {
                compressor: CompressorPreset::SIZE_3KB,
                decompressor: DecompressorPreset::SIZE_512B,
            }
        );
        let cfg = echo(&[
            "--compression",
            "dedicated",
            "--compression-window-bits",
            "11",
        ])?;
        assert_eq!(cfg.compression, Compression::dedicated_window_bits(11));
        // Window bits and presets say the same thing two ways: one at a time.
        assert!(echo(&[
            "--compression",
            "dedicated",
            "--compression-window-bits",
            "11",
            "--compression-preset",
            "8kb",
        ])
        .is_err());
        assert!(echo(&["--compression-preset", "5kb"]).is_err());
        Ok(())
    }
}
