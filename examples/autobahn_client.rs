//! The edgews client under the Autobahn testsuite: talks to `wstest -m
//! fuzzingserver` (see `autobahn/run-client.sh`), runs every case by echoing
//! each message back, then asks the server to write its reports.
//!
//! ```sh
//! cargo run --release --example autobahn_client -- --addr 127.0.0.1:9001 --deflate
//! ```
//!
//! It is an example rather than a binary because it is the smallest complete
//! user of [`edgews::client`]: one mio loop, one connection at a time.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use edgews::client::{Config, Connection, Event, State};
use edgews::protocol::deflate::DeflateOffer;
use edgews::protocol::Message;
use mio::{Events, Poll, Token};

/// Runs the Autobahn client cases against a fuzzing server on 127.0.0.1.
#[derive(Parser, Debug)]
struct Args {
    /// The fuzzing server's address.
    #[arg(long, default_value = "127.0.0.1:9001")]
    addr: SocketAddr,
    /// The agent name the reports are filed under.
    #[arg(long, default_value = "edgews")]
    agent: String,
    /// Offer permessage-deflate (`client_max_window_bits`, so the server may
    /// also cap our window) and compress every message we send.
    #[arg(long)]
    deflate: bool,
    /// The longest one case may take, in seconds (the suite's own longest
    /// case timeout is 480 s).
    #[arg(long, default_value_t = 600)]
    case_timeout: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        eprintln!("autobahn_client: {} is not a loopback address", args.addr);
        return ExitCode::from(2);
    }
    let mut config = Config::default();
    if args.deflate {
        config = config
            .deflate(Some(DeflateOffer {
                client_max_window_bits: true,
                ..DeflateOffer::default()
            }))
            .compression_threshold_bytes(0);
    }
    let limit = Duration::from_secs(args.case_timeout);
    let mut runner = match Runner::new(&args, config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("autobahn_client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let count = match runner.run("/getCaseCount", false, Duration::from_secs(30)) {
        Ok(Some(text)) => match text.trim().parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("autobahn_client: case count {text:?} is not a number");
                return ExitCode::FAILURE;
            }
        },
        Ok(None) => {
            eprintln!("autobahn_client: no case count from {}", args.addr);
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("autobahn_client: getCaseCount: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let mut failed = 0;
    for case in 1..=count {
        let path = format!("/runCase?case={case}&agent={}", args.agent);
        if let Err(e) = runner.run(&path, true, limit) {
            // The verdict is the suite's; this only says the case did not end cleanly.
            eprintln!("autobahn_client: case {case}: {e}");
            failed += 1;
        }
    }
    eprintln!(
        "autobahn_client: ran {count} cases in {:.0} s ({failed} ended with an error)",
        started.elapsed().as_secs_f64()
    );
    let path = format!("/updateReports?agent={}", args.agent);
    if let Err(e) = runner.run(&path, false, Duration::from_secs(120)) {
        eprintln!("autobahn_client: updateReports: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// One mio loop, one connection at a time.
struct Runner {
    poll: Poll,
    events: Events,
    addr: SocketAddr,
    host: String,
    config: Config,
}

impl Runner {
    fn new(args: &Args, config: Config) -> std::io::Result<Runner> {
        Ok(Runner {
            poll: Poll::new()?,
            events: Events::with_capacity(16),
            addr: args.addr,
            host: args.addr.to_string(),
            config,
        })
    }

    /// Opens `path`, echoes every message (or keeps the first text message
    /// when `echo` is false) until the connection closes or `limit` passes.
    fn run(&mut self, path: &str, echo: bool, limit: Duration) -> Result<Option<String>, String> {
        let end = Instant::now() + limit;
        // The server answers /updateReports only once the reports are
        // written, which can take a while on a busy machine: the whole
        // run's limit bounds the handshake too.
        let config = self.config.clone().handshake_timeout(limit);
        let mut conn =
            Connection::connect(self.addr, &self.host, path, &config).map_err(|e| e.to_string())?;
        conn.register(self.poll.registry(), Token(0))
            .map_err(|e| e.to_string())?;
        let mut first_text = None;
        let mut send_error = None;
        loop {
            let now = Instant::now();
            if now >= end {
                return Err(format!("still running after {} s", limit.as_secs()));
            }
            let wake = conn.deadline().map_or(end, |d| d.min(end));
            self.poll
                .poll(&mut self.events, Some(wake.saturating_duration_since(now)))
                .map_err(|e| e.to_string())?;
            let state = conn.ready(|event, sender| {
                if let Event::Message(m) = event {
                    if echo {
                        if let Err(e) = sender.send(m) {
                            send_error.get_or_insert(e.to_string());
                        }
                    } else if let (Message::Text(t), None) = (m, &first_text) {
                        first_text = Some(t.to_owned());
                    }
                }
            });
            if state == State::Closed {
                break;
            }
        }
        let _ = self.poll.registry().deregister(&mut conn);
        if let Some(e) = send_error {
            return Err(e);
        }
        match conn.error() {
            // A protocol error from the server is the case's point: we closed
            // with the right code, and the suite judges it.
            Some(e) if !e.is_protocol() => Err(e.to_string()),
            _ => Ok(first_text),
        }
    }
}
