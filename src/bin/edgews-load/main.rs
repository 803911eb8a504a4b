//! `edgews-load`: a WebSocket load generator built on the engine's own client
//! codec (masking, handshake as a client).
//!
//! One mio loop per thread, connections spread over the threads, one read
//! buffer per loop, output written once per connection per loop turn. Every
//! run is bounded in time and talks to loopback addresses only. With
//! `--server-pid`, the server's CPU time over the measured window and its
//! memory come from /proc, so figures can be given per server CPU-second.

mod client;
mod report;
mod runner;
mod scenario;
mod tls;

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use report::{round, sample, Report};
use runner::Target;
use scenario::session::{Plan, Session};
use scenario::wire::{Rooms, Wire};
use scenario::{Shared, Window};

/// Load generator for WebSocket servers (loopback only).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// C connections echo S-byte messages, K in flight each: messages/s and latency.
    Echo(EchoArgs),
    /// C subscribers in one room, P publishers: delivered messages/s and publish-to-receive latency.
    Fanout(FanoutArgs),
    /// Opening handshakes as fast as possible until C connections are open.
    Connect {
        #[command(flatten)]
        common: Common,
        /// Handshakes in progress at once, per thread.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// Open C connections and hold them idle; with --server-pid, the server's
    /// resident memory per connection.
    Idle(IdleArgs),
    /// Room server (wire protocol v1): C connections, each authenticated and
    /// in a one-member room of its own, send `message` with an `id` and wait
    /// for the `ack`: requests/s and latency to the ack.
    RoomsEcho {
        #[command(flatten)]
        args: EchoArgs,
        #[command(flatten)]
        auth: RoomAuth,
    },
    /// Room server: C members of one room and P publishers (members too)
    /// sending `message` with `exclude_self`: deliveries/s and
    /// publish-to-receive latency of the `data` each member reads back.
    RoomsFanout {
        #[command(flatten)]
        args: FanoutArgs,
        #[command(flatten)]
        auth: RoomAuth,
    },
    /// Room server: C connections authenticate, join a room and hold; with
    /// --server-pid, the server's resident memory per connection.
    RoomsIdle {
        #[command(flatten)]
        args: IdleArgs,
        #[command(flatten)]
        auth: RoomAuth,
        /// Connections per room (rooms `idle-0`, `idle-1`, ...); each join
        /// sends `user_joined` to the members already there.
        #[arg(long, default_value_t = 1)]
        members_per_room: usize,
    },
}

/// `echo` and `rooms-echo`.
#[derive(Args, Debug, Clone)]
struct EchoArgs {
    #[command(flatten)]
    common: Common,
    /// Message size in bytes (rooms: bytes of the `data` string).
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Send binary messages (text otherwise; not with rooms).
    #[arg(long)]
    binary: bool,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Messages per second over all connections (0: each connection
    /// sends again as soon as an echo is back). A fixed rate measures
    /// every server's latency at the same throughput.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

/// `fanout` and `rooms-fanout`.
#[derive(Args, Debug, Clone)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Publisher connections (pub-sub: not members of the room; rooms:
    /// members that exclude themselves).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Payload size in bytes (at least ~30 for the header fields; rooms:
    /// bytes of the `data` string).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Publishes per second over all publishers (0: as fast as --in-flight allows).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Publishes per thread not yet received back by that thread's first subscriber.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Room name.
    #[arg(long, default_value = "bench")]
    room: String,
}

/// `idle` and `rooms-idle`.
#[derive(Args, Debug, Clone)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Loopback source addresses to use (127.0.0.1, .2, ...), so C can pass one address's ports.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// Seconds to wait after the last connection opened before reading the server's memory.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Before idling, each connection sends one text message of this many
    /// bytes and waits for its echo (0: none). With `--deflate` against a
    /// `dedicated` server, this makes the server build the connection's
    /// compressor, to measure the memory of a connection in use.
    #[arg(long, default_value_t = 0)]
    hello: usize,
    /// Send the hello compressed (permessage-deflate, 512-byte window,
    /// valid under any limit the server sets), so a `dedicated` server
    /// also builds the connection's inflater. Needs `--deflate`.
    #[arg(long, requires = "deflate")]
    compress_hello: bool,
}

