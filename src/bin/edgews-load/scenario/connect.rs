//! `connect`: opening handshakes as fast as the server takes them, with a
//! bounded number in progress, until N connections are open.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Shared;
use crate::runner::{Io, Scenario};

pub struct Connect {
    target: usize,
    shared: Arc<Shared>,
    pub opened: usize,
    pub failed: usize,
    /// When the last handshake of this thread completed (ns since the clock).
    pub last_ns: u64,
}

impl Connect {
    pub fn new(target: usize, shared: Arc<Shared>) -> Connect {
        Connect {
            target,
            shared,
            opened: 0,
            failed: 0,
            last_ns: 0,
        }
    }
}

impl Scenario for Connect {
    fn on_open(&mut self, _io: &mut Io<'_>, _id: usize, now: u64) {
        self.opened += 1;
        self.last_ns = now;
        self.shared.opened.fetch_add(1, Ordering::Relaxed);
    }

    fn on_message(&mut self, _io: &mut Io<'_>, _id: usize, _payload: &[u8], _now: u64) {}

    fn on_closed(&mut self, _id: usize, _code: Option<u16>) {
        self.failed += 1;
        self.shared.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn tick(&mut self, _io: &mut Io<'_>, _now: u64) -> bool {
        self.opened + self.failed < self.target
    }
}
