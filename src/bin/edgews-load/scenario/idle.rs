//! `idle`: open N connections and hold them, sending nothing, until the
//! deadline (the server's memory per connection is measured by `main`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Shared;
use crate::runner::{Io, Scenario};

pub struct Idle {
    shared: Arc<Shared>,
    pub opened: usize,
    pub lost: usize,
}

impl Idle {
    pub fn new(shared: Arc<Shared>) -> Idle {
        Idle {
            shared,
            opened: 0,
            lost: 0,
        }
    }
}

impl Scenario for Idle {
    fn on_open(&mut self, _io: &mut Io<'_>, _id: usize, _now: u64) {
        self.opened += 1;
        self.shared.opened.fetch_add(1, Ordering::Relaxed);
    }

    fn on_message(&mut self, _io: &mut Io<'_>, _id: usize, _payload: &[u8], _now: u64) {}

    fn on_closed(&mut self, _id: usize, _code: Option<u16>) {
        self.lost += 1;
        self.shared.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn tick(&mut self, _io: &mut Io<'_>, _now: u64) -> bool {
        true
    }
}