/// Who the room scenarios' connections are.
#[derive(Args, Debug, Clone)]
struct RoomAuth {
    /// The room server's HS256 secret (`auth.hs256_secret`): the generator
    /// mints every connection's token with it and sends it in-band
    /// (`{"type":"auth","token":..}`) after the handshake.
    #[arg(long)]
    secret: String,
    /// User ids are `<prefix><global connection number>`.
    #[arg(long, default_value = "load-")]
    user_prefix: String,
    /// Connections that share one user id (1: a user per connection).
    #[arg(long, default_value_t = 1)]
    conns_per_user: usize,
}

impl RoomAuth {
    fn plan(&self, rooms: Rooms) -> Plan {
        Plan {
            secret: self.secret.clone(),
            user_prefix: self.user_prefix.clone(),
            conns_per_user: self.conns_per_user.max(1),
            rooms,
        }
    }
}

/// Options every scenario has.
#[derive(Args, Debug, Clone)]
struct Common {
    /// Server URL (ws://127.0.0.1:PORT/path); must be a loopback address.
    /// Default: ws://127.0.0.1:9001/, for rooms-* ws://127.0.0.1:8080/ws.
    #[arg(long)]
    url: Option<String>,
    /// More nodes of the same cluster (`broker = "redis"`), same path:
    /// connections go round-robin over --url and these
    /// (`--also-url ws://127.0.0.1:8081/ws --also-url ...`).
    #[arg(long, value_name = "URL")]
    also_url: Vec<String>,
    /// Connections (subscribers for fanout).
    #[arg(long, short = 'c', default_value_t = 100)]
    connections: usize,
    /// Load threads, each with its own event loop.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up after all connections are open, not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// The server's process id: report its CPU and memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// More server processes (the other nodes of a cluster, Redis): their
    /// CPU and memory are added to --server-pid's.
    #[arg(long, value_name = "PID")]
    also_server_pid: Vec<u32>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// For wss:// URLs: trust the certificates in this PEM file (default: accept
    /// any certificate, for self-signed servers on this machine).
    #[arg(long)]
    ca: Option<String>,
    /// Offer permessage-deflate in the handshake (the generator itself sends
    /// uncompressed messages; use with `idle` to measure compression memory).
    #[arg(long)]
    deflate: bool,
    /// Give up if the connections are not all open after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    open_timeout: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.scenario) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgews-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `ws://` or `wss://host:port/path` and insists on a loopback
/// address; `rooms`: the room server's default URL.
fn target(common: &Common, rooms: bool) -> Result<Target, String> {
    let url = match (&common.url, rooms) {
        (Some(url), _) => url.as_str(),
        (None, false) => "ws://127.0.0.1:9001/",
        (None, true) => "ws://127.0.0.1:8080/ws",
    };
    let (rest, secure) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(r), _) => (r, false),
        (_, Some(r)) => (r, true),
        _ => return Err(format!("{url}: the URL must start with ws:// or wss://")),
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport}: no address"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: this tool only loads servers on this machine"
        ));
    }
    let tls = if secure {
        Some(tls::client_config(common.ca.as_deref())?)
    } else {
        None
    };
    let host = hostport
        .rsplit_once(':')
        .map_or(hostport, |(h, _)| h)
        .trim_matches(|c| c == '[' || c == ']');
    let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host}: {e}"))?;
    let extra_headers = if common.deflate {
        vec![(
            "Sec-WebSocket-Extensions".to_owned(),
            "permessage-deflate; client_max_window_bits".to_owned(),
        )]
    } else {
        Vec::new()
    };
    let mut also = Vec::new();
    for u in &common.also_url {
        let hp = u
            .strip_prefix("ws://")
            .or_else(|| u.strip_prefix("wss://"))
            .ok_or_else(|| format!("{u}: the URL must start with ws:// or wss://"))?;
        let hp = hp.split('/').next().unwrap_or(hp);
        let a = hp
            .to_socket_addrs()
            .map_err(|e| format!("{hp}: {e}"))?
            .next()
            .ok_or_else(|| format!("{hp}: no address"))?;
        if !a.ip().is_loopback() {
            return Err(format!("{a} is not a loopback address"));
        }
        also.push(a);
    }
    Ok(Target {
        addr,
        also,
        host: hostport.to_owned(),
        path: path.to_owned(),
        sources: Vec::new(),
        per_source: 1,
        security: client::Security { tls, server_name },
        extra_headers,
    })
}

