//! The room server's observability: its counters (per worker, written only
//! by their worker), `/metrics` lines, the `/status` addition, and
//! `/api/websocket/status`.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::json;

use crate::runtime::stats::Counter;
use crate::runtime::{AppStatus, ServerHandle};

use super::codes::ErrorCode;
use super::server::Shared;
use super::wire::TYPES;

/// Why authentication failed, for `edgews_rooms_auth_failures_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Bad signature, malformed, wrong issuer/audience, ...
    Invalid = 0,
    /// Expired (at upgrade, in `auth`, or by the 4003 close).
    Expired = 1,
    /// No `auth` within the timeout.
    Timeout = 2,
}

const AUTH_FAILURES: [&str; 3] = ["invalid", "expired", "timeout"];

/// One worker's room-server counters.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Requests by type (index of [`TYPES`]).
    pub requests: [Counter; TYPES.len()],
    /// Messages that were not a valid request.
    pub invalid: Counter,
    /// Error replies by code (index of [`ErrorCode::ALL`]).
    pub errors: [Counter; ErrorCode::ALL.len()],
    /// Authentication failures by reason.
    pub auth_failures: [Counter; 3],
    /// Connections closed with 4008 for rate-limit abuse.
    pub rate_limit_closes: Counter,
    /// Connections closed with 4003 (token expired).
    pub expired_closes: Counter,
    /// Upgrades refused for their `Origin`.
    pub origin_rejected: Counter,
    /// Room messages published.
    pub room_messages: Counter,
    /// Private messages delivered (one per receiving connection).
    pub private_deliveries: Counter,
    /// Joins with `since` that recovered (`recovered: true`).
    pub recoveries: Counter,
}

impl WorkerMetrics {
    /// Counts an error reply.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].inc();
        }
    }
}

/// The room server's part of `/healthz`, `/metrics` and `/status`.
#[derive(Debug)]
pub(crate) struct RoomStatus(pub Arc<Shared>);

fn sum(shared: &Shared, f: impl Fn(&WorkerMetrics) -> u64) -> u64 {
    shared.metrics.iter().map(f).sum()
}

impl AppStatus for RoomStatus {
    fn metrics(&self, out: &mut String) {
        let s = &self.0;
        let mut head = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            name.to_owned()
        };
        let mut lines = String::new();
        let n = head(
            "edgews_rooms_requests_total",
            "counter",
            "Client requests by type.",
        );
        for (i, t) in TYPES.iter().enumerate() {
            let _ = writeln!(
                lines,
                "{n}{{type=\"{t}\"}} {}",
                sum(s, |w| w.requests[i].get())
            );
        }
        let _ = writeln!(
            lines,
            "{n}{{type=\"invalid\"}} {}",
            sum(s, |w| w.invalid.get())
        );
        out.push_str(&lines);
        lines.clear();
        let mut head = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            name.to_owned()
        };
        let n = head(
            "edgews_rooms_errors_total",
            "counter",
            "Error replies by code (rate_limited, room_full, too_many_rooms, ... are limits hit).",
        );
        let _ = n;
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "edgews_rooms_errors_total{{code=\"{}\"}} {}",
                c.as_str(),
                sum(s, |w| w.errors[i].get())
            );
        }
        let simple: [(&str, &str, &str, u64); 10] = [
            ("edgews_rooms_rate_limit_closes_total", "counter", "Connections closed with 4008 for rate-limit abuse.", sum(s, |w| w.rate_limit_closes.get())),
            ("edgews_rooms_token_expired_closes_total", "counter", "Connections closed with 4003 because their token expired.", sum(s, |w| w.expired_closes.get())),
            ("edgews_rooms_origin_rejected_total", "counter", "Upgrades refused with 403 for their Origin.", sum(s, |w| w.origin_rejected.get())),
            ("edgews_rooms_room_messages_total", "counter", "Room messages published.", sum(s, |w| w.room_messages.get())),
            ("edgews_rooms_private_deliveries_total", "counter", "Private messages delivered, one per receiving connection.", sum(s, |w| w.private_deliveries.get())),
            ("edgews_rooms_recoveries_total", "counter", "Joins with `since` answered `recovered: true`.", sum(s, |w| w.recoveries.get())),
            ("edgews_rooms_users_online", "gauge", "Users with at least one authenticated connection.", s.dir.users_online() as u64),
            ("edgews_rooms_rooms", "gauge", "Rooms with at least one member.", s.dir.rooms_open() as u64),
            ("edgews_rooms_connections_per_ip_limit", "gauge", "The configured max_connections_per_ip (0: none); refusals are edgews_handshakes_rejected_total{reason=\"ip_limit\"}.", s.cfg.max_connections_per_ip as u64),
            ("edgews_rooms_max_members_per_room", "gauge", "The configured max_members_per_room (0: unlimited).", s.cfg.max_members_per_room as u64),
        ];
        for (name, kind, help, v) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        let name = "edgews_rooms_auth_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} Authentication failures by reason.\n# TYPE {name} counter"
        );
        for (i, r) in AUTH_FAILURES.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{r}\"}} {}",
                sum(s, |w| w.auth_failures[i].get())
            );
        }
        if let Some(b) = &s.broker {
            broker_metrics(b, out);
        }
        let name = "edgews_rooms_room_members";
        let _ = writeln!(
            out,
            "# HELP {name} Distinct users in the 10 largest rooms.\n# TYPE {name} gauge"
        );
        for (room, members) in s.dir.largest_rooms(10) {
            let room = room
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = writeln!(out, "{name}{{room=\"{room}\"}} {members}");
        }
    }

    fn status(&self) -> Option<serde_json::Value> {
        let s = &self.0;
        let mut doc = json!({
            "users_online": s.dir.users_online(),
            "rooms": s.dir.rooms_open(),
            "room_messages": sum(s, |w| w.room_messages.get()),
        });
        if let Some(b) = &s.broker {
            use std::sync::atomic::Ordering::Relaxed;
            doc["broker"] = json!({
                "node": b.node(),
                "healthy": b.health().is_ok(),
                "problem": b.health().err(),
                "cluster": {
                    "nodes": b.stats.cluster_nodes.load(Relaxed),
                    "users_online": b.stats.cluster_users.load(Relaxed),
                    "connections": b.stats.cluster_connections.load(Relaxed),
                },
            });
        }
        Some(doc)
    }

    fn health(&self) -> Result<(), String> {
        match &self.0.broker {
            Some(b) => b.health(),
            None => Ok(()),
        }
    }
}

