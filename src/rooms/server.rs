//! Starting the room server: the engine with a [`RoomHandler`] on every
//! worker and the state they share.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::runtime::tls::{reload_on_sighup, CertStore};
use crate::runtime::{Error, Running, Server, ServerHandle};

use super::admin::AdminListener;
use super::auth::Keys;
use super::config::{BrokerKind, RoomServerConfig};
use super::directory::Directory;
use super::handler::RoomHandler;
use super::history::History;
use super::moderation::Moderation;
use super::status::{RoomStatus, WorkerMetrics};

/// What every worker's handler shares: the configuration, the keys, the
/// directory of users and rooms, and the counters (one set per worker).
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub cfg: RoomServerConfig,
    /// Token verification.
    pub keys: Keys,
    /// Users and rooms.
    pub dir: Directory,
    /// Room settings, moderation state and server-wide bans.
    pub moderation: Moderation,
    /// Room history (offsets, epochs, the store) and the per-room ordering lock.
    pub history: History,
    /// Counters, by worker.
    pub metrics: Box<[WorkerMetrics]>,
    /// The engine's handle, once bound.
    pub handle: OnceLock<ServerHandle>,
    /// Dev mode: `GET /dev/token` mints tokens.
    pub dev_tokens: AtomicBool,
    /// The server clock's origin (rate limits).
    pub started: Instant,
    /// The scale-out broker (`broker = "redis"`); `None`: one node.
    pub broker: Option<super::broker::Broker>,
}

/// The room server, bound and ready to run.
///
/// ```no_run
/// use edgews::rooms::auth::Keys;
/// use edgews::rooms::server::RoomServer;
/// use edgews::rooms::RoomServerConfig;
///
/// let cfg = RoomServerConfig::default();
/// let keys = Keys::hs256(b"a long random secret", &cfg.auth);
/// let server = RoomServer::bind(cfg, keys)?;
/// edgews::runtime::shutdown_on_signals(server.handle())?;
/// server.run()?;
/// # Ok::<(), edgews::runtime::Error>(())
/// ```
#[derive(Debug)]
pub struct RoomServer {
    server: Server<RoomHandler>,
    shared: Arc<Shared>,
    admin: Option<AdminListener>,
}

impl RoomServer {
    /// Binds the room server (engine workers + room handler). `keys`
    /// verifies tokens. With `cfg.tls`, the certificate is loaded now and
    /// reloaded on SIGHUP.
    pub fn bind(cfg: RoomServerConfig, keys: Keys) -> Result<RoomServer, Error> {
        let mut engine = cfg.engine_config().map_err(Error::config)?;
        if let Some(tls) = &cfg.tls {
            let store = Arc::new(CertStore::load(&tls.cert_file, &tls.key_file)?);
            engine = engine.tls(Some(store.server_config()?));
            reload_on_sighup(store)?;
        }
        let history = History::open(&cfg.history)
            .map_err(|e| Error::config(format!("history.store: {e}")))?;
        let shared = Arc::new(Shared {
            history,
            metrics: (0..engine.workers)
                .map(|_| WorkerMetrics::default())
                .collect(),
            keys,
            dir: Directory::default(),
            moderation: Moderation::default(),
            handle: OnceLock::new(),
            dev_tokens: AtomicBool::new(false),
            started: Instant::now(),
            broker: (cfg.broker == BrokerKind::Redis)
                .then(|| super::broker::Broker::new(cfg.redis.clone())),
            cfg,
        });
        let engine = engine.app_status(Some(Arc::new(RoomStatus(shared.clone()))));
        let server = Server::bind(engine, |i| RoomHandler::new(shared.clone(), i))?;
        let _ = shared.handle.set(server.handle());
        super::broker::Broker::start(&shared)
            .map_err(|e| Error::io("starting the Redis broker threads", e))?;
        let admin = AdminListener::bind(&shared)?;
        Ok(RoomServer {
            server,
            shared,
            admin,
        })
    }

    /// Serves `GET /dev/token?sub=..&name=..` (dev mode only: anyone who can
    /// reach the server gets a token).
    #[must_use]
    pub fn with_dev_tokens(self) -> Self {
        self.shared
            .dev_tokens
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The address of the admin HTTP API (`admin.listen`), if it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(AdminListener::local_addr)
    }

    /// The engine's handle (shutdown, stats).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The state the workers share.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts the workers on threads of their own. After the server has
    /// shut down, close the history store ([`History::close`] on
    /// [`RoomServer::shared`]), which [`RoomServer::run`] does itself.
    pub fn start(self) -> Result<Running, Error> {
        if let Some(admin) = self.admin {
            admin.spawn(self.server.handle())?;
        }
        self.server.start()
    }

    /// Starts the workers and waits until they have shut down; then, with a
    /// broker, sends what is queued and leaves the cluster, and closes the
    /// history store (a clean stop: the file store keeps its epochs).
    pub fn run(self) -> Result<(), Error> {
        if let Some(admin) = self.admin {
            admin.spawn(self.server.handle())?;
        }
        let shared = self.shared.clone();
        let result = self.server.run();
        if let Some(b) = &shared.broker {
            b.stop(std::time::Duration::from_secs(3));
        }
        if let Err(e) = shared.history.close() {
            tracing::error!(error = %e, "closing the history store failed");
        }
        result
    }

    /// Graceful drain for rolling deploys: tells every authenticated
    /// client to reconnect after a delay spread evenly over
    /// `drain_window_secs` (`{"type":"drain","reconnect_after_ms":..}`, the
    /// event `edgews.js` already honours), then
    /// shuts down (stop accepting, close 1001). Returns the clients told.
    pub fn drain(shared: &Shared) -> usize {
        let Some(h) = shared.handle.get() else {
            return 0;
        };
        let window_ms = shared.cfg.drain_window_secs * 1000;
        let mut told = 0;
        if window_ms > 0 {
            let conns: Vec<_> = shared
                .dir
                .snapshot()
                .users
                .iter()
                .flat_map(|(u, _, _)| u.connections())
                .collect();
            let n = conns.len().max(1) as u64;
            for (i, c) in conns.iter().enumerate() {
                // Evenly spread, in an order that mixes users and workers.
                let slot = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % n;
                let after = window_ms * slot / n;
                let text = format!(
                    "{{\"type\":\"drain\",\"reconnect_after_ms\":{after},\"reason\":\"shutdown\"}}"
                );
                if h.send(*c, crate::protocol::Message::Text(&text)) {
                    told += 1;
                }
            }
        }
        tracing::info!(
            clients = told,
            window_ms,
            "draining: clients told to reconnect"
        );
        h.shutdown();
        told
    }

    /// Like [`crate::runtime::shutdown_on_signals`], but the first
    /// SIGINT/SIGTERM [drains](RoomServer::drain) first.
    pub fn drain_on_signals(&self) -> Result<(), Error> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|e| Error::io("installing signal handlers", e))?;
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("edgews-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if sig == SIGHUP {
                        tracing::info!("SIGHUP: reload requested (only a TLS certificate reloads)");
                        continue;
                    }
                    let h = shared.handle.get();
                    if h.is_some_and(|h| h.is_shutting_down()) {
                        tracing::warn!(signal = sig, "second signal: exiting now");
                        std::process::exit(130);
                    }
                    tracing::info!(signal = sig, "draining (signal again to force)");
                    RoomServer::drain(&shared);
                }
            })
            .map_err(|e| Error::io("starting the signal thread", e))?;
        Ok(())
    }
}
