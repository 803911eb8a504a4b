//! Starting a server: one listener, poller and thread per worker.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Poll, Waker};

use super::config::Config;
use super::error::Error;
use super::handle::{Command, Link, ServerHandle, Shared};
use super::handler::Handler;
use super::listener;
use super::stats::WorkerStats;
use super::worker::{self, WAKER};

/// A bound, not yet running server.
///
/// ```no_run
/// use edgews::protocol::Message;
/// use edgews::runtime::{Accept, Config, Conn, Handler, Reject, Request, Server};
///
/// struct Echo;
/// impl Handler for Echo {
///     type Data = ();
///     fn on_upgrade(&mut self, _req: &Request<'_>) -> Result<Accept<()>, Reject> {
///         Ok(Accept::new(()))
///     }
///     fn on_message(&mut self, conn: &mut Conn<'_, ()>, msg: Message<'_>) {
///         conn.send(msg);
///     }
/// }
///
/// let server = Server::bind(Config::default().listen("127.0.0.1:9001".parse().unwrap()), |_worker| Echo)?;
/// println!("listening on {}", server.local_addr());
/// server.run()?; // until shutdown
/// # Ok::<(), edgews::runtime::Error>(())
/// ```
#[derive(Debug)]
pub struct Server<H: Handler> {
    parts: Vec<(Poll, TcpListener, mpsc::Receiver<Command>, H)>,
    admin: Option<std::net::TcpListener>,
    handle: ServerHandle,
}

impl<H: Handler> Server<H> {
    /// Binds `config.listen` once per worker and builds each worker's handler
    /// with `factory(worker_index)`. Nothing runs until [`Server::start`] or
    /// [`Server::run`]. Binding to port 0 picks a free port for all workers.
    ///
    /// On Linux with glibc, the first bind fixes malloc's mmap threshold at
    /// 1 MiB for the whole process, so large freed buffers go back to the
    /// system (glibc otherwise raises the threshold after each large free).
    pub fn bind(config: Config, mut factory: impl FnMut(usize) -> H) -> Result<Self, Error> {
        config.validate()?;
        super::memory::tune_allocator();
        let admin = config
            .admin_listen
            .map(crate::http::admin::bind)
            .transpose()?;
        let first = listener::bind(config.listen).map_err(|e| Error::bind(config.listen, e))?;
        let local_addr = first
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        let mut listeners = vec![first];
        for _ in 1..config.workers {
            listeners.push(listener::bind(local_addr).map_err(|e| Error::bind(local_addr, e))?);
        }
        let mut parts = Vec::with_capacity(config.workers);
        let mut links = Vec::with_capacity(config.workers);
        for (i, listener) in listeners.into_iter().enumerate() {
            let poll = Poll::new().map_err(|e| Error::io("creating a poller", e))?;
            let waker =
                Waker::new(poll.registry(), WAKER).map_err(|e| Error::io("creating a waker", e))?;
            let (tx, rx) = mpsc::channel();
            links.push(Link::new(tx, waker));
            parts.push((poll, listener, rx, factory(i)));
        }
        let handle = ServerHandle {
            shared: Arc::new(Shared {
                stats: (0..config.workers)
                    .map(|_| Arc::new(WorkerStats::default()))
                    .collect(),
                links,
                ips: super::ip_limit::IpCounts::new(config.max_connections_per_ip),
                cfg: Arc::new(config),
                shutting_down: AtomicBool::new(false),
                stopped: AtomicBool::new(false),
                admin_addr: admin.as_ref().and_then(|l| l.local_addr().ok()),
                open: AtomicUsize::new(0),
                started: Instant::now(),
                local_addr,
            }),
        };
        Ok(Server {
            parts,
            admin,
            handle,
        })
    }

    /// The address the workers listen on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.handle.local_addr()
    }

    /// A handle for publishing, sending, stats and shutdown from any thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Starts the workers on threads of their own.
    pub fn start(self) -> Result<Running, Error> {
        let mut threads = Vec::with_capacity(self.parts.len());
        for (i, (poll, listener, rx, handler)) in self.parts.into_iter().enumerate() {
            let t = worker::spawn(i as u16, poll, listener, rx, handler, self.handle.clone())
                .map_err(|e| Error::io("starting a worker thread", e))?;
            threads.push(t);
        }
        let admin = match self.admin {
            Some(listener) => {
                let addr = listener.local_addr().ok();
                tracing::info!(admin = ?addr, "health, metrics and status on the admin address only");
                Some(crate::http::admin::spawn(listener, self.handle.clone())?)
            }
            None => None,
        };
        tracing::info!(addr = %self.handle.local_addr(), workers = threads.len(), "listening");
        Ok(Running {
            threads,
            admin,
            handle: self.handle,
        })
    }

    /// Starts the workers and waits until they have shut down.
    pub fn run(self) -> Result<(), Error> {
        self.start()?.join()
    }
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    threads: Vec<JoinHandle<()>>,
    admin: Option<JoinHandle<()>>,
    handle: ServerHandle,
}

impl Running {
    /// The server's handle.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// Waits until every worker has stopped (after [`ServerHandle::shutdown`]).
    pub fn join(self) -> Result<(), Error> {
        let mut result = Ok(());
        for (i, t) in self.threads.into_iter().enumerate() {
            if t.join().is_err() {
                result = Err(Error::worker_panicked(i));
            }
        }
        self.handle
            .shared
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(admin) = self.admin {
            let _ = admin.join();
        }
        result
    }

    /// Shuts down gracefully and waits for the workers.
    pub fn shutdown(self) -> Result<(), Error> {
        self.handle.shutdown();
        self.join()
    }
}
