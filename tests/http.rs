//! Health, metrics and status endpoints, on the WebSocket port and on a
//! separate admin address.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::{config, connect, http, read_text, Raw, TestServer};
use edgews::protocol::CloseCode;
use tungstenite::Message as TMessage;

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Checks the Prometheus text format and returns `series -> value`.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let name_ok = |n: &str| {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let (mut helped, mut typed) = (HashSet::new(), HashSet::new());
    let mut series = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap();
            let kind = it.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counters end in _total: {name}");
            }
            typed.insert(name.to_owned());
            continue;
        }
        assert!(
            !line.is_empty() && !line.starts_with('#'),
            "unexpected line {line:?}"
        );
        let (key, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = key.split('{').next().unwrap();
        assert!(name_ok(name), "bad name {name}");
        if let Some(labels) = key.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    assert!(
                        name_ok(k) && v.starts_with('"') && v.ends_with('"'),
                        "{line}"
                    );
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(
            typed.contains(name) || typed.contains(family),
            "TYPE before samples: {name}"
        );
        assert!(
            helped.contains(name) || helped.contains(family),
            "HELP before samples: {name}"
        );
        series.insert(key.to_owned(), value);
    }
    series
}

#[test]
fn counters_move_as_messages_flow() {
    let server = TestServer::echo(config());
    let (status, first) = get(server.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        first.contains("Content-Type: text/plain; version=0.0.4"),
        "{first}"
    );
    let before = parse_prometheus(body(&first));
    assert_eq!(before["edgews_messages_received_total"], 0.0);

    let mut clients: Vec<_> = (0..4).map(|_| connect(server.addr)).collect();
    for ws in &mut clients {
        for i in 0..25 {
            ws.send(TMessage::text(format!("m{i}"))).unwrap();
            assert_eq!(read_text(ws), format!("m{i}"));
        }
    }
    let mut raw = Raw::connect(server.addr);
    raw.frame(true, edgews::protocol::OpCode::Ping, b"p");
    assert_eq!(raw.next(), common::Got::Pong(b"p".to_vec()));
    raw.close(CloseCode::NORMAL, "done");
    raw.expect_close();

    let after = parse_prometheus(body(&get(server.addr, "/metrics").1));
    assert_eq!(after["edgews_messages_received_total"], 100.0);
    assert_eq!(after["edgews_messages_sent_total"], 100.0);
    assert!(
        after["edgews_bytes_received_total"] > before["edgews_bytes_received_total"] + 100.0 * 6.0
    );
    assert!(after["edgews_bytes_sent_total"] > before["edgews_bytes_sent_total"]);
    assert_eq!(after["edgews_upgrades_total"], 5.0);
    assert!(after["edgews_connections_accepted_total"] >= 5.0);
    assert_eq!(
        after["edgews_data_messages_received_total{opcode=\"text\"}"],
        100.0
    );
    assert_eq!(
        after["edgews_data_messages_received_total{opcode=\"binary\"}"],
        0.0
    );
    assert_eq!(
        after["edgews_control_frames_received_total{opcode=\"ping\"}"],
        1.0
    );
    assert_eq!(
        after["edgews_close_codes_received_total{code=\"1000\"}"],
        1.0
    );
    assert_eq!(after["edgews_close_codes_sent_total{code=\"1000\"}"], 1.0);
    let per_worker: f64 = (0..2)
        .map(|w| after[&format!("edgews_worker_messages_received_total{{worker=\"{w}\"}}")])
        .sum();
    assert_eq!(per_worker, 100.0, "per-worker series add up to the total");
    assert!(after["edgews_connection_duration_seconds_count"] >= 1.0);

    // /status tells the same story as JSON, with the configuration.
    let (status, text) = get(server.addr, "/status");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(body(&text)).unwrap();
    assert_eq!(doc["totals"]["messages_received"], 100);
    assert_eq!(doc["workers"].as_array().unwrap().len(), 2);
    assert_eq!(doc["config"]["max_message_bytes"], 16 << 20);
    assert_eq!(doc["config"]["workers"], 2);
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["uptime_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn health_methods_and_unknown_paths() {
    let server = TestServer::echo(config());
    let (status, text) = get(server.addr, "/healthz");
    assert_eq!((status, body(&text)), (200, "ok\n"));
    let (status, text) = http(server.addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    assert!(body(&text).is_empty(), "HEAD has no body");
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(len > 1000, "HEAD announces the GET body's length");
    let (status, text) = http(
        server.addr,
        "POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert!(text.contains("Allow: GET, HEAD"));
    assert_eq!(
        get(server.addr, "/elsewhere").0,
        404,
        "other paths go to the handler"
    );
}

#[test]
fn admin_address_serves_the_endpoints_and_reports_shutdown() {
    let cfg = config().admin_listen(Some("127.0.0.1:0".parse().unwrap()));
    let server = TestServer::echo(cfg);
    let admin = server.handle.admin_addr().expect("admin address");
    assert_eq!(get(admin, "/healthz").0, 200);
    assert_eq!(get(admin, "/metrics").0, 200);
    assert_eq!(get(admin, "/status").0, 200);
    assert_eq!(get(admin, "/other").0, 404);
    // Not on the public port any more.
    assert_eq!(get(server.addr, "/metrics").0, 404);
    // During shutdown (a client keeps the workers busy closing), health says 503.
    let _client = Raw::connect(server.addr);
    let handle = server.handle.clone();
    let stopper = std::thread::spawn(move || server.stop());
    assert!(common::wait_until(Duration::from_secs(2), || handle.is_shutting_down()));
    let (status, text) = get(admin, "/healthz");
    assert_eq!((status, body(&text)), (503, "shutting down\n"));
    drop(_client);
    stopper.join().unwrap();
}
