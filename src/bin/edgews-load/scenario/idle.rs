//! `idle`: open N connections and hold them until the deadline (the server's
//! memory per connection is measured by `main`). With a hello size, each
//! connection first sends one text message and counts as open once the echo
//! is back; otherwise it sends nothing at all. The connections are released
//! when `main` sets the shared start time (after its measurement), or at the
//! deadline.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use edgews::protocol::deflate::Deflater;
use edgews::protocol::OpCode;

use super::Shared;
use crate::runner::{Io, Scenario};

pub struct Idle {
    shared: Arc<Shared>,
    /// The hello message (empty: none).
    hello: Vec<u8>,
    /// The hello is sent compressed (RSV1).
    compressed: bool,
    pub opened: usize,
    pub lost: usize,
}

impl Idle {
    pub fn new(shared: Arc<Shared>, hello: usize, compressed: bool) -> Idle {
        // Text that compresses like chat traffic does, not like zeros.
        const FILLER: &[u8] = b"the quick brown fox jumps over the lazy dog 0123456789";
        let mut hello: Vec<u8> = FILLER.iter().copied().cycle().take(hello).collect();
        if compressed && !hello.is_empty() {
            // A 512-byte window fits whatever client_max_window_bits the server asks for.
            let mut z = Vec::new();
            Deflater::new(9, true).compress(&hello, &mut z);
            hello = z;
        }
        Idle {
            shared,
            hello,
            compressed,
            opened: 0,
            lost: 0,
        }
    }

    fn count_open(&mut self) {
        self.opened += 1;
        self.shared.opened.fetch_add(1, Ordering::Relaxed);
    }
}

impl Scenario for Idle {
    fn on_open(&mut self, io: &mut Io<'_>, id: usize, _now: u64) {
        if self.hello.is_empty() {
            self.count_open();
        } else {
            io.send_with(id, OpCode::Text, self.compressed, &self.hello);
        }
    }

    fn on_message(&mut self, _io: &mut Io<'_>, _id: usize, _payload: &[u8], _now: u64) {
        // Only the echo of the hello ever comes (one per connection).
        if !self.hello.is_empty() {
            self.count_open();
        }
    }

    fn on_closed(&mut self, _id: usize, _code: Option<u16>) {
        self.lost += 1;
        self.shared.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn tick(&mut self, _io: &mut Io<'_>, _now: u64) -> bool {
        // `main` sets the start time only to say "done".
        self.shared.start_ns() == 0
    }
}
