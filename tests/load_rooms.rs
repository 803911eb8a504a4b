//! `edgews-load`'s room scenarios against a real room server (two workers,
//! 127.0.0.1): every run is short and bounded, and its report must show
//! traffic, no errors, no gaps; a wrong secret must fail with the server's
//! refusal rather than measure nothing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use edgews::rooms::auth::Keys;
use edgews::rooms::server::{RoomServer, Shared};
use edgews::rooms::RoomServerConfig;
use serde_json::Value;

const SECRET: &str = "load-test-secret";

fn start() -> (String, std::sync::Arc<Shared>, edgews::runtime::Running) {
    let mut cfg = RoomServerConfig::default();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.workers = 2;
    cfg.max_connections_per_ip = 0;
    cfg.rate_limit.messages_per_sec = 0;
    let keys = Keys::hs256(SECRET.as_bytes(), &cfg.auth);
    let server = RoomServer::bind(cfg, keys).unwrap();
    let url = format!("ws://{}/ws", server.local_addr());
    let shared = server.shared().clone();
    (url, shared, server.start().unwrap())
}

fn load(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgews-load"));
    cmd.args(args)
        .args(["--json", "--open-timeout", "10"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn report(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "edgews-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn rooms_echo_counts_acked_requests() {
    let (url, _shared, running) = start();
    let r = report(&mut load(&[
        "rooms-echo",
        "--url",
        &url,
        "--secret",
        SECRET,
        "-c",
        "4",
        "--size",
        "100",
        "--warmup",
        "0.2",
        "--duration",
        "0.5",
    ]));
    assert_eq!(r["scenario"], "rooms-echo");
    assert!(r["msgs_per_s"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    running.shutdown().unwrap();
}

#[test]
fn rooms_fanout_delivers_every_publish_in_order() {
    let (url, _shared, running) = start();
    let r = report(&mut load(&[
        "rooms-fanout",
        "--url",
        &url,
        "--secret",
        SECRET,
        "-c",
        "20",
        "--publishers",
        "2",
        "--size",
        "100",
        "--threads",
        "2",
        "--warmup",
        "0.2",
        "--duration",
        "0.5",
    ]));
    assert_eq!(r["scenario"], "rooms-fanout");
    assert!(r["delivered_per_s"].as_f64().unwrap() > 0.0, "{r}");
    for field in ["missing", "out_of_order", "errors"] {
        assert_eq!(r[field], 0, "{field}: {r}");
    }
    running.shutdown().unwrap();
}

#[test]
fn rooms_idle_holds_authenticated_members() {
    let (url, shared, running) = start();
    // The server runs in this process: its memory is this process's.
    let pid = std::process::id().to_string();
    let mut child = load(&[
        "rooms-idle",
        "--server-pid",
        &pid,
        "--url",
        &url,
        "--secret",
        SECRET,
        "-c",
        "50",
        "--members-per-room",
        "10",
        "--sources",
        "1",
        "--settle",
        "0.2",
        "--duration",
        "5",
    ])
    .spawn()
    .unwrap();
    // The report comes once every connection joined; they are held after it.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let r: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (r["connections"].as_u64(), r["failed"].as_u64()),
        (Some(50), Some(0)),
        "{r}"
    );
    // Both memory figures are reported (the anonymous one from RssAnon).
    assert!(r["server_rss_per_conn_bytes"].is_number(), "{r}");
    assert!(r["server_anon_per_conn_bytes"].is_number(), "{r}");
    assert!(r["server_rss_after_bytes"].as_u64() > Some(0), "{r}");
    assert_eq!(shared.dir.users_online(), 50);
    assert_eq!(shared.dir.rooms_open(), 5);
    let _ = child.kill();
    let _ = child.wait();
    running.shutdown().unwrap();
}

#[test]
fn a_wrong_secret_fails_with_the_servers_refusal() {
    let (url, _shared, running) = start();
    let out = load(&[
        "rooms-echo",
        "--url",
        &url,
        "--secret",
        "not-the-secret",
        "-c",
        "2",
        "--warmup",
        "0",
        "--duration",
        "0.2",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unauthorized"), "{err}");
    running.shutdown().unwrap();
}
