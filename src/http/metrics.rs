//! `/metrics`: the workers' counters in the Prometheus text format (0.0.4).
//!
//! Each worker writes only its own counters; this sums them at scrape time
//! and also shows a few per worker (label `worker`).

use std::fmt::Write;

use crate::runtime::stats::{RejectReason, WorkerStats, CLOSE_CODE_SLOTS, DURATION_BUCKETS_SECS};
use crate::runtime::ServerHandle;

/// Writes `# HELP` and `# TYPE` for one metric.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric without labels, summed over workers.
fn total(
    out: &mut String,
    stats: &[std::sync::Arc<WorkerStats>],
    name: &str,
    kind: &str,
    help: &str,
    f: impl Fn(&WorkerStats) -> u64,
) {
    head(out, name, kind, help);
    let _ = writeln!(out, "{name} {}", stats.iter().map(|s| f(s)).sum::<u64>());
}

/// A metric with a total and one series per worker.
fn per_worker(
    out: &mut String,
    stats: &[std::sync::Arc<WorkerStats>],
    name: &str,
    kind: &str,
    help: &str,
    f: impl Fn(&WorkerStats) -> u64,
) {
    head(out, name, kind, help);
    for (i, s) in stats.iter().enumerate() {
        let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {}", f(s));
    }
}

/// The label value of a close-code slot.
fn code_label(slot: usize) -> String {
    if slot + 1 == CLOSE_CODE_SLOTS {
        "other".into()
    } else {
        (1000 + slot).to_string()
    }
}

