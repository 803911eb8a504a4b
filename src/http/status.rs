//! `/status`: the same figures as `/metrics` as one JSON document, with
//! uptime, version and the configured limits.

use serde_json::{json, Map, Value};

use crate::runtime::stats::{RejectReason, WorkerStats, CLOSE_CODE_SLOTS};
use crate::runtime::{Compression, ServerHandle, SlowConsumerPolicy};

fn counters(w: &WorkerStats) -> Value {
    let rejected: Map<String, Value> = RejectReason::ALL
        .iter()
        .map(|r| (r.label().to_owned(), json!(w.rejected[*r as usize].get())))
        .collect();
    let codes = |f: &dyn Fn(usize) -> u64| -> Map<String, Value> {
        (0..CLOSE_CODE_SLOTS)
            .filter(|&i| f(i) > 0)
            .map(|i| {
                let label = if i + 1 == CLOSE_CODE_SLOTS {
                    "other".into()
                } else {
                    (1000 + i).to_string()
                };
                (label, json!(f(i)))
            })
            .collect()
    };
    json!({
        "connections_open": w.connections_open.get(),
        "connections_accepted": w.connections_accepted.get(),
        "upgrades": w.upgrades.get(),
        "http_requests": w.http_requests.get(),
        "handshakes_rejected": rejected,
        "messages_received": w.messages_in.get(),
        "message_bytes_received": w.message_bytes_in.get(),
        "messages_sent": w.messages_out.get(),
        "bytes_received": w.bytes_in.get(),
        "bytes_sent": w.bytes_out.get(),
        "data_messages_received": { "text": w.frames_in[1].get(), "binary": w.frames_in[2].get() },
        "control_frames_received": {
            "close": w.frames_in[3].get(), "ping": w.frames_in[4].get(), "pong": w.frames_in[5].get(),
        },
        "close_codes_sent": codes(&|i| w.closes_sent[i].get()),
        "close_codes_received": codes(&|i| w.closes_received[i].get()),
        "protocol_errors": w.protocol_errors.get(),
        "idle_timeouts": w.idle_timeouts.get(),
        "pings_sent": w.pings_sent.get(),
        "queue_limit_closes": w.queue_limit_closes.get(),
        "input_budget_closes": w.input_budget_closes.get(),
        "buffered_input_bytes": w.buffered_input_bytes.get(),
        "slow_consumer_drops": w.slow_consumer_drops.get(),
        "slow_consumer_closes": w.slow_consumer_closes.get(),
        "rooms": w.rooms.get(),
        "subscriptions": w.subscriptions.get(),
        "publishes": w.publishes.get(),
    })
}

/// Adds `b`'s numbers into `a` (same shape).
fn add(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(x) => add(x, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            *x = (x.as_u64().unwrap_or(0) + y.as_u64().unwrap_or(0)).into();
        }
        _ => {}
    }
}

/// Renders the status document.
pub(crate) fn render(handle: &ServerHandle) -> String {
    let workers: Vec<Value> = handle.worker_stats().iter().map(|w| counters(w)).collect();
    let mut totals = json!({});
    for w in &workers {
        add(&mut totals, w);
    }
    let c = handle.config();
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let compression = match c.compression {
        Compression::Off => json!("off"),
        Compression::Shared => json!("shared"),
        Compression::Dedicated {
            compressor,
            decompressor,
        } => json!({ "dedicated": {
            "compressor": { "window_bits": compressor.window_bits, "mem_level": compressor.mem_level },
            "decompressor": { "window_bits": decompressor.window_bits },
        } }),
    };
    let doc = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": handle.uptime().as_secs_f64(),
        "shutting_down": handle.is_shutting_down(),
        "connections": handle.connections(),
        "config": {
            "listen": handle.local_addr().to_string(),
            "workers": c.workers,
            "max_message_bytes": c.max_message_bytes,
            "max_header_bytes": c.max_header_bytes,
            "max_buffered_input_bytes_per_worker": c.buffered_input_budget(),
            "backpressure_bytes": c.backpressure_bytes,
            "max_queued_bytes": c.max_queued_bytes,
            "slow_consumer": match c.slow_consumer {
                SlowConsumerPolicy::Close => "close",
                _ => "drop",
            },
            "max_connections": c.max_connections,
            "handshake_timeout_ms": ms(c.handshake_timeout),
            "idle_timeout_ms": c.idle_timeout.map(ms),
            "ping_interval_ms": c.ping_interval.map(ms),
            "close_timeout_ms": ms(c.close_timeout),
            "shutdown_timeout_ms": ms(c.shutdown_timeout),
            "compression": compression,
            "compression_threshold_bytes": c.compression_threshold_bytes,
            "tls": c.tls.is_some(),
            "admin_listen": c.admin_listen.map(|a| a.to_string()),
        },
        "totals": totals,
        "workers": workers,
    });
    let mut doc = doc;
    if let Some(app) = handle.config().app_status.as_ref().and_then(|a| a.status()) {
        doc["app"] = app;
    }
    let mut text = doc.to_string();
    text.push('\n');
    text
}
