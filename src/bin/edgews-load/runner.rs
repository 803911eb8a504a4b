//! The event loop of one load thread: opens connections (a bounded number of
//! handshakes at a time), hands messages to the scenario straight from the
//! loop's read buffer, and writes each connection's output once per turn.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use edgews::protocol::{Client, Encoder, OpCode};
use mio::{Events, Interest, Poll, Token};

use crate::client::{Conn, Incoming, Out, Security, State};

/// What a scenario does with its connections (ids are local to the thread).
pub trait Scenario {
    /// Connection `id` completed its handshake.
    fn on_open(&mut self, io: &mut Io<'_>, id: usize, now: u64);
    /// A data message arrived on `id` (borrowed from the read buffer).
    fn on_message(&mut self, io: &mut Io<'_>, id: usize, payload: &[u8], now: u64);
    /// Connection `id` ended (`code`: the server's close code, if it sent one).
    fn on_closed(&mut self, id: usize, code: Option<u16>);
    /// Called every loop turn; returns false to stop the loop.
    fn tick(&mut self, io: &mut Io<'_>, now: u64) -> bool;
}

impl<S: Scenario> Scenario for &mut S {
    fn on_open(&mut self, io: &mut Io<'_>, id: usize, now: u64) {
        (**self).on_open(io, id, now);
    }
    fn on_message(&mut self, io: &mut Io<'_>, id: usize, payload: &[u8], now: u64) {
        (**self).on_message(io, id, payload, now);
    }
    fn on_closed(&mut self, id: usize, code: Option<u16>) {
        (**self).on_closed(id, code);
    }
    fn tick(&mut self, io: &mut Io<'_>, now: u64) -> bool {
        (**self).tick(io, now)
    }
}

/// The sending side handed to scenarios.
pub struct Io<'a> {
    outs: &'a mut [Out],
    enc: &'a mut Encoder<Client>,
    dirty: &'a mut Vec<usize>,
}

impl Io<'_> {
    /// Queues a message on `id` (written at the end of the turn).
    pub fn send(&mut self, id: usize, opcode: OpCode, payload: &[u8]) {
        self.send_with(id, opcode, false, payload);
    }

    /// Queues a message whose payload is already compressed when
    /// `compressed` (RSV1 set; permessage-deflate must have been agreed).
    pub fn send_with(&mut self, id: usize, opcode: OpCode, compressed: bool, payload: &[u8]) {
        let out = &mut self.outs[id];
        if out.open {
            if !out.wants_write() {
                self.dirty.push(id);
            }
            out.send_with(self.enc, opcode, compressed, payload);
        }
    }
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// More nodes: connection `i` goes to `[addr, also..][i % (1 + also.len())]`.
    pub also: Vec<SocketAddr>,
    pub host: String,
    pub path: String,
    /// Source addresses to spread connections over (empty: the default one).
    pub sources: Vec<IpAddr>,
    /// Connections per source address before moving to the next.
    pub per_source: usize,
    /// Plain or TLS.
    pub security: Security,
    /// Extra request headers (e.g. a permessage-deflate offer).
    pub extra_headers: Vec<(String, String)>,
}

/// Runs `scenario` over `count` connections (local ids `0..count`, global
/// ids from `first_id`), at most `max_pending` handshakes at a time, until
/// it says stop or `deadline` passes. `clock` is the shared time base: the
/// scenario gets nanoseconds since it.
#[allow(clippy::too_many_arguments)]
pub fn run<S: Scenario>(
    target: &Target,
    first_id: usize,
    count: usize,
    max_pending: usize,
    clock: Instant,
    deadline: Instant,
    scenario: &mut S,
) -> std::io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<Conn>> = (0..count).map(|_| None).collect();
    let mut outs: Vec<Out> = (0..count).map(|_| Out::default()).collect();
    let mut enc = Encoder::<Client>::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut dirty = Vec::new();
    let (mut next, mut pending) = (0usize, 0usize);
    loop {
        while next < count && pending < max_pending {
            let global = first_id + next;
            let from = (!target.sources.is_empty()).then(|| {
                target.sources[(global / target.per_source.max(1)) % target.sources.len()]
            });
            let addr = match global % (1 + target.also.len()) {
                0 => target.addr,
                i => target.also[i - 1],
            };
            match Conn::connect(addr, from, &target.security) {
                Ok(mut c) => {
                    poll.registry().register(
                        &mut c.sock,
                        Token(next),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    conns[next] = Some(c);
                    pending += 1;
                }
                Err(_) => scenario.on_closed(next, None),
            }
            next += 1;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        poll.poll(&mut events, Some(Duration::from_millis(1).min(left)))?;
        let now = clock.elapsed().as_nanos() as u64;
        for ev in events.iter() {
            let id = ev.token().0;
            let Some(conn) = conns[id].as_mut() else {
                continue;
            };
            let was_open = conn.state == State::Open;
            let mut alive = true;
            let mut closed_code = None;
            if ev.is_writable() || ev.is_error() {
                if conn.state == State::Connecting {
                    let extra: Vec<(&str, &str)> = target
                        .extra_headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    match conn.on_connected(&target.host, &target.path, &extra, &mut outs[id]) {
                        Ok(true) => dirty.push(id),
                        Ok(false) => {}
                        Err(_) => alive = false,
                    }
                }
                if alive && (outs[id].wants_write() || conn.tls_pending()) {
                    alive = conn.flush(&mut outs[id]).is_ok();
                }
            }
            if alive && (ev.is_readable() || ev.is_read_closed()) && conn.state != State::Connecting
            {
                alive = conn.read(&mut buf, |inc| {
                    let mut io = Io {
                        outs: &mut outs,
                        enc: &mut enc,
                        dirty: &mut dirty,
                    };
                    match inc {
                        Incoming::Opened => {
                            io.outs[id].open = true;
                            pending -= 1;
                            scenario.on_open(&mut io, id, now);
                        }
                        Incoming::Message(m) => scenario.on_message(&mut io, id, m, now),
                        Incoming::Closed(code) => closed_code = Some(code),
                    }
                });
            }
            if !alive {
                if let Some(mut c) = conns[id].take() {
                    if !was_open && c.state != State::Open {
                        pending -= 1;
                    }
                    let _ = poll.registry().deregister(&mut c.sock);
                }
                outs[id].open = false;
                scenario.on_closed(id, closed_code);
            }
        }
        let mut io = Io {
            outs: &mut outs,
            enc: &mut enc,
            dirty: &mut dirty,
        };
        if !scenario.tick(&mut io, now) {
            return Ok(());
        }
        for id in dirty.drain(..) {
            if let Some(c) = conns[id].as_mut() {
                if c.flush(&mut outs[id]).is_err() {
                    conns[id] = None;
                    outs[id].open = false;
                    scenario.on_closed(id, None);
                }
            }
        }
    }
}
