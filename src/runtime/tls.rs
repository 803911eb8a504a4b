//! TLS (wss) through rustls, driven by the worker loops: no extra threads.
//!
//! [`TlsStream`] keeps the [`super::transport`] contract:
//! - `read` decrypts into the caller's buffer until it is full or the socket
//!   would block, doing handshake work on the way. A short read therefore
//!   still means "the socket is drained", which the worker relies on with
//!   edge-triggered readiness: no plaintext is left stranded inside rustls.
//! - `write` encrypts only while no earlier ciphertext is waiting: while
//!   records are still unsent it answers `WouldBlock`, so the connection's
//!   own (bounded) send queue holds the rest and rustls never buffers more
//!   than one batch.
//! - `shutdown_write` sends close_notify before the TCP FIN.
//!
//! [`CertStore`] loads a certificate chain and key from PEM files and can
//! reload them (e.g. on SIGHUP, see [`reload_on_sighup`]) without dropping
//! connections: new handshakes use the new certificate.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

use super::error::Error;

/// One TLS connection over a non-blocking socket.
#[derive(Debug)]
pub(crate) struct TlsStream {
    sock: TcpStream,
    tls: ServerConnection,
    /// The socket reached EOF.
    eof: bool,
}

impl TlsStream {
    pub fn new(sock: TcpStream, config: &Arc<ServerConfig>) -> io::Result<TlsStream> {
        let tls = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        Ok(TlsStream {
            sock,
            tls,
            eof: false,
        })
    }

    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Reads decrypted bytes; see the module documentation.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            match self.tls.reader().read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(0), // close_notify: clean end
                Ok(0) => return Ok(filled),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed TCP without close_notify.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            if self.eof {
                return Ok(filled);
            }
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {
                    if let Err(e) = self.tls.process_new_packets() {
                        // Tell the peer why (an alert), then give up on it.
                        let _ = self.flush();
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    // Handshake messages, session tickets, key updates.
                    self.flush()?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes pending records; `Ok(true)` when none are left.
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    pub fn has_buffered_output(&self) -> bool {
        self.tls.wants_write()
    }

    /// Encrypts as much of `bufs` as rustls takes, then sends what it can.
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.flush()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.flush()?;
        Ok(n)
    }

    pub fn shutdown_write(&mut self) {
        self.tls.send_close_notify();
        let _ = self.flush();
        let _ = self.sock.shutdown(Shutdown::Write);
    }
}

/// A certificate chain and key from PEM files, reloadable without a restart.
///
/// ```no_run
/// use std::sync::Arc;
/// use edgews::runtime::{tls::CertStore, Config};
/// let store = Arc::new(CertStore::load("cert.pem", "key.pem")?);
/// let config = Config::default().tls(Some(store.server_config()?));
/// edgews::runtime::tls::reload_on_sighup(store)?;
/// # Ok::<(), edgews::runtime::Error>(())
/// ```
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Reads and checks the PEM files (the key must match the certificate).
    pub fn load(
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<CertStore, Error> {
        let (cert_path, key_path) = (cert_path.as_ref().to_owned(), key_path.as_ref().to_owned());
        let key = read_pair(&cert_path, &key_path)?;
        Ok(CertStore {
            cert_path,
            key_path,
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Reads the files again; new handshakes use the new certificate. On an
    /// error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), Error> {
        let key = read_pair(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// A rustls server configuration (TLS 1.2 and 1.3, ALPN `http/1.1`) that
    /// takes its certificate from this store.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::tls(format!("TLS configuration: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| {
            Error::tls(format!(
                "cannot read certificate {}: {e}",
                cert_path.display()
            ))
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            Error::tls(format!(
                "bad certificate PEM in {}: {e}",
                cert_path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::tls(format!(
            "no certificate found in {}",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        Error::tls(format!(
            "cannot read a private key from {}: {e}",
            key_path.display()
        ))
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        Error::tls(format!(
            "unusable private key in {}: {e}",
            key_path.display()
        ))
    })?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        Error::tls(format!(
            "the key in {} does not match the certificate in {}: {e}",
            key_path.display(),
            cert_path.display()
        ))
    })?;
    Ok(certified)
}

/// Starts a thread that reloads `store` from its files on every SIGHUP.
pub fn reload_on_sighup(store: Arc<CertStore>) -> Result<(), Error> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .map_err(|e| Error::io("installing the SIGHUP handler", e))?;
    std::thread::Builder::new()
        .name("edgews-tls-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                match store.reload() {
                    Ok(()) => tracing::info!("TLS certificate reloaded"),
                    Err(e) => {
                        tracing::error!("TLS certificate not reloaded, keeping the old one: {e}")
                    }
                }
            }
        })
        .map_err(|e| Error::io("starting the SIGHUP thread", e))?;
    Ok(())
}
