//! Per-worker counters. Each worker writes only its own set (a plain load and
//! store, no locked read-modify-write on the hot path); readers on any thread
//! sum the workers' sets when they scrape.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::protocol::CloseCode;

/// A monotonically increasing count, written by one thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (only ever called by the owning worker).
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Adds one.
    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down, written by one thread.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    #[inline]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Why an upgrade was refused (metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// Unparseable HTTP.
    Malformed,
    /// Request head over the size limit or too many headers (431).
    HeadersTooLarge,
    /// Not a GET.
    Method,
    /// HTTP/1.0.
    HttpVersion,
    /// No Host header.
    MissingHost,
    /// No `Connection: Upgrade`.
    ConnectionHeader,
    /// Wrong `Sec-WebSocket-Version` (426).
    WsVersion,
    /// Missing or bad `Sec-WebSocket-Key`.
    WsKey,
    /// The handler's `on_upgrade` refused it.
    Handler,
    /// The request did not arrive within the handshake timeout.
    Timeout,
    /// Over `max_connections`.
    ConnectionLimit,
    /// Over `max_connections_per_ip` (at accept, or at the upgrade for a
    /// client behind a trusted proxy).
    IpLimit,
}

impl RejectReason {
    /// Every reason, in index order.
    pub const ALL: [RejectReason; 12] = [
        RejectReason::Malformed,
        RejectReason::HeadersTooLarge,
        RejectReason::Method,
        RejectReason::HttpVersion,
        RejectReason::MissingHost,
        RejectReason::ConnectionHeader,
        RejectReason::WsVersion,
        RejectReason::WsKey,
        RejectReason::Handler,
        RejectReason::Timeout,
        RejectReason::ConnectionLimit,
        RejectReason::IpLimit,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::HeadersTooLarge => "headers_too_large",
            RejectReason::Method => "method",
            RejectReason::HttpVersion => "http_version",
            RejectReason::MissingHost => "missing_host",
            RejectReason::ConnectionHeader => "connection_header",
            RejectReason::WsVersion => "ws_version",
            RejectReason::WsKey => "ws_key",
            RejectReason::Handler => "handler",
            RejectReason::Timeout => "timeout",
            RejectReason::ConnectionLimit => "connection_limit",
            RejectReason::IpLimit => "ip_limit",
        }
    }

    pub(crate) fn from_label(label: &str) -> RejectReason {
        Self::ALL
            .into_iter()
            .find(|r| r.label() == label)
            .unwrap_or(RejectReason::Malformed)
    }
}

/// Close codes counted one by one: 1000–1015; everything else is "other".
pub const CLOSE_CODE_SLOTS: usize = 17;

/// The counter slot of a close code.
pub fn close_code_slot(code: CloseCode) -> usize {
    match code.get() {
        c @ 1000..=1015 => usize::from(c - 1000),
        _ => CLOSE_CODE_SLOTS - 1,
    }
}

/// Upper bounds (seconds) of the connection-duration histogram buckets.
pub const DURATION_BUCKETS_SECS: [u64; 8] = [1, 5, 30, 60, 300, 1800, 3600, 86400];

/// The counters of one worker.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Open connections (any phase).
    pub connections_open: Gauge,
    /// Connections accepted since start.
    pub connections_accepted: Counter,
    /// Upgrades completed since start.
    pub upgrades: Counter,
    /// Plain HTTP requests answered.
    pub http_requests: Counter,
    /// Refused upgrades, by [`RejectReason`] index.
    pub rejected: [Counter; RejectReason::ALL.len()],
    /// Data messages received.
    pub messages_in: Counter,
    /// Payload bytes of data messages received.
    pub message_bytes_in: Counter,
    /// Data messages queued for sending (one per recipient).
    pub messages_out: Counter,
    /// Bytes read from sockets.
    pub bytes_in: Counter,
    /// Bytes written to sockets.
    pub bytes_out: Counter,
    /// Received by opcode: data messages (continuation, unused; text;
    /// binary), then control frames (close, ping, pong).
    pub frames_in: [Counter; 6],
    /// Close frames sent, by [`close_code_slot`].
    pub closes_sent: [Counter; CLOSE_CODE_SLOTS],
    /// Close frames received, by [`close_code_slot`].
    pub closes_received: [Counter; CLOSE_CODE_SLOTS],
    /// Protocol errors that failed a connection.
    pub protocol_errors: Counter,
    /// Connections closed for silence (idle timeout, no pong).
    pub idle_timeouts: Counter,
    /// Pings sent by the server.
    pub pings_sent: Counter,
    /// Connections closed for passing `max_queued_bytes`.
    pub queue_limit_closes: Counter,
    /// Connections closed (1013) because their input would have pushed the
    /// worker past its buffered-input budget.
    pub input_budget_closes: Counter,
    /// Bytes of buffered input held now (partial messages, inflation in
    /// progress, split request heads).
    pub buffered_input_bytes: Gauge,
    /// Room messages dropped for slow consumers.
    pub slow_consumer_drops: Counter,
    /// Connections closed as slow consumers.
    pub slow_consumer_closes: Counter,
    /// Rooms with members on this worker.
    pub rooms: Gauge,
    /// Room memberships on this worker.
    pub subscriptions: Gauge,
    /// Messages published (from this worker, once per publish).
    pub publishes: Counter,
    /// Connection lifetimes: counts per bucket of [`DURATION_BUCKETS_SECS`], then +Inf.
    pub duration_buckets: [Counter; 9],
    /// Sum of connection lifetimes in milliseconds.
    pub duration_sum_ms: Counter,
}

impl WorkerStats {
    pub(crate) fn record_duration(&self, ms: u64) {
        let secs = ms / 1000;
        let idx = DURATION_BUCKETS_SECS
            .iter()
            .position(|&b| secs < b)
            .unwrap_or(DURATION_BUCKETS_SECS.len());
        self.duration_buckets[idx].inc();
        self.duration_sum_ms.add(ms);
    }

    /// Counts a received data message (also by type).
    #[inline]
    pub(crate) fn message_in(&self, msg: &crate::protocol::Message<'_>) {
        self.messages_in.inc();
        self.frame_in(msg.opcode());
    }

    pub(crate) fn frame_in(&self, opcode: crate::protocol::OpCode) {
        use crate::protocol::OpCode::*;
        let i = match opcode {
            Continuation => 0,
            Text => 1,
            Binary => 2,
            Close => 3,
            Ping => 4,
            Pong => 5,
        };
        self.frames_in[i].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_slots() {
        let s = WorkerStats::default();
        s.messages_in.add(3);
        s.messages_in.inc();
        assert_eq!(s.messages_in.get(), 4);
        assert_eq!(close_code_slot(CloseCode::NORMAL), 0);
        assert_eq!(close_code_slot(CloseCode::new(1015)), 15);
        assert_eq!(close_code_slot(CloseCode::new(4000)), 16);
        s.record_duration(500);
        s.record_duration(7_000);
        s.record_duration(100_000_000);
        assert_eq!(s.duration_buckets[0].get(), 1);
        assert_eq!(s.duration_buckets[2].get(), 1);
        assert_eq!(s.duration_buckets[8].get(), 1);
        for r in RejectReason::ALL {
            assert_eq!(RejectReason::from_label(r.label()), r);
        }
    }
}
