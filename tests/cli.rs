//! The `edgews` binary as a user runs it: `serve --print-config`, `token`,
//! configuration errors, dev mode's loopback rule, and a dev-mode server
//! that starts, prints a token, and accepts it over a real socket.
//!
//! Each run gets its own temporary directory (the dev secret lands in
//! `.edgews/` there) and an environment without `EDGEWS_*` variables; every
//! child is waited for with a deadline and killed past it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edgews::rooms::auth::{unix_now, Keys};
use edgews::rooms::config::AuthConfig;
use tungstenite::client::IntoClientRequest;

/// The longest any one `edgews` run may take.
const DEADLINE: Duration = Duration::from_secs(30);

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("edgews-cli-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn dev_secret(&self) -> Keys {
        let secret =
            std::fs::read_to_string(self.0.join(".edgews/dev-secret")).expect("dev secret");
        Keys::hs256(secret.trim().as_bytes(), &AuthConfig::default())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn command(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgews"));
    cmd.args(args).current_dir(dir.path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("EDGEWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("EDGEWS_LOG", "warn").envs(env.iter().copied());
    cmd
}

/// Runs `edgews args` to completion (killed after [`DEADLINE`]).
fn run(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = command(dir, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgews");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("edgews {args:?} still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    stdout(&o)
}

/// A configuration error: exit code 2, and stderr names `what`.
fn config_error(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(o));
    assert!(stderr(o).contains(what), "`{what}` not in: {}", stderr(o));
}

#[test]
fn print_config_is_toml_that_round_trips() {
    let dir = TempDir::new("print");
    let defaults = ok(run(&dir, &["serve", "--print-config"], &[]));
    let table: toml::Table = defaults.parse().expect("TOML");
    assert_eq!(table["listen"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(table["profile"].as_str(), Some("standard"));
    assert!(
        !dir.path().join(".edgews").exists(),
        "print-config makes no secret"
    );

    let custom = ok(run(
        &dir,
        &[
            "serve",
            "--profile",
            "low-memory",
            "--set",
            "rate_limit.burst=5",
            "--workers",
            "2",
            "--print-config",
        ],
        &[("EDGEWS_ALLOWED_ORIGINS", "https://a.example")],
    ));
    assert_ne!(custom, defaults);
    let file = dir.write("printed.toml", &custom);
    let again = ok(run(
        &dir,
        &[
            "serve",
            "--config",
            file.to_str().expect("utf-8"),
            "--print-config",
        ],
        &[],
    ));
    assert_eq!(
        again, custom,
        "feeding --print-config back gives the same config"
    );
    let t: toml::Table = custom.parse().expect("TOML");
    assert_eq!(t["profile"].as_str(), Some("low-memory"));
    assert_eq!(t["workers"].as_integer(), Some(2));
    assert_eq!(t["rate_limit"]["burst"].as_integer(), Some(5));
}

#[test]
fn token_verifies_with_the_dev_secret() {
    let dir = TempDir::new("token");
    let args = [
        "token",
        "--sub",
        "alice",
        "--name",
        "Alice",
        "--roles",
        "moderator",
        "--ttl",
        "1h",
    ];
    let token = ok(run(&dir, &args, &[]));
    let claims = dir.dev_secret().verify(token.trim()).expect("verifies");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.name.as_deref(), Some("Alice"));
    assert_eq!(claims.roles, ["moderator"]);
    let exp = claims.exp.expect("exp");
    assert!(exp.abs_diff(unix_now() + 3600) < 60, "exp {exp}");
    // The same secret the next time (the file is reused).
    let again = ok(run(&dir, &["token", "--sub", "bob"], &[]));
    assert_eq!(
        dir.dev_secret().verify(again.trim()).expect("verifies").sub,
        "bob"
    );
}

#[test]
fn token_uses_the_configured_secret_and_refuses_public_keys() {
    let dir = TempDir::new("token-key");
    let secret = "a configured secret of some length";
    let token = ok(run(
        &dir,
        &["token", "--sub", "carol"],
        &[("EDGEWS_AUTH__HS256_SECRET", secret)],
    ));
    let keys = Keys::hs256(secret.as_bytes(), &AuthConfig::default());
    assert_eq!(keys.verify(token.trim()).expect("verifies").sub, "carol");
    assert!(
        !dir.path().join(".edgews").exists(),
        "no dev secret when a key is set"
    );

    let o = run(
        &dir,
        &[
            "token",
            "--sub",
            "carol",
            "--set",
            "auth.rs256_public_key_file=pub.pem",
        ],
        &[],
    );
    config_error(&o, "cannot mint");
    config_error(&o, "auth.rs256_public_key_file");
    assert!(stdout(&o).is_empty());

    config_error(
        &run(&dir, &["token", "--sub", "x", "--ttl", "0s"], &[]),
        "--ttl",
    );
    config_error(&run(&dir, &["token", "--sub", ""], &[]), "--sub");
}

#[test]
fn unknown_keys_fail_naming_the_key() {
    let dir = TempDir::new("unknown");
    let file = dir.write("edgews.toml", "workers = 1\n[rate_limit]\ntypo = 1\n");
    let o = run(
        &dir,
        &["serve", "--config", file.to_str().expect("utf-8")],
        &[],
    );
    config_error(&o, "rate_limit.typo");
    let o = run(&dir, &["serve"], &[("EDGEWS_MAX_MESAGE_BYTES", "1")]);
    config_error(&o, "EDGEWS_MAX_MESAGE_BYTES");
    let o = run(&dir, &["serve", "--set", "who_max_limit=5"], &[]);
    config_error(&o, "who_max_limit must be >= who_default_limit");
    let o = run(&dir, &["serve", "--config", "missing.toml"], &[]);
    config_error(&o, "missing.toml");
}

#[test]
fn dev_mode_refuses_a_non_loopback_address() {
    let dir = TempDir::new("loopback");
    let o = run(&dir, &["serve", "--listen", "0.0.0.0:0"], &[]);
    config_error(&o, "listen");
    config_error(&o, "loopback");
    // With a key configured the same address is accepted (checked without
    // binding it, through --print-config).
    ok(run(
        &dir,
        &["serve", "--listen", "0.0.0.0:0", "--print-config"],
        &[(
            "EDGEWS_AUTH__HS256_SECRET",
            "a configured secret of some length",
        )],
    ));
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `edgews args` and forwards its stdout and stderr lines
/// (`(from_stderr, line)`).
fn spawn(
    dir: &TempDir,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Server, mpsc::Receiver<(bool, String)>) {
    let child = command(dir, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgews");
    let mut server = Server(child);
    let out = server.0.stdout.take().expect("stdout");
    let err = server.0.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((false, line));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send((true, line));
        }
    });
    (server, rx)
}

/// One HTTP/1.1 GET over a fresh connection; the whole response.
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn dev_mode_serves_and_prints_a_working_token() {
    let dir = TempDir::new("serve");
    let (_server, rx) = spawn(&dir, &["--listen", "127.0.0.1:0", "--workers", "2"], &[]);
    let start = Instant::now();
    let (mut url, mut warned) = (None, false);
    while url.is_none() || !warned {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let (is_err, line) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no URL and warning within {DEADLINE:?}"));
        warned |= is_err && line.contains("DEV MODE");
        if let Some(u) = line.strip_prefix("Try it:") {
            url = Some(u.trim().to_owned());
        }
    }
    let url = url.expect("url");
    let token = url.split("token=").nth(1).expect("token in the URL");
    assert_eq!(
        dir.dev_secret().verify(token).expect("verifies").sub,
        "alice"
    );

    // The printed URL works: a real client gets the welcome.
    let addr: std::net::SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("address in the URL");
    assert!(addr.ip().is_loopback());
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let req = url.as_str().into_client_request().expect("request");
    let (mut ws, _) = tungstenite::client(req, stream).expect("upgrade");
    let welcome = loop {
        match ws.read().expect("read") {
            tungstenite::Message::Text(t) => break t.to_string(),
            tungstenite::Message::Ping(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    let welcome: serde_json::Value = serde_json::from_str(&welcome).expect("JSON");
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["user"]["id"], "alice", "{welcome}");

    // Dev mode mints tokens over HTTP for the demo page.
    let resp = http_get(addr, "/dev/token?sub=bob&name=Bob");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body: serde_json::Value =
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).expect("body")).expect("JSON");
    let token = body["token"].as_str().expect("token");
    assert_eq!(dir.dev_secret().verify(token).expect("verifies").sub, "bob");
}

#[test]
fn with_a_key_there_is_no_sample_token_and_no_dev_endpoint() {
    let dir = TempDir::new("serve-key");
    let (_server, rx) = spawn(
        &dir,
        &["serve", "--listen", "127.0.0.1:0", "--workers", "1"],
        &[
            (
                "EDGEWS_AUTH__HS256_SECRET",
                "a configured secret of some length",
            ),
            ("EDGEWS_LOG", "info"),
        ],
    );
    let start = Instant::now();
    let addr: std::net::SocketAddr = loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let (is_err, line) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no `listening on` log within {DEADLINE:?}"));
        assert!(is_err, "nothing on stdout without dev mode: {line}");
        assert!(!line.contains("DEV MODE"), "{line}");
        if let Some(rest) = line.split("listening on ws://").nth(1) {
            break rest
                .split('/')
                .next()
                .and_then(|a| a.parse().ok())
                .expect("address");
        }
    };
    let resp = http_get(addr, "/dev/token?sub=mallory");
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(
        !dir.path().join(".edgews").exists(),
        "no dev secret when a key is set"
    );
    assert!(rx.try_iter().all(|(is_err, _)| is_err), "nothing on stdout");
}

#[test]
fn dev_mode_prints_a_working_admin_token_when_the_admin_api_listens() {
    let dir = TempDir::new("serve-admin");
    let (_server, rx) = spawn(
        &dir,
        &[
            "--listen",
            "127.0.0.1:0",
            "--set",
            "admin.listen=127.0.0.1:0",
        ],
        &[],
    );
    let start = Instant::now();
    let curl = loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let (_, line) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no admin curl line within {DEADLINE:?}"));
        if line.trim_start().starts_with("curl ") {
            break line;
        }
    };
    let token = curl
        .split("Bearer ")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .expect("token in the curl line");
    let saved = std::fs::read_to_string(dir.0.join(".edgews/dev-admin-token")).expect("saved");
    assert_eq!(saved.trim(), token);
    let url = curl.split_whitespace().last().expect("url");
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("address in the URL");
    use std::io::{Read, Write};
    let ask = |auth: &str| {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(s, "GET /api/admin/rooms HTTP/1.1\r\nHost: x\r\n{auth}\r\n").expect("send");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let resp = ask(&format!("Authorization: Bearer {token}\r\n"));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(ask("").starts_with("HTTP/1.1 401"));
}
