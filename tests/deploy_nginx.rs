//! The shipped deployment files, tried for real: Debian's nginx running
//! `deploy/nginx/edgews.conf` (rendered by `deploy/test/nginx-conf.sh` onto a
//! free loopback port) in front of `edgews serve --config deploy/edgews.toml`, with tungstenite clients
//! connecting from chosen 127.0.0.x source addresses so the per-IP limit can
//! tell them apart from each other and from nginx (which connects from
//! 127.0.1.1-16, the `trusted_proxies` of `deploy/edgews.toml`).
//!
//! Without nginx installed the nginx tests say so and pass, unless
//! `DEPLOY_REQUIRE_NGINX=1` (set by `.ci/run`, which installs nginx).

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{http, wait_until, READ_TIMEOUT};
use edgews::rooms::auth::{unix_now, Claims, Keys};
use edgews::rooms::RoomServerConfig;
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Response;
use tungstenite::Message as TMessage;

type Ws = tungstenite::WebSocket<TcpStream>;

const SECRET: &str = "a deploy test secret, 32+ bytes long";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read_repo(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The shipped edgews config, loaded as `edgews serve --config` loads it.
fn shipped_config() -> RoomServerConfig {
    RoomServerConfig::load(Some(&repo("deploy/edgews.toml")), [], &[])
        .expect("deploy/edgews.toml is a valid config")
}

// ----- nginx ------------------------------------------------------------------

/// Debian's nginx, running the shipped site in the foreground; killed on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

fn nginx_binary() -> Option<PathBuf> {
    let found = std::env::var_os("NGINX")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/sbin/nginx", "/usr/bin/nginx"].map(PathBuf::from))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("DEPLOY_REQUIRE_NGINX").is_none(),
            "DEPLOY_REQUIRE_NGINX is set but nginx is not installed"
        );
        eprintln!("nginx is not installed: skipping (apt-get install nginx)");
    }
    found
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Nginx {
    /// Starts nginx in front of `upstream`, or `None` when nginx is missing.
    fn start(upstream: SocketAddr) -> Option<Nginx> {
        let bin = nginx_binary()?;
        let dir = std::env::temp_dir().join(format!(
            "edgews-nginx-{}-{}",
            std::process::id(),
            upstream.port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        // A free port can be taken between our probe and nginx's bind: retry.
        for _ in 0..3 {
            let port = free_port();
            let status = Command::new("bash")
                .arg(repo("deploy/test/nginx-conf.sh"))
                .arg(&dir)
                .arg(port.to_string())
                .arg(upstream.to_string())
                .status()
                .expect("run nginx-conf.sh");
            assert!(status.success(), "nginx-conf.sh failed");
            let conf = dir.join("nginx.conf");
            let mut child = Command::new(&bin)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nginx");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            // Up, and it is this nginx that answers (the header names its
            // directory), not another process that took the port meanwhile.
            let me = format!("x-test-instance: {}", dir.display()).to_lowercase();
            let up = wait_until(Duration::from_secs(5), || {
                matches!(child.try_wait(), Ok(Some(_)))
                    || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            let ours = up
                && matches!(child.try_wait(), Ok(None))
                && http(
                    addr,
                    "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                )
                .1
                .to_lowercase()
                .contains(&me);
            if ours {
                return Some(Nginx { child, dir, addr });
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            eprintln!("nginx did not start on port {port}: {log}");
        }
        panic!("nginx did not start (see above)");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ----- the room server and its clients -------------------------------------------

/// `edgews serve --config deploy/edgews.toml`, the real binary with the
/// shipped config, on a free loopback port with 2 workers, `per_ip`
/// connections per client and the test's HS256 secret; killed on drop.
struct Serve {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn room_server(per_ip: usize) -> Serve {
    let dir = std::env::temp_dir().join(format!("edgews-serve-{}-{per_ip}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let secret = dir.join("hs256.secret");
    std::fs::write(&secret, SECRET).expect("write the secret");
    for _ in 0..3 {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.join("serve.log")).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgews"))
            .arg("serve")
            .arg("--config")
            .arg(repo("deploy/edgews.toml"))
            .arg("--listen")
            .arg(addr.to_string())
            .args(["--workers", "2"])
            .arg("--set")
            .arg(format!("max_connections_per_ip={per_ip}"))
            .arg("--set")
            .arg(format!("auth.hs256_secret_file={}", secret.display()))
            .env_remove("EDGEWS_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn edgews serve");
        let up = wait_until(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
                || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if up && matches!(child.try_wait(), Ok(None)) {
            return Serve { child, dir, addr };
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
        eprintln!("edgews serve did not start on {addr}: {log}");
    }
    panic!("edgews serve did not start (see above)");
}

fn token(sub: &str) -> String {
    let keys = Keys::hs256(SECRET.as_bytes(), &RoomServerConfig::default().auth);
    keys.mint(&Claims {
        sub: sub.into(),
        name: Some(sub.to_uppercase()),
        exp: Some(unix_now() + 3600),
        ..Claims::default()
    })
    .expect("mint")
}

/// A TCP connection to `to` from the source address 127.0.0.`src`.
fn tcp_from(src: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::from((Ipv4Addr::new(127, 0, 0, src), 0)).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(s)
}

/// Opens `ws://to/ws?query` from 127.0.0.`src` with extra request headers.
fn try_open(
    src: u8,
    to: SocketAddr,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, Response), String> {
    let mut req = format!("ws://{to}/ws{query}")
        .into_client_request()
        .expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            v.parse().expect("header value"),
        );
    }
    let stream = tcp_from(src, to).map_err(|e| format!("connect: {e}"))?;
    match tungstenite::client(req, stream) {
        Ok(ok) => Ok(ok),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(format!("HTTP {} {body}", resp.status().as_u16()))
        }
        Err(e) => Err(format!("handshake: {e}")),
    }
}

/// Opens an authenticated connection (token in the query) and reads `welcome`.
fn open(src: u8, to: SocketAddr, sub: &str, headers: &[(&str, &str)]) -> Result<Ws, String> {
    let (mut ws, _) = try_open(src, to, &format!("?token={}", token(sub)), headers)?;
    let welcome = read(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    Ok(ws)
}

fn read(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("read") {
            TMessage::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            TMessage::Ping(_) | TMessage::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(TMessage::text(v.to_string())).expect("send");
}

// ----- the tests ------------------------------------------------------------------

#[test]
fn room_protocol_through_nginx() {
    let serve = room_server(100);
    let Some(nginx) = Nginx::start(serve.addr) else {
        return;
    };
    let to = nginx.addr;

    // Every token source survives the proxy: query, Authorization, subprotocol.
    let mut alice = open(3, to, "alice", &[]).expect("alice");
    let bearer = format!("Bearer {}", token("bob"));
    let (mut bob, _) =
        try_open(4, to, "", &[("Authorization", bearer.as_str())]).expect("bob (bearer)");
    assert_eq!(read(&mut bob)["type"], "welcome");
    let offer = format!("edgews.v1, token.{}", token("carol"));
    let (mut carol, resp) =
        try_open(5, to, "", &[("Sec-WebSocket-Protocol", offer.as_str())]).expect("carol");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("edgews.v1"),
        "nginx passes the selected subprotocol back"
    );
    assert_eq!(read(&mut carol)["type"], "welcome");
    // A bad token: edgews' 401 with its JSON body reaches the client.
    let err = try_open(6, to, "?token=not.a.jwt", &[]).expect_err("bad token refused");
    assert!(err.starts_with("HTTP 401"), "{err}");

    // join, user_joined, message to every member.
    send(&mut alice, json!({"type":"join","room":"lobby","id":1}));
    let ack = read(&mut alice);
    assert_eq!(
        (ack["type"].as_str(), ack["members"].as_u64()),
        (Some("ack"), Some(1)),
        "{ack}"
    );
    send(&mut bob, json!({"type":"join","room":"lobby","id":"b1"}));
    let ack = read(&mut bob);
    assert_eq!(
        (ack["type"].as_str(), ack["members"].as_u64()),
        (Some("ack"), Some(2)),
        "{ack}"
    );
    let joined = read(&mut alice);
    assert_eq!(joined["type"], "user_joined", "{joined}");
    assert_eq!(joined["user"]["id"], "bob");
    send(
        &mut bob,
        json!({"type":"message","room":"lobby","data":{"text":"hello through nginx"}}),
    );
    for ws in [&mut alice, &mut bob] {
        let msg = read(ws);
        assert_eq!(msg["type"], "message", "{msg}");
        assert_eq!(msg["from"]["id"], "bob");
        assert_eq!(msg["data"]["text"], "hello through nginx");
    }
    // Carol is not in the room: she got nothing, and a ping still works.
    send(&mut carol, json!({"type":"ping","id":7}));
    let pong = read(&mut carol);
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_i64()),
        (Some("pong"), Some(7)),
        "{pong}"
    );

    // The HTTP endpoints the site proxies.
    let get = |path: &str| {
        http(
            to,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
    };
    let (code, body) = get("/api/websocket/status");
    assert_eq!(code, 200, "{body}");
    let (code, body) = get("/healthz");
    assert_eq!(code, 200, "{body}");
    let (code, body) = get("/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("edgews_connections_open"), "{body}");
    let (code, _) = get("/elsewhere");
    assert_eq!(code, 404, "only the listed paths reach edgews");
}

#[test]
fn forwarded_for_counts_the_client_behind_nginx_and_cannot_be_spoofed() {
    let serve = room_server(2);
    let server = serve.addr;
    let Some(nginx) = Nginx::start(server) else {
        return;
    };
    let to = nginx.addr;
    let refused = |r: Result<Ws, String>| match r {
        Ok(_) => panic!("expected the per-IP limit"),
        Err(e) => e,
    };

    // Trusted: nginx's connections count against the client it forwards for.
    let mut held = vec![
        open(3, to, "a", &[]).expect("first from .3"),
        open(3, to, "a", &[]).expect("second from .3"),
    ];
    let e = refused(open(3, to, "a", &[]));
    assert!(
        e.starts_with("HTTP 429"),
        "third from .3 through nginx: {e}"
    );
    // ...and not against nginx: another client through the same proxy is fine.
    held.push(open(4, to, "b", &[]).expect("first from .4"));

    // Spoofed through nginx: the client's own X-Forwarded-For is to the left
    // of what nginx appends and is not believed, either way round.
    let e = refused(open(3, to, "a", &[("X-Forwarded-For", "203.0.113.9")]));
    assert!(e.starts_with("HTTP 429"), ".3 posing as 203.0.113.9: {e}");
    held.push(
        open(4, to, "b", &[("X-Forwarded-For", "127.0.0.3")])
            .expect(".4 posing as .3 is counted as .4"),
    );
    let e = refused(open(4, to, "b", &[]));
    assert!(e.starts_with("HTTP 429"), ".4 now holds two: {e}");

    // Direct clients: their header is ignored; the socket's address counts.
    let e = refused(open(3, server, "a", &[("X-Forwarded-For", "203.0.113.9")]));
    assert!(
        !e.starts_with("HTTP"),
        ".3 direct is closed at accept, before any HTTP: {e}"
    );
    held.push(
        open(5, server, "c", &[("X-Forwarded-For", "127.0.0.3")])
            .expect(".5 direct, naming .3, is counted as .5"),
    );

    // Closing a proxied connection frees its client's slot.
    let mut first = held.remove(0);
    first.close(None).expect("close");
    let mut buf = [0u8; 256];
    let _ = first.get_mut().read(&mut buf);
    drop(first);
    assert!(
        wait_until(Duration::from_secs(5), || open(3, to, "a", &[]).is_ok()),
        "the slot of a closed proxied connection comes back"
    );
}

/// The numbers that must agree across the shipped files.
#[test]
fn shipped_files_agree_with_each_other() {
    let cfg = shipped_config();
    cfg.engine_config()
        .expect("deploy/edgews.toml is a valid config");
    let site = read_repo("deploy/nginx/edgews.conf");
    let unit = read_repo("deploy/systemd/edgews.service");
    let sysctl = read_repo("deploy/sysctl/90-edgews.conf");
    let limits = read_repo("deploy/limits/90-edgews.conf");

    // `name value;` / `Name=value` / `key = value` lines, comments skipped.
    fn values<'a>(text: &'a str, key: &str, sep: char) -> Vec<&'a str> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.strip_prefix(key))
            .filter_map(|rest| match sep {
                ' ' => rest.strip_prefix(' '),
                _ => rest.trim_start().strip_prefix(sep),
            })
            .map(|v| v.trim().trim_end_matches(';').trim())
            .filter(|v| !v.is_empty() && !v.ends_with('{'))
            .collect()
    }
    let secs = |v: &str| -> u64 { v.trim_end_matches('s').parse().expect("seconds") };

    // nginx keeps a silent WebSocket longer than edgews does: edgews pings,
    // then reaps with 1001, before nginx would cut it.
    for key in ["proxy_read_timeout", "proxy_send_timeout"] {
        let v = values(&site, key, ' ');
        assert_eq!(v.len(), 1, "{key} once in the site");
        assert!(
            secs(v[0]) > cfg.idle_timeout_secs && cfg.idle_timeout_secs > cfg.ping_interval_secs,
            "{key} {} vs idle {} / ping {}",
            v[0],
            cfg.idle_timeout_secs,
            cfg.ping_interval_secs
        );
    }
    // Every proxy_set_header at server level: one inside a location would
    // silently drop the others there (X-Forwarded-For among them).
    let first_location = site.find("\n    location").expect("a location");
    assert!(
        !site[first_location..].contains("proxy_set_header"),
        "proxy_set_header inside a location block"
    );
    // nginx proxies to where edgews listens, from addresses edgews trusts.
    assert_eq!(values(&site, "server", ' '), [cfg.listen.to_string()]);
    let engine = cfg.engine_config().expect("engine config");
    let sources: Vec<Ipv4Addr> = site
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("6.25%") || l.starts_with('*'))
        .map(|l| {
            let ip = l.rsplit(' ').next().expect("address");
            ip.trim_end_matches(';').parse().expect("an address")
        })
        .collect();
    assert_eq!(sources.len(), 16, "split_clients lists 16 source addresses");
    for ip in sources {
        assert!(
            engine
                .trusted_proxies
                .iter()
                .any(|net| net.contains(&std::net::IpAddr::V4(ip))),
            "nginx source {ip} is a trusted proxy"
        );
    }
    // systemd waits for the drain before SIGKILL.
    let stop = values(&unit, "TimeoutStopSec", '=');
    assert_eq!(stop.len(), 1);
    assert!(secs(stop[0]) > cfg.shutdown_timeout_secs, "TimeoutStopSec");
    // Enough descriptors for max_connections, within what the kernel allows.
    let nofile: u64 = values(&unit, "LimitNOFILE", '=')[0]
        .parse()
        .expect("LimitNOFILE");
    let nr_open: u64 = values(&sysctl, "fs.nr_open", '=')[0]
        .parse()
        .expect("fs.nr_open");
    assert!(nofile > cfg.max_connections as u64 && nofile <= nr_open);
    for line in limits.lines().filter(|l| l.contains("nofile")) {
        assert!(line.trim_end().ends_with(&nofile.to_string()), "{line}");
    }
}
