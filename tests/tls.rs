//! wss: TLS inside the worker loops, with an independent client
//! (tungstenite over a rustls client stream) trusting a test certificate.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, TestServer, READ_TIMEOUT};
use edgews::runtime::tls::CertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::Message as TMessage;

type TlsWs = tungstenite::WebSocket<StreamOwned<ClientConnection, TcpStream>>;

/// A self-signed certificate for localhost/127.0.0.1, written as PEM files.
struct TestCert {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

impl TestCert {
    fn new(tag: &str) -> TestCert {
        let dir = std::env::temp_dir().join(format!("edgews-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        TestCert {
            dir,
            der: ck.cert.der().clone(),
        }
    }

    fn store(&self) -> Arc<CertStore> {
        Arc::new(CertStore::load(self.dir.join("cert.pem"), self.dir.join("key.pem")).unwrap())
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn client_config(trust: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn tls_stream(
    addr: SocketAddr,
    trust: &CertificateDer<'static>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let conn = ClientConnection::new(
        client_config(trust),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    StreamOwned::new(conn, tcp)
}

fn wss(addr: SocketAddr, trust: &CertificateDer<'static>) -> TlsWs {
    let (ws, _) = tungstenite::client(
        format!("wss://localhost:{}/", addr.port()),
        tls_stream(addr, trust),
    )
    .unwrap();
    ws
}

fn server(cert: &TestCert, cfg: edgews::runtime::Config) -> TestServer {
    TestServer::echo(cfg.tls(Some(cert.store().server_config().unwrap())))
}

fn read_text(ws: &mut TlsWs) -> String {
    loop {
        match ws.read().unwrap() {
            TMessage::Text(t) => return t.to_string(),
            TMessage::Binary(b) => return format!("<{} binary bytes>", b.len()),
            _ => {}
        }
    }
}

#[test]
fn echo_over_wss_small_large_and_pings() {
    let cert = TestCert::new("echo");
    let server = server(&cert, config());
    let mut ws = wss(server.addr, &cert.der);
    ws.send(TMessage::text("secure hello")).unwrap();
    assert_eq!(read_text(&mut ws), "secure hello");
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 249) as u8).collect();
    ws.send(TMessage::binary(big.clone())).unwrap();
    match ws.read().unwrap() {
        TMessage::Binary(b) => assert!(b[..] == big[..]),
        other => panic!("{other:?}"),
    }
    ws.send(TMessage::Ping(b"tls ping".to_vec().into()))
        .unwrap();
    loop {
        if let TMessage::Pong(p) = ws.read().unwrap() {
            assert_eq!(&p[..], b"tls ping");
            break;
        }
    }
    // Close handshake, then the server's close_notify ends the stream cleanly.
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean TLS close: {e}"),
        }
    }
}

#[test]
fn a_hundred_concurrent_wss_connections() {
    let cert = TestCert::new("many");
    let server = server(&cert, config());
    let mut conns: Vec<TlsWs> = (0..100).map(|_| wss(server.addr, &cert.der)).collect();
    for (i, ws) in conns.iter_mut().enumerate() {
        ws.send(TMessage::text(format!("n{i}"))).unwrap();
    }
    for (i, ws) in conns.iter_mut().enumerate() {
        assert_eq!(read_text(ws), format!("n{i}"));
    }
}

#[test]
fn plaintext_clients_are_refused_without_hurting_tls_clients() {
    let cert = TestCert::new("plain");
    let server = server(&cert, config());
    let mut good = wss(server.addr, &cert.der);
    for _ in 0..5 {
        let mut plain = TcpStream::connect(server.addr).unwrap();
        plain.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        plain
            .write_all(common::upgrade_request("").as_bytes())
            .unwrap();
        // The server answers garbage with (at most) a TLS alert, then closes.
        let mut got = Vec::new();
        let _ = plain.read_to_end(&mut got);
        assert!(
            !got.starts_with(b"HTTP"),
            "no plaintext answer from a TLS port"
        );
        good.send(TMessage::text("still fine")).unwrap();
        assert_eq!(read_text(&mut good), "still fine");
    }
    let rejected = common::wait_until(Duration::from_secs(2), || server.handle.connections() == 1);
    assert!(rejected, "refused connections are gone");
}

#[test]
fn a_stalled_tls_handshake_times_out() {
    let cert = TestCert::new("stall");
    let server = server(
        &cert,
        config().handshake_timeout(Duration::from_millis(500)),
    );
    // Half a ClientHello: a real one, cut short.
    let mut conn = ClientConnection::new(
        client_config(&cert.der),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    tcp.write_all(&hello[..hello.len() / 2]).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn certificate_reload_serves_new_handshakes() {
    let first = TestCert::new("reload");
    let store = first.store();
    let server = TestServer::echo(config().tls(Some(store.server_config().unwrap())));
    let mut old = wss(server.addr, &first.der);
    // Replace the files with a new certificate and reload.
    let second = TestCert::new("reload-new");
    std::fs::copy(second.dir.join("cert.pem"), first.dir.join("cert.pem")).unwrap();
    std::fs::copy(second.dir.join("key.pem"), first.dir.join("key.pem")).unwrap();
    store.reload().unwrap();
    // A client trusting only the new certificate now connects...
    let mut new = wss(server.addr, &second.der);
    new.send(TMessage::text("new cert")).unwrap();
    assert_eq!(read_text(&mut new), "new cert");
    // ...the old connection is untouched...
    old.send(TMessage::text("old conn")).unwrap();
    assert_eq!(read_text(&mut old), "old conn");
    // ...and a client trusting only the old certificate is refused.
    let attempt = tungstenite::client(
        format!("wss://localhost:{}/", server.addr.port()),
        tls_stream(server.addr, &first.der),
    );
    assert!(attempt.is_err());
}

#[test]
fn bad_pem_files_give_clear_errors() {
    let cert = TestCert::new("bad");
    let missing = CertStore::load(cert.dir.join("nope.pem"), cert.dir.join("key.pem")).unwrap_err();
    assert!(missing.to_string().contains("nope.pem"), "{missing}");
    std::fs::write(cert.dir.join("empty.pem"), "").unwrap();
    let empty = CertStore::load(cert.dir.join("empty.pem"), cert.dir.join("key.pem")).unwrap_err();
    assert!(empty.to_string().contains("no certificate"), "{empty}");
    let other = TestCert::new("bad-other");
    let mismatch =
        CertStore::load(cert.dir.join("cert.pem"), other.dir.join("key.pem")).unwrap_err();
    assert!(
        mismatch.to_string().contains("does not match"),
        "{mismatch}"
    );
}
