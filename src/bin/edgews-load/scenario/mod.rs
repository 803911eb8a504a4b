//! The load scenarios. Each runs inside one loop thread ([`crate::runner`])
//! and returns its counters, which `main` merges over threads.

pub mod connect;
pub mod echo;
pub mod fanout;
pub mod idle;
pub mod session;
pub mod wire;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// State shared by the threads of one run.
#[derive(Default)]
pub struct Shared {
    /// Connections whose handshake completed.
    pub opened: AtomicUsize,
    /// Connections that failed or were closed.
    pub failed: AtomicUsize,
    /// Fan-out: subscribers that have seen a sync message (so are subscribed).
    pub synced: AtomicUsize,
    /// Fan-out: when measuring starts, in ns since the clock (0: not yet).
    pub start_ns: AtomicU64,
}

impl Shared {
    pub fn start_ns(&self) -> u64 {
        self.start_ns.load(Ordering::Acquire)
    }
}

/// The measured window, in ns since the run's clock.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub from: u64,
    pub to: u64,
}
