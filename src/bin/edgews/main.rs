//! `edgews`: the command-line server.
//!
//! - `edgews serve` (the default when no command is given): the room server,
//!   configured by file, `EDGEWS_*` variables and flags
//!   (`edgews::rooms::config`).
//! - `edgews token`: mints a token with the configured key.
//! - `edgews echo`: the engine as an echo server (the one Autobahn runs
//!   against), optionally with the text pub-sub protocol used by benchmarks.

#![warn(clippy::unwrap_used)]

mod echo;
mod logging;
mod serve;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// A fast, lean WebSocket server.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no command: `edgews serve` with these options.
    #[command(flatten)]
    serve: serve::ServeArgs,
    /// Log format: human-readable text or one JSON object per line.
    /// The level comes from the EDGEWS_LOG variable (e.g. `EDGEWS_LOG=debug`), default `info`.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the room server (the default when no command is given).
    Serve(serve::ServeArgs),
    /// Mint a token with the configured key (HS256 secret or dev mode's).
    Token(token::TokenArgs),
    /// Echo every message back (Autobahn, benchmarks).
    Echo(echo::EchoArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// Why a command failed; configuration mistakes exit with 2, the rest with 1.
#[derive(Debug)]
enum CliError {
    /// The configuration cannot be used (a key, a file, a flag).
    Config(String),
    /// Binding, running or signing failed.
    Run(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Config(m) => write!(f, "configuration error: {m}"),
            CliError::Run(m) => f.write_str(m),
        }
    }
}

impl From<edgews::rooms::config::ConfigError> for CliError {
    fn from(e: edgews::rooms::config::ConfigError) -> Self {
        CliError::Config(e.to_string())
    }
}

impl From<edgews::runtime::Error> for CliError {
    fn from(e: edgews::runtime::Error) -> Self {
        CliError::Run(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format == LogFormat::Json);
    let result = match cli.command {
        None => serve::run(cli.serve),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Token(args)) => token::run(&args),
        Some(Command::Echo(args)) => echo::run(args).map_err(CliError::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A configuration mistake is the user's to fix: said once, plainly.
            if let CliError::Run(_) = e {
                tracing::error!("{e}");
            }
            eprintln!("edgews: {e}");
            ExitCode::from(match e {
                CliError::Config(_) => 2,
                CliError::Run(_) => 1,
            })
        }
    }
}