/// The body of `GET /api/websocket/status`.
pub(crate) fn websocket_status(shared: &Shared, handle: &ServerHandle) -> String {
    let workers: Vec<serde_json::Value> = handle
        .worker_stats()
        .iter()
        .zip(shared.metrics.iter())
        .enumerate()
        .map(|(i, (w, m))| {
            json!({
                "worker": i,
                "connections": w.connections_open.get(),
                "messages_received": w.messages_in.get(),
                "messages_sent": w.messages_out.get(),
                "rooms": w.rooms.get(),
                "subscriptions": w.subscriptions.get(),
                "room_messages": m.room_messages.get(),
            })
        })
        .collect();
    let doc = json!({
        "connections": handle.connections(),
        "users_online": shared.dir.users_online(),
        "rooms": shared.dir.rooms_open(),
        "uptime_seconds": handle.uptime().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        "workers": workers,
    });
    let mut text = doc.to_string();
    text.push('\n');
    text
}

/// The broker's lines of `/metrics`.
fn broker_metrics(b: &super::broker::Broker, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let st = &b.stats;
    let lines: [(&str, &str, &str, u64); 15] = [
        (
            "edgews_broker_up",
            "gauge",
            "1 when the Redis link and subscription work (not wedged).",
            u64::from(b.health().is_ok()),
        ),
        (
            "edgews_broker_link_up",
            "gauge",
            "1 while the Redis command connection is up.",
            u64::from(st.link_up.load(Relaxed)),
        ),
        (
            "edgews_broker_subscription_up",
            "gauge",
            "1 while the Redis subscription is up.",
            u64::from(st.sub_up.load(Relaxed)),
        ),
        (
            "edgews_broker_wedged",
            "gauge",
            "1 while the subscription sees none of this node's probes although Redis answers.",
            u64::from(st.wedged.load(Relaxed)),
        ),
        (
            "edgews_broker_wedged_total",
            "counter",
            "Wedged subscriptions detected (and redone).",
            st.wedged_total.get(),
        ),
        (
            "edgews_broker_reconnects_total",
            "counter",
            "Reconnections to Redis (link and subscription).",
            st.reconnects.get(),
        ),
        (
            "edgews_broker_publish_failures_total",
            "counter",
            "Operations that could not reach Redis.",
            st.publish_failures.get(),
        ),
        (
            "edgews_broker_queue_full_total",
            "counter",
            "Operations dropped because redis.max_pending were waiting.",
            st.queue_full.get(),
        ),
        (
            "edgews_broker_published_total",
            "counter",
            "Room events sent to the other nodes.",
            st.published.get(),
        ),
        (
            "edgews_broker_received_total",
            "counter",
            "Room events and private messages received from other nodes and delivered here.",
            st.received.get(),
        ),
        (
            "edgews_broker_filtered_total",
            "counter",
            "Messages received for rooms or users with no member on this node.",
            st.filtered.get(),
        ),
        (
            "edgews_broker_gaps_total",
            "counter",
            "gap events sent to local rooms after a broker outage.",
            st.gaps.get(),
        ),
        (
            "edgews_broker_pipelines_total",
            "counter",
            "Pipelines (round trips) sent to Redis.",
            st.pipelines.get(),
        ),
        (
            "edgews_broker_pending",
            "gauge",
            "Operations waiting for Redis.",
            st.pending.load(Relaxed) as u64,
        ),
        (
            "edgews_broker_lag_seconds",
            "gauge",
            "Last probe's publish-to-receive time through Redis.",
            0,
        ),
    ];
    for (name, kind, help, v) in lines {
        if name == "edgews_broker_lag_seconds" {
            let lag = st.lag_us.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {lag:.6}"
            );
        } else {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }
    for (name, help, v) in [
        (
            "edgews_broker_cluster_nodes",
            "Live nodes in the cluster (at the last heartbeat).",
            &st.cluster_nodes,
        ),
        (
            "edgews_broker_cluster_users_online",
            "Users with a connection on any node (at the last heartbeat).",
            &st.cluster_users,
        ),
        (
            "edgews_broker_cluster_connections",
            "Authenticated connections over the cluster (at the last heartbeat).",
            &st.cluster_connections,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
            v.load(Relaxed)
        );
    }
    let name = "edgews_broker_nodes_reaped_total";
    let _ = writeln!(
        out,
        "# HELP {name} Dead nodes whose users this node removed.\n# TYPE {name} counter\n{name} {}",
        st.nodes_reaped.get()
    );
}