/// Renders every metric.
pub(crate) fn render(handle: &ServerHandle) -> String {
    let stats = handle.worker_stats();
    let mut out = String::with_capacity(8 << 10);
    head(&mut out, "edgews_info", "gauge", "Build information.");
    let _ = writeln!(
        out,
        "edgews_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    head(
        &mut out,
        "edgews_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    let _ = writeln!(
        out,
        "edgews_uptime_seconds {:.3}",
        handle.uptime().as_secs_f64()
    );

    let s = stats;
    total(
        &mut out,
        s,
        "edgews_connections_open",
        "gauge",
        "Open connections (any phase).",
        |w| w.connections_open.get(),
    );
    per_worker(
        &mut out,
        s,
        "edgews_worker_connections_open",
        "gauge",
        "Open connections per worker.",
        |w| w.connections_open.get(),
    );
    total(
        &mut out,
        s,
        "edgews_connections_accepted_total",
        "counter",
        "TCP connections accepted.",
        |w| w.connections_accepted.get(),
    );
    total(
        &mut out,
        s,
        "edgews_upgrades_total",
        "counter",
        "WebSocket upgrades completed.",
        |w| w.upgrades.get(),
    );
    total(
        &mut out,
        s,
        "edgews_http_requests_total",
        "counter",
        "Plain HTTP requests answered on the WebSocket port.",
        |w| w.http_requests.get(),
    );

    head(
        &mut out,
        "edgews_handshakes_rejected_total",
        "counter",
        "Refused upgrades, by reason.",
    );
    for r in RejectReason::ALL {
        let n: u64 = s.iter().map(|w| w.rejected[r as usize].get()).sum();
        let _ = writeln!(
            out,
            "edgews_handshakes_rejected_total{{reason=\"{}\"}} {n}",
            r.label()
        );
    }

    total(
        &mut out,
        s,
        "edgews_messages_received_total",
        "counter",
        "Data messages received.",
        |w| w.messages_in.get(),
    );
    per_worker(
        &mut out,
        s,
        "edgews_worker_messages_received_total",
        "counter",
        "Data messages received per worker.",
        |w| w.messages_in.get(),
    );
    total(
        &mut out,
        s,
        "edgews_message_bytes_received_total",
        "counter",
        "Payload bytes of data messages received.",
        |w| w.message_bytes_in.get(),
    );
    total(
        &mut out,
        s,
        "edgews_messages_sent_total",
        "counter",
        "Data messages queued for sending (one per recipient).",
        |w| w.messages_out.get(),
    );
    per_worker(
        &mut out,
        s,
        "edgews_worker_messages_sent_total",
        "counter",
        "Data messages queued per worker.",
        |w| w.messages_out.get(),
    );
    total(
        &mut out,
        s,
        "edgews_bytes_received_total",
        "counter",
        "Bytes read from sockets.",
        |w| w.bytes_in.get(),
    );
    total(
        &mut out,
        s,
        "edgews_bytes_sent_total",
        "counter",
        "Bytes written to sockets.",
        |w| w.bytes_out.get(),
    );

    head(
        &mut out,
        "edgews_data_messages_received_total",
        "counter",
        "Data messages received, by opcode of their first frame.",
    );
    for (i, op) in [(1, "text"), (2, "binary")] {
        let n: u64 = s.iter().map(|w| w.frames_in[i].get()).sum();
        let _ = writeln!(
            out,
            "edgews_data_messages_received_total{{opcode=\"{op}\"}} {n}"
        );
    }
    head(
        &mut out,
        "edgews_control_frames_received_total",
        "counter",
        "Control frames received, by opcode (data frames are counted as messages).",
    );
    for (i, op) in [(3, "close"), (4, "ping"), (5, "pong")] {
        let n: u64 = s.iter().map(|w| w.frames_in[i].get()).sum();
        let _ = writeln!(
            out,
            "edgews_control_frames_received_total{{opcode=\"{op}\"}} {n}"
        );
    }
    for (name, help, pick) in [
        (
            "edgews_close_codes_sent_total",
            "Close frames sent, by code.",
            true,
        ),
        (
            "edgews_close_codes_received_total",
            "Close frames received, by code.",
            false,
        ),
    ] {
        head(&mut out, name, "counter", help);
        for slot in 0..CLOSE_CODE_SLOTS {
            let n: u64 = s
                .iter()
                .map(|w| {
                    if pick {
                        w.closes_sent[slot].get()
                    } else {
                        w.closes_received[slot].get()
                    }
                })
                .sum();
            if n > 0 || slot == 0 {
                let _ = writeln!(out, "{name}{{code=\"{}\"}} {n}", code_label(slot));
            }
        }
    }
    total(
        &mut out,
        s,
        "edgews_protocol_errors_total",
        "counter",
        "Connections failed for breaking the protocol.",
        |w| w.protocol_errors.get(),
    );
    total(
        &mut out,
        s,
        "edgews_idle_timeouts_total",
        "counter",
        "Connections closed for silence (idle timeout or no pong).",
        |w| w.idle_timeouts.get(),
    );
    total(
        &mut out,
        s,
        "edgews_pings_sent_total",
        "counter",
        "Pings sent by the server.",
        |w| w.pings_sent.get(),
    );
    total(
        &mut out,
        s,
        "edgews_queue_limit_closes_total",
        "counter",
        "Connections closed for passing the hard send-queue limit.",
        |w| w.queue_limit_closes.get(),
    );
    total(
        &mut out,
        s,
        "edgews_input_budget_closes_total",
        "counter",
        "Connections closed (1013) for passing the worker's buffered-input budget.",
        |w| w.input_budget_closes.get(),
    );
    total(
        &mut out,
        s,
        "edgews_buffered_input_bytes",
        "gauge",
        "Bytes of partial messages, inflation in progress and split request heads held.",
        |w| w.buffered_input_bytes.get(),
    );
    total(
        &mut out,
        s,
        "edgews_slow_consumer_drops_total",
        "counter",
        "Room messages dropped for members over the backpressure limit.",
        |w| w.slow_consumer_drops.get(),
    );
    total(
        &mut out,
        s,
        "edgews_slow_consumer_closes_total",
        "counter",
        "Members closed as slow consumers.",
        |w| w.slow_consumer_closes.get(),
    );
    total(
        &mut out,
        s,
        "edgews_rooms",
        "gauge",
        "Rooms with members (summed over workers; a room on two workers counts twice).",
        |w| w.rooms.get(),
    );
    total(
        &mut out,
        s,
        "edgews_subscriptions",
        "gauge",
        "Room memberships.",
        |w| w.subscriptions.get(),
    );
    total(
        &mut out,
        s,
        "edgews_publishes_total",
        "counter",
        "Messages published to rooms.",
        |w| w.publishes.get(),
    );

    let name = "edgews_connection_duration_seconds";
    head(
        &mut out,
        name,
        "histogram",
        "Lifetime of closed connections.",
    );
    let mut cumulative = 0u64;
    for (i, le) in DURATION_BUCKETS_SECS.iter().enumerate() {
        cumulative += s.iter().map(|w| w.duration_buckets[i].get()).sum::<u64>();
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    cumulative += s
        .iter()
        .map(|w| w.duration_buckets[DURATION_BUCKETS_SECS.len()].get())
        .sum::<u64>();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let sum_ms: u64 = s.iter().map(|w| w.duration_sum_ms.get()).sum();
    let _ = writeln!(out, "{name}_sum {:.3}", sum_ms as f64 / 1000.0);
    let _ = writeln!(out, "{name}_count {cumulative}");
    if let Some(app) = &handle.config().app_status {
        app.metrics(&mut out);
    }
    out
}
