//! What the systemd unit (deploy/systemd/edgews.service) relies on, checked
//! on the real binary: `systemctl reload` (SIGHUP) never ends the process,
//! and `systemctl stop` (SIGTERM) drains: every client gets close 1001 and
//! the process exits 0 well within `TimeoutStopSec`.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{connect, read_text, wait_until};
use tungstenite::Message as TMessage;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig}");
}

/// `edgews echo` (no TLS: nothing to reload) on a free loopback port.
fn start_echo() -> (Proc, SocketAddr) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = Command::new(env!("CARGO_BIN_EXE_edgews"))
        .args(["echo", "--workers", "2", "--listen", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn edgews");
    let mut proc = Proc(child);
    assert!(
        wait_until(Duration::from_secs(10), || {
            matches!(proc.0.try_wait(), Ok(Some(_))) || TcpStream::connect(addr).is_ok()
        }),
        "edgews listens"
    );
    assert!(matches!(proc.0.try_wait(), Ok(None)), "edgews is running");
    (proc, addr)
}

#[test]
fn reload_signal_without_tls_keeps_serving() {
    let (mut proc, addr) = start_echo();
    let mut ws = connect(addr);
    signal(&proc.0, "HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(proc.0.try_wait(), Ok(None)),
        "SIGHUP (systemctl reload) ended edgews: {:?}",
        proc.0.try_wait()
    );
    ws.send(TMessage::text("still here")).expect("send");
    assert_eq!(read_text(&mut ws), "still here");
    let mut ws2 = connect(addr);
    ws2.send(TMessage::text("new")).expect("send");
    assert_eq!(read_text(&mut ws2), "new");
}

#[test]
fn stop_signal_drains_with_1001_and_exits_cleanly() {
    let (mut proc, addr) = start_echo();
    let mut clients: Vec<_> = (0..4).map(|_| connect(addr)).collect();
    for ws in &mut clients {
        ws.send(TMessage::text("hi")).expect("send");
        assert_eq!(read_text(ws), "hi");
    }
    let asked = Instant::now();
    signal(&proc.0, "TERM");
    for ws in &mut clients {
        match ws.read() {
            Ok(TMessage::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("expected close 1001, got {other:?}"),
        }
        // Sends the queued close reply; then the server ends the TCP stream.
        let _ = ws.flush();
        while ws.read().is_ok() {}
    }
    // Every client answered the close (tungstenite does on read): the process
    // need not wait out its shutdown timeout, and exits 0 (not a failure to
    // systemd, so Restart=on-failure leaves it stopped).
    let status = loop {
        if let Some(status) = proc.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(12),
            "edgews still running 12 s after SIGTERM (TimeoutStopSec is 15 s)"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