fn secs_ns(s: f64) -> u64 {
    (s.max(0.0) * 1e9) as u64
}

/// Splits `total` over `threads`: (first index, count) per thread.
fn split(total: usize, threads: usize) -> Vec<(usize, usize)> {
    let threads = threads.max(1);
    (0..threads)
        .map(|t| {
            let first = total * t / threads;
            (first, total * (t + 1) / threads - first)
        })
        .collect()
}

/// Raises the open-files limit to the hard limit; returns it.
fn raise_fd_limit() -> u64 {
    let mut lim = [0u64; 2];
    // Read /proc/self/limits rather than calling setrlimit through unsafe FFI.
    if let Ok(text) = std::fs::read_to_string("/proc/self/limits") {
        if let Some(line) = text.lines().find(|l| l.starts_with("Max open files")) {
            let nums: Vec<u64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if nums.len() >= 2 {
                lim = [nums[0], nums[1]];
            }
        }
    }
    if lim[0] < lim[1] {
        let _ = std::process::Command::new("prlimit")
            .args([
                "--pid",
                &std::process::id().to_string(),
                &format!("--nofile={}:{}", lim[1], lim[1]),
            ])
            .status();
    }
    lim[1]
}

/// Waits until `opened + failed` reaches `want` or the timeout passes.
fn wait_open(shared: &Shared, want: usize, timeout: f64) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs_f64(timeout);
    loop {
        let opened = shared.opened.load(Ordering::Acquire);
        let failed = shared.failed.load(Ordering::Acquire);
        if opened + failed >= want {
            return if failed == 0 {
                Ok(())
            } else {
                Err(format!("{failed} of {want} connections failed to open"))
            };
        }
        if Instant::now() >= end {
            return Err(format!(
                "only {opened} of {want} connections open after {timeout}s"
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Counts opened connections for `Shared` from inside a scenario.
struct Counted<S>(S, Arc<Shared>);

impl<S: runner::Scenario> runner::Scenario for Counted<S> {
    fn on_open(&mut self, io: &mut runner::Io<'_>, id: usize, now: u64) {
        self.1.opened.fetch_add(1, Ordering::AcqRel);
        self.0.on_open(io, id, now);
    }
    fn on_message(&mut self, io: &mut runner::Io<'_>, id: usize, payload: &[u8], now: u64) {
        self.0.on_message(io, id, payload, now);
    }
    fn on_closed(&mut self, id: usize, code: Option<u16>) {
        self.1.failed.fetch_add(1, Ordering::AcqRel);
        self.0.on_closed(id, code);
    }
    fn tick(&mut self, io: &mut runner::Io<'_>, now: u64) -> bool {
        self.0.tick(io, now)
    }
}

fn run(scenario: Scenario) -> Result<(), String> {
    let clock = Instant::now();
    let shared = Arc::new(Shared::default());
    match scenario {
        Scenario::Echo(args) => run_echo(args, None, clock, shared),
        Scenario::RoomsEcho { args, auth } => {
            if args.binary {
                return Err("rooms-echo: the room protocol is JSON text, not binary".into());
            }
            let rooms = Rooms {
                name: "echo".into(),
                per_room: 1,
            };
            run_echo(args, Some(auth.plan(rooms)), clock, shared)
        }
        Scenario::Fanout(args) => run_fanout(args, None, clock, shared),
        Scenario::RoomsFanout { args, auth } => {
            let rooms = Rooms {
                name: args.room.clone(),
                per_room: 0,
            };
            run_fanout(args, Some(auth.plan(rooms)), clock, shared)
        }
        Scenario::Idle(args) => run_idle(args, None, clock, shared),
        Scenario::RoomsIdle {
            args,
            auth,
            members_per_room,
        } => {
            let rooms = Rooms {
                name: "idle".into(),
                per_room: members_per_room.max(1),
            };
            run_idle(args, Some(auth.plan(rooms)), clock, shared)
        }
        Scenario::Connect {
            common,
            concurrency,
        } => {
            let target = target(&common, false)?;
            raise_fd_limit();
            let deadline = clock + Duration::from_secs_f64(common.open_timeout);
            let before = sample_servers(&common);
            let threads: Vec<_> = split(common.connections, common.threads)
                .into_iter()
                .map(|(first, count)| {
                    let (target, shared) = (target.clone(), shared.clone());
                    thread::spawn(move || {
                        let mut c = scenario::connect::Connect::new(count, shared);
                        runner::run(&target, first, count, concurrency, clock, deadline, &mut c)
                            .map(|_| c)
                    })
                })
                .collect();
            let (mut opened, mut failed, mut last) = (0, 0, 0);
            for t in threads {
                let c = t
                    .join()
                    .map_err(|_| "a load thread panicked")?
                    .map_err(|e| e.to_string())?;
                opened += c.opened;
                failed += c.failed;
                last = last.max(c.last_ns);
            }
            let after = sample_servers(&common);
            let secs = last as f64 / 1e9;
            let mut r = Report::default();
            r.set("scenario", "connect");
            r.set("connections", common.connections);
            r.set("opened", opened);
            r.set("failed", failed);
            r.set("seconds", round(secs, 3));
            r.set("handshakes_per_s", round(opened as f64 / secs.max(1e-9), 0));
            r.server(before, after, opened as u64);
            r.print(common.json);
            Ok(())
        }
    }
}

/// The wire a plan implies.
fn wire_of(plan: &Option<Plan>) -> Wire {
    plan.as_ref()
        .map_or(Wire::Plain, |p| Wire::Rooms(p.rooms.clone()))
}

/// A thread's scenario failed to set up: the server's refusal, if it gave one.
fn refusal<S>(sessions: &[Session<S>]) -> Option<String>
where
    S: runner::Scenario,
{
    sessions
        .iter()
        .find_map(|s| s.refused())
        .map(|r| format!("the server refused a connection's set-up: {r}"))
}

/// `echo` and `rooms-echo`.
fn run_echo(
    args: EchoArgs,
    plan: Option<Plan>,
    clock: Instant,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let EchoArgs {
        common,
        size,
        binary,
        in_flight,
        rate,
    } = args;
    let name = if plan.is_some() { "rooms-echo" } else { "echo" };
    let target = target(&common, plan.is_some())?;
    let thread_rate = rate / common.threads.max(1) as f64;
    raise_fd_limit();
    let deadline = clock
        + Duration::from_secs_f64(common.open_timeout + common.warmup + common.duration + 5.0);
    let window_len = secs_ns(common.duration);
    let opts = scenario::echo::Options {
        wire: wire_of(&plan),
        size,
        binary,
        in_flight,
        rate: thread_rate,
    };
    let threads: Vec<_> = split(common.connections, common.threads)
        .into_iter()
        .map(|(first, count)| {
            let (target, shared, opts, plan) =
                (target.clone(), shared.clone(), opts.clone(), plan.clone());
            let warmup = secs_ns(common.warmup);
            thread::spawn(move || {
                let mut echo = scenario::echo::Echo::new(
                    first,
                    count,
                    opts,
                    shared.clone(),
                    warmup,
                    window_len,
                );
                let counted = Counted(&mut echo, shared.clone());
                let mut session = Session::new(counted, plan, first, count, shared);
                let run = runner::run(&target, first, count, 512, clock, deadline, &mut session);
                let refused = refusal(std::slice::from_ref(&session));
                drop(session);
                run.map(|_| (echo, refused))
            })
        })
        .collect();
    let opened = wait_open(&shared, common.connections, common.open_timeout);
    if let Err(e) = opened {
        // Stop the threads and say why the server refused, if it did.
        shared.start_ns.store(1, Ordering::Release);
        let why = threads
            .into_iter()
            .filter_map(|t| t.join().ok()?.ok()?.1)
            .next();
        return Err(why.map_or(e.clone(), |w| format!("{e}; {w}")));
    }
    let start = clock.elapsed().as_nanos() as u64;
    shared.start_ns.store(start, Ordering::Release);
    let window = Window {
        from: start + secs_ns(common.warmup),
        to: start + secs_ns(common.warmup) + window_len,
    };
    let (before, after) = sample_window(&common, clock, window);
    let mut total = scenario::echo::Echo::new(0, 0, opts, shared, 0, 0);
    for t in threads {
        let (e, _) = t
            .join()
            .map_err(|_| "a load thread panicked")?
            .map_err(|e| e.to_string())?;
        total.merge(&e);
    }
    let secs = common.duration;
    let mut r = Report::default();
    r.set("scenario", name);
    r.set("connections", common.connections);
    r.set("size", size);
    r.set("in_flight", in_flight);
    if rate > 0.0 {
        r.set("target_rate", rate);
    }
    r.set("msgs_per_s", round(total.received as f64 / secs, 0));
    r.set("mb_per_s", round(total.bytes as f64 / secs / 1e6, 2));
    r.latency(&total.latency);
    r.server(before, after, total.received);
    r.set("errors", total.closed + total.wrong);
    r.print(common.json);
    Ok(())
}

/// `fanout` and `rooms-fanout`.
fn run_fanout(
    args: FanoutArgs,
    plan: Option<Plan>,
    clock: Instant,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let FanoutArgs {
        common,
        publishers,
        size,
        rate,
        in_flight,
        room,
    } = args;
    let name = if plan.is_some() {
        "rooms-fanout"
    } else {
        "fanout"
    };
    let target = target(&common, plan.is_some())?;
    raise_fd_limit();
    let threads_n = common.threads.max(1);
    let pub_split = split(publishers.max(1), threads_n);
    let deadline = clock
        + Duration::from_secs_f64(common.open_timeout + common.warmup + common.duration + 10.0);
    let wire = wire_of(&plan);
    let threads: Vec<_> = split(common.connections, threads_n)
        .into_iter()
        .zip(pub_split)
        .map(|((first, subs), (first_pub, pubs))| {
            let (target, shared, room) = (target.clone(), shared.clone(), room.clone());
            let (wire, plan) = (wire.clone(), plan.clone());
            let (warmup, duration) = (secs_ns(common.warmup), secs_ns(common.duration));
            let total_pubs = publishers.max(1);
            thread::spawn(move || {
                let layout = scenario::fanout::Layout {
                    subs,
                    pubs,
                    first_pub,
                    total_pubs,
                };
                let mut f = scenario::fanout::Fanout::new(
                    wire,
                    &room,
                    layout,
                    size,
                    rate,
                    in_flight,
                    warmup,
                    duration,
                    shared.clone(),
                );
                let counted = Counted(&mut f, shared.clone());
                let (first, count) = (first + first_pub, subs + pubs);
                let mut session = Session::new(counted, plan, first, count, shared);
                let run = runner::run(&target, first, count, 512, clock, deadline, &mut session);
                let refused = refusal(std::slice::from_ref(&session));
                drop(session);
                run.map(|_| (f, refused))
            })
        })
        .collect();
    let opened = wait_open(
        &shared,
        common.connections + publishers.max(1),
        common.open_timeout,
    );
    if let Err(e) = opened {
        shared.start_ns.store(1, Ordering::Release);
        let why = threads
            .into_iter()
            .filter_map(|t| t.join().ok()?.ok()?.1)
            .next();
        return Err(why.map_or(e.clone(), |w| format!("{e}; {w}")));
    }
    // Everyone subscribed?
    let end = Instant::now() + Duration::from_secs_f64(common.open_timeout);
    while shared.synced.load(Ordering::Acquire) < common.connections {
        if Instant::now() > end {
            return Err(format!(
                "only {} of {} subscribers saw a sync message",
                shared.synced.load(Ordering::Acquire),
                common.connections
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
    let start = clock.elapsed().as_nanos() as u64;
    shared.start_ns.store(start, Ordering::Release);
    let window = Window {
        from: start + secs_ns(common.warmup),
        to: start + secs_ns(common.warmup + common.duration),
    };
    let (before, after) = sample_window(&common, clock, window);
    let mut parts = Vec::new();
    for t in threads {
        parts.push(
            t.join()
                .map_err(|_| "a load thread panicked")?
                .map_err(|e| e.to_string())?
                .0,
        );
    }
    let mut latency = report::histogram();
    let (mut published, mut delivered, mut bytes, mut missing, mut ooo, mut closed) =
        (0, 0, 0, 0, 0, 0);
    for p in &parts {
        latency.add(&p.latency).map_err(|e| e.to_string())?;
        published += p.published;
        delivered += p.delivered;
        bytes += p.delivered_bytes;
        missing += p.missing;
        ooo += p.out_of_order;
        closed += p.closed;
    }
    let secs = common.duration;
    let mut r = Report::default();
    r.set("scenario", name);
    r.set("subscribers", common.connections);
    r.set("publishers", publishers.max(1));
    r.set("size", size);
    r.set("publishes_per_s", round(published as f64 / secs, 0));
    r.set("delivered_per_s", round(delivered as f64 / secs, 0));
    r.set("mb_per_s", round(bytes as f64 / secs / 1e6, 2));
    r.latency(&latency);
    r.server(before, after, delivered);
    r.set("missing", missing);
    r.set("out_of_order", ooo);
    r.set("errors", closed);
    r.print(common.json);
    Ok(())
}

/// `idle` and `rooms-idle`.
fn run_idle(
    args: IdleArgs,
    plan: Option<Plan>,
    clock: Instant,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let IdleArgs {
        common,
        sources,
        settle,
        hello,
        compress_hello,
    } = args;
    let name = if plan.is_some() { "rooms-idle" } else { "idle" };
    let mut target = target(&common, plan.is_some())?;
    let limit = raise_fd_limit();
    if (common.connections as u64) + 64 > limit {
        return Err(format!(
            "{} connections need more open files than this process's hard limit ({limit}); run several processes",
            common.connections
        ));
    }
    target.sources = (1..=sources.max(1))
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect();
    target.per_source = common.connections.div_ceil(target.sources.len()).max(1);
    let before = sample_servers(&common);
    let hold = common.open_timeout + settle + common.duration;
    let deadline = clock + Duration::from_secs_f64(hold);
    let threads: Vec<_> = split(common.connections, common.threads)
        .into_iter()
        .map(|(first, count)| {
            let (target, shared, plan) = (target.clone(), shared.clone(), plan.clone());
            thread::spawn(move || {
                let idle = scenario::idle::Idle::new(shared.clone(), hello, compress_hello);
                let mut session = Session::new(idle, plan, first, count, shared);
                let run = runner::run(&target, first, count, 256, clock, deadline, &mut session);
                run.map(|_| refusal(std::slice::from_ref(&session)))
            })
        })
        .collect();
    let opened = wait_open(&shared, common.connections, common.open_timeout);
    thread::sleep(Duration::from_secs_f64(settle));
    let after = sample_servers(&common);
    let n = shared.opened.load(Ordering::Acquire);
    let mut r = Report::default();
    r.set("scenario", name);
    r.set("connections", n);
    if let (Some(b), Some(a)) = (before, after) {
        r.set("server_rss_before_bytes", b.rss_bytes);
        r.set("server_rss_after_bytes", a.rss_bytes);
        let per = (a.rss_bytes as f64 - b.rss_bytes as f64) / n.max(1) as f64;
        r.set("server_rss_per_conn_bytes", round(per, 1));
        // Without the binary's code pages that the connections' set-up
        // faulted in for the first time (a fixed cost, not per connection).
        let anon = (a.anon_bytes as f64 - b.anon_bytes as f64) / n.max(1) as f64;
        r.set("server_anon_per_conn_bytes", round(anon, 1));
    }
    r.set("failed", shared.failed.load(Ordering::Acquire));
    r.print(common.json);
    // Hold the connections for the duration, then let the threads go.
    thread::sleep(Duration::from_secs_f64(common.duration.max(0.0)));
    shared.start_ns.store(1, Ordering::Release);
    let mut why = None;
    for t in threads {
        if let Ok(Ok(Some(r))) = t.join() {
            why.get_or_insert(r);
        }
    }
    opened.map_err(|e| why.map_or(e.clone(), |w| format!("{e}; {w}")))
}

/// The server's CPU and memory: --server-pid plus every --also-server-pid.
fn sample_servers(common: &Common) -> Option<report::ProcSample> {
    let mut total = sample(common.server_pid?)?;
    for pid in &common.also_server_pid {
        let s = sample(*pid)?;
        total.cpu_secs += s.cpu_secs;
        total.rss_bytes += s.rss_bytes;
        total.anon_bytes += s.anon_bytes;
    }
    Some(total)
}

/// Sleeps until the window opens and closes, sampling the server at both ends.
fn sample_window(
    common: &Common,
    clock: Instant,
    window: Window,
) -> (Option<report::ProcSample>, Option<report::ProcSample>) {
    let until = |ns: u64| {
        let now = clock.elapsed().as_nanos() as u64;
        if ns > now {
            thread::sleep(Duration::from_nanos(ns - now));
        }
    };
    until(window.from);
    let before = sample_servers(common);
    until(window.to);
    let after = sample_servers(common);
    (before, after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(url: &str) -> Common {
        match Cli::parse_from(["edgews-load", "echo", "--url", url]).scenario {
            Scenario::Echo(args) => args.common,
            _ => unreachable!("an echo command line"),
        }
    }

    fn target_of(c: &Common) -> Result<Target, String> {
        target(c, false)
    }

    #[test]
    fn urls_must_be_loopback() {
        let t = target_of(&common("ws://127.0.0.1:9001/chat")).unwrap();
        assert_eq!(
            (t.addr.port(), t.path.as_str(), t.host.as_str()),
            (9001, "/chat", "127.0.0.1:9001")
        );
        assert!(t.security.tls.is_none());
        assert_eq!(target_of(&common("ws://127.0.0.1:80")).unwrap().path, "/");
        assert!(target_of(&common("ws://10.0.0.1:9001/"))
            .unwrap_err()
            .contains("loopback"));
        assert!(target_of(&common("wss://127.0.0.1:9001/"))
            .unwrap()
            .security
            .tls
            .is_some());
        assert!(target_of(&common("http://127.0.0.1:9001/")).is_err());
    }

    #[test]
    fn work_is_split_evenly() {
        assert_eq!(split(10, 3), [(0, 3), (3, 3), (6, 4)]);
        assert_eq!(split(1, 2), [(0, 0), (0, 1)]);
        let total: usize = split(15_000, 7).iter().map(|p| p.1).sum();
        assert_eq!(total, 15_000);
    }
}
