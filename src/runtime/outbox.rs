//! The write path: everything sent during one loop iteration is batched, and
//! each connection gets one vectored write at the end of the iteration.
//!
//! - Frames are copied (header and payload together) into one cork buffer
//!   shared by all connections of the worker; broadcast frames are stored
//!   once in `shared` and every member's segment only points at them (no
//!   copy, no refcount touch).
//! - The cork is reused as soon as everything in it has been written, even
//!   in the middle of a turn (a connection's replies go out right after its
//!   read), so echo traffic keeps it at the size of one read's replies and a
//!   turn that writes many megabytes neither grows it nor page-faults.
//! - A connection's segments form a linked list through `segs`, so any number
//!   of connections can interleave sends without allocating per message.
//! - What the socket does not take stays in a [`WriteQueue`] that exists only
//!   while the connection has unsent bytes (an idle connection holds none).
//!
//! Control frames (pong, close) never wait behind queued data: in a queue
//! they go right after the frame being written.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};

use crate::protocol::{FrameHeader, OpCode};

/// Broadcast frames up to this size are copied into the cork (once per turn);
/// larger ones are shared by reference.
pub(crate) const STASH_MAX_BYTES: usize = 16 << 10;
/// Data frames from this size up are written straight from the sender's
/// memory ([`Outbox::frame_now`]) when the connection's socket is at hand.
pub(crate) const DIRECT_MIN_BYTES: usize = 64 << 10;
/// The cork is shrunk at the end of a turn in which it grew past this (a
/// rare burst, e.g. one huge message); below it, it keeps its capacity until
/// the worker releases spare memory ([`Outbox::release_spare`]).
const CORK_KEEP_BYTES: usize = 8 << 20;
/// What [`Outbox::release_spare`] leaves the cork.
const CORK_SPARE_BYTES: usize = 64 << 10;
/// Most buffers handed to one `writev`.
const MAX_IOVECS: usize = 64;
const NONE: u32 = u32::MAX;

/// Write state of one slab slot, kept outside the connection so that any
/// connection's output can be reached while another connection is borrowed.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Index of this iteration's batch entry, or NONE.
    batch: u32,
    /// Generation of the connection in this slot (0 when free).
    pub gen: u32,
    /// Room messages dropped for this connection (slow consumer).
    pub dropped: u32,
    /// Bytes the socket has not taken yet, carried across iterations.
    queue: Option<Box<WriteQueue>>,
    /// The last write would have blocked; wait for a writable event.
    pub blocked: bool,
    /// The queue went over the backpressure limit: tell the handler when it drains.
    pub want_drain: bool,
    /// permessage-deflate: 0 off, else the window bits we compress with,
    /// plus [`super::compression::DEDICATED`] for a connection with its own compressor.
    pub deflate: u8,
}

/// A frame copied into the cork by [`Outbox::stash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stashed {
    start: u32,
    len: u32,
}

#[derive(Debug, Clone, Copy)]
enum Piece {
    Cork { start: u32, len: u32 },
    Shared(u32),
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    next: u32,
    piece: Piece,
    control: bool,
    /// Whole WebSocket data frames (so they may merge, and be split again at
    /// frame boundaries); false for raw HTTP bytes.
    frames: bool,
}

#[derive(Debug, Clone, Copy)]
struct Batch {
    key: u32,
    head: u32,
    tail: u32,
    bytes: usize,
}

/// One worker's pending output.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    cork: Vec<u8>,
    shared: Vec<Bytes>,
    segs: Vec<Seg>,
    batch: Vec<Batch>,
    slots: Vec<Slot>,
    /// Entries of `batch` not yet written or forgotten: at 0 the cork, the
    /// shared frames and the segments can be reused.
    live: usize,
    /// Bytes taken by sockets since the last [`Outbox::take_written`].
    written: u64,
}

/// How a flush of one connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything was written.
    All,
    /// Some bytes wait in the queue for the socket to become writable.
    Pending,
}

impl Outbox {
    /// An outbox with table space reserved for `connections` connections.
    pub fn with_capacity(connections: usize) -> Self {
        Outbox {
            slots: Vec::with_capacity(connections),
            ..Default::default()
        }
    }

    /// Makes sure slot `key` exists and is clean (called when a connection is added).
    pub fn open(&mut self, key: usize, gen: u32) {
        if self.slots.len() <= key {
            self.slots.resize_with(key + 1, || Slot {
                batch: NONE,
                ..Slot::default()
            });
        }
        self.slots[key] = Slot {
            batch: NONE,
            gen,
            ..Slot::default()
        };
    }

    /// True when slot `key` holds the connection of generation `gen`.
    pub fn is_live(&self, key: usize, gen: u32) -> bool {
        gen != 0 && self.slots.get(key).is_some_and(|s| s.gen == gen)
    }

    /// True when `key` has output from this turn not yet written.
    pub fn has_pending(&self, key: usize) -> bool {
        self.slots.get(key).is_some_and(|s| s.batch != NONE)
    }

    /// True when nothing at all waits to be written for `key`.
    pub fn is_idle(&self, key: usize) -> bool {
        let s = &self.slots[key];
        s.batch == NONE && s.queue.is_none()
    }

    /// Forgets everything queued for `key` (the connection is gone).
    pub fn forget(&mut self, key: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            if slot.batch != NONE {
                self.batch[slot.batch as usize].key = NONE;
                self.live -= 1;
            }
            *slot = Slot {
                batch: NONE,
                ..Slot::default()
            };
        }
    }

    pub fn slot(&self, key: usize) -> &Slot {
        &self.slots[key]
    }

    pub fn slot_mut(&mut self, key: usize) -> &mut Slot {
        &mut self.slots[key]
    }

    /// Bytes waiting for `key`: its queue plus this iteration's batch.
    pub fn queued_bytes(&self, key: usize) -> usize {
        let slot = &self.slots[key];
        let batch = if slot.batch == NONE {
            0
        } else {
            self.batch[slot.batch as usize].bytes
        };
        batch + slot.queue.as_ref().map_or(0, |q| q.bytes)
    }

    /// Queues one whole unmasked frame for `key`, copying the payload.
    pub fn frame(&mut self, key: usize, opcode: OpCode, rsv1: bool, payload: &[u8]) {
        let header = FrameHeader {
            fin: true,
            rsv1,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; 14];
        let n = header.encode(&mut head);
        let control = opcode.is_control();
        self.reuse();
        let start = self.cork.len();
        self.cork.reserve(n + payload.len());
        self.cork.extend_from_slice(&head[..n]);
        self.cork.extend_from_slice(payload);
        let len = (n + payload.len()) as u32;
        self.push(
            key,
            Piece::Cork {
                start: start as u32,
                len,
            },
            control,
            true,
        );
    }

    /// Sends one whole unmasked data frame for `key` now: what was sent to
    /// `key` before goes first, then the frame is written with one vectored
    /// write from `payload` itself (header + payload, no copy into the
    /// cork). What the socket does not take is copied into the connection's
    /// queue. When older bytes are still waiting, or a write fails, the frame
    /// is queued like [`Outbox::frame`] (a failed socket is then found by the
    /// worker's next write, which drops the connection).
    pub fn frame_now<W: VectoredWrite>(
        &mut self,
        key: usize,
        opcode: OpCode,
        payload: &[u8],
        io: &mut W,
    ) {
        if self.slots[key].batch != NONE && self.write_batch(key, io).is_err() {
            return self.frame(key, opcode, false, payload);
        }
        let slot = &self.slots[key];
        if slot.queue.is_some() || slot.blocked {
            return self.frame(key, opcode, false, payload);
        }
        let header = FrameHeader {
            fin: true,
            rsv1: false,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; 14];
        let n = header.encode(&mut head);
        let total = n + payload.len();
        let mut done = 0;
        let failed = loop {
            let result = if done < n {
                io.write_vectored(&[IoSlice::new(&head[done..n]), IoSlice::new(payload)])
            } else {
                io.write(&payload[done - n..])
            };
            match result {
                Ok(0) => break true,
                Ok(w) => {
                    done += w;
                    self.written += w as u64;
                    if done == total {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if done == 0 && failed {
            // The worker's write of its batch finds the error and drops the connection.
            return self.frame(key, opcode, false, payload);
        }
        // The rest waits in the queue for a writable event: it is the head of
        // the queue, started (nothing may go before it) unless nothing went out.
        let mut rest = BytesMut::with_capacity(total - done);
        if done < n {
            rest.extend_from_slice(&head[done..n]);
        }
        rest.extend_from_slice(&payload[done.saturating_sub(n)..]);
        let slot = &mut self.slots[key];
        let q = slot.queue.get_or_insert_with(Default::default);
        q.push_bytes(rest.freeze(), false);
        q.head_started = done > 0;
        // (After an error the writable event reports it too.)
        slot.blocked = true;
    }

    /// Queues raw bytes (an HTTP response) for `key`.
    pub fn raw(&mut self, key: usize, bytes: &[u8]) {
        self.reuse();
        let start = self.cork.len();
        self.cork.extend_from_slice(bytes);
        self.push(
            key,
            Piece::Cork {
                start: start as u32,
                len: bytes.len() as u32,
            },
            false,
            false,
        );
    }

    /// Copies a small broadcast frame once into this turn's cork; queue it to
    /// members with [`Outbox::stashed`]. Consecutive stashed frames are
    /// contiguous, so a member's frames of one turn merge into one buffer.
    pub fn stash(&mut self, frame: &[u8]) -> Stashed {
        self.reuse();
        let start = self.cork.len() as u32;
        self.cork.extend_from_slice(frame);
        Stashed {
            start,
            len: frame.len() as u32,
        }
    }

    /// Queues a stashed frame for `key`.
    pub fn stashed(&mut self, key: usize, frame: Stashed) {
        self.push(
            key,
            Piece::Cork {
                start: frame.start,
                len: frame.len,
            },
            false,
            true,
        );
    }

    /// Stores a ready frame once for this iteration; returns its index for [`Outbox::shared`].
    pub fn share(&mut self, frame: Bytes) -> u32 {
        self.reuse();
        self.shared.push(frame);
        (self.shared.len() - 1) as u32
    }

    /// Queues the stored frame `idx` for `key` (broadcast: no copy).
    pub fn shared(&mut self, key: usize, idx: u32) {
        self.push(key, Piece::Shared(idx), false, true);
    }

    /// Starts over in the cork when everything in it has been written. Called
    /// by every method that stores bytes, before storing them, and never
    /// between storing and queueing: a [`Stashed`] frame or a shared index
    /// stays valid until the connections it was queued for are written.
    fn reuse(&mut self) {
        if self.live == 0 && !self.batch.is_empty() {
            self.cork.clear();
            self.shared.clear();
            self.segs.clear();
            self.batch.clear();
        }
    }

    fn push(&mut self, key: usize, piece: Piece, control: bool, frames: bool) {
        let len = match piece {
            Piece::Cork { len, .. } => len as usize,
            Piece::Shared(i) => self.shared[i as usize].len(),
        };
        let slot = &mut self.slots[key];
        if slot.batch != NONE {
            let b = &mut self.batch[slot.batch as usize];
            // Bytes that follow the connection's last piece in the cork extend
            // it: pipelined replies and consecutive broadcasts become one buffer.
            let tail = &mut self.segs[b.tail as usize];
            if let (
                Piece::Cork {
                    start,
                    len: tail_len,
                },
                Piece::Cork {
                    start: next,
                    len: add,
                },
            ) = (&mut tail.piece, piece)
            {
                if *start + *tail_len == next && tail.frames && frames && !tail.control && !control
                {
                    *tail_len += add;
                    b.bytes += len;
                    return;
                }
            }
        }
        let seg = self.segs.len() as u32;
        self.segs.push(Seg {
            next: NONE,
            piece,
            control,
            frames,
        });
        if slot.batch == NONE {
            slot.batch = self.batch.len() as u32;
            self.live += 1;
            self.batch.push(Batch {
                key: key as u32,
                head: seg,
                tail: seg,
                bytes: len,
            });
        } else {
            let b = &mut self.batch[slot.batch as usize];
            self.segs[b.tail as usize].next = seg;
            b.tail = seg;
            b.bytes += len;
        }
    }

    /// Drops every queued data byte of `key` that has not started to go out
    /// (before queueing a close frame for a connection that is over its limit).
    pub fn discard_data(&mut self, key: usize) {
        let slot = &mut self.slots[key];
        if slot.batch != NONE {
            self.batch[slot.batch as usize].key = NONE;
            slot.batch = NONE;
            self.live -= 1;
        }
        if let Some(q) = slot.queue.as_mut() {
            q.discard_unstarted();
        }
    }

    /// True when something sent this iteration is not written yet.
    pub fn has_batch(&self) -> bool {
        self.live > 0
    }

    /// Keys with output this iteration, in first-send order; clears the list.
    /// Call [`Outbox::write_batch`] for each, then [`Outbox::end_iteration`].
    pub fn take_batch_keys(&mut self, keys: &mut Vec<usize>) {
        keys.clear();
        keys.extend(
            self.batch
                .iter()
                .filter(|b| b.key != NONE)
                .map(|b| b.key as usize),
        );
    }

    /// Writes `key`'s batch (after its queue, if any) to `io`. Whatever the
    /// socket does not take moves into the connection's queue.
    pub fn write_batch<W: VectoredWrite>(&mut self, key: usize, io: &mut W) -> io::Result<Flushed> {
        let Outbox {
            cork,
            shared,
            segs,
            batch,
            slots,
            live,
            written: total,
        } = self;
        let slot = &mut slots[key];
        if slot.batch == NONE {
            return Ok(if slot.queue.is_some() {
                Flushed::Pending
            } else {
                Flushed::All
            });
        }
        let b = batch[slot.batch as usize];
        batch[slot.batch as usize].key = NONE;
        slot.batch = NONE;
        *live -= 1;
        let piece_bytes = |p: Piece| -> &[u8] {
            match p {
                Piece::Cork { start, len } => &cork[start as usize..(start + len) as usize],
                Piece::Shared(i) => &shared[i as usize],
            }
        };
        if slot.queue.is_some() || slot.blocked {
            // Older bytes are waiting: append behind them, then try the queue.
            let q = slot.queue.get_or_insert_with(Default::default);
            let mut s = b.head;
            while s != NONE {
                let seg = segs[s as usize];
                match seg.piece {
                    Piece::Shared(i) => q.push_bytes(shared[i as usize].clone(), seg.control),
                    p => q.push_copy(piece_bytes(p), seg.control),
                }
                s = seg.next;
            }
            return if slot.blocked {
                Ok(Flushed::Pending)
            } else {
                flush_queue(slot, io, total)
            };
        }
        // Common case: nothing queued, write the segments straight from the batch.
        let (mut seg, mut offset) = (b.head, 0usize);
        loop {
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            let (mut s, mut off) = (seg, offset);
            while s != NONE && n < MAX_IOVECS {
                iov[n] = IoSlice::new(&piece_bytes(segs[s as usize].piece)[off..]);
                n += 1;
                off = 0;
                s = segs[s as usize].next;
            }
            if n == 0 {
                return Ok(Flushed::All);
            }
            // One buffer (the usual case for a reply): plain send is a cheaper
            // syscall than writev.
            let result = if n == 1 {
                io.write(&iov[0])
            } else {
                io.write_vectored(&iov[..n])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut written) => {
                    *total += written as u64;
                    while written > 0 {
                        let left = piece_bytes(segs[seg as usize].piece).len() - offset;
                        if written >= left {
                            written -= left;
                            seg = segs[seg as usize].next;
                            offset = 0;
                        } else {
                            offset += written;
                            written = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    slot.blocked = true;
                    let q = slot.queue.get_or_insert_with(Default::default);
                    while seg != NONE {
                        let sg = segs[seg as usize];
                        match sg.piece {
                            Piece::Shared(i) => {
                                q.push_bytes(shared[i as usize].slice(offset..), sg.control)
                            }
                            // A frame cut by the write has started: it gets a buffer of
                            // its own at the head, and nothing may go before it.
                            // Merged frames: only the frame being written is
                            // started; the frames after it stay behind any
                            // control frame that comes later.
                            p if offset > 0 => {
                                let bytes = piece_bytes(p);
                                let end = if sg.frames {
                                    frame_end(bytes, offset)
                                } else {
                                    bytes.len()
                                };
                                q.push_bytes(
                                    Bytes::copy_from_slice(&bytes[offset..end]),
                                    sg.control,
                                );
                                q.head_started = true;
                                if end < bytes.len() {
                                    q.push_copy(&bytes[end..], false);
                                }
                            }
                            p => q.push_copy(piece_bytes(p), sg.control),
                        }
                        if offset > 0 {
                            q.head_started = true;
                        }
                        offset = 0;
                        seg = sg.next;
                    }
                    return Ok(Flushed::Pending);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes `key`'s queue after a writable event.
    pub fn write_queue<W: VectoredWrite>(&mut self, key: usize, io: &mut W) -> io::Result<Flushed> {
        let slot = &mut self.slots[key];
        slot.blocked = false;
        if slot.queue.is_none() {
            return Ok(Flushed::All);
        }
        flush_queue(slot, io, &mut self.written)
    }

    /// Bytes written to sockets since the last call.
    pub fn take_written(&mut self) -> u64 {
        std::mem::take(&mut self.written)
    }

    /// Clears the iteration's buffers (keeping their capacity, within reason).
    pub fn end_iteration(&mut self) {
        self.cork.clear();
        if self.cork.capacity() > CORK_KEEP_BYTES {
            self.cork = Vec::new();
        }
        self.shared.clear();
        self.segs.clear();
        self.batch.clear();
        self.live = 0;
    }

    /// Bytes of buffer capacity [`Outbox::release_spare`] would free.
    pub fn spare_bytes(&self) -> usize {
        self.cork.capacity().saturating_sub(CORK_SPARE_BYTES)
    }

    /// Gives back the cork's capacity beyond a small working size (called
    /// when the worker has been quiet for a while after a burst).
    pub fn release_spare(&mut self) {
        if self.live == 0 && self.cork.capacity() > CORK_SPARE_BYTES {
            self.cork = Vec::new();
            self.shared = Vec::new();
            self.segs = Vec::new();
            self.batch = Vec::new();
        }
    }
}

/// The end of the frame that contains byte `offset` of `bytes`, a run of
/// whole server frames.
fn frame_end(bytes: &[u8], offset: usize) -> usize {
    let mut pos = 0;
    while pos < bytes.len() {
        let end = match FrameHeader::parse(&bytes[pos..]) {
            Ok(crate::protocol::Parse::Complete((h, hlen))) => pos + hlen + h.payload_len as usize,
            _ => return bytes.len(), // not frames after all: keep it whole
        };
        if end > offset {
            return end.min(bytes.len());
        }
        pos = end;
    }
    bytes.len()
}

/// What the write path needs from a transport.
pub(crate) trait VectoredWrite {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Writes one buffer (a transport may do this more cheaply than a vectored write).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }
}

fn flush_queue<W: VectoredWrite>(
    slot: &mut Slot,
    io: &mut W,
    total: &mut u64,
) -> io::Result<Flushed> {
    let q = slot.queue.as_mut().expect("flush_queue needs a queue");
    q.freeze_tail();
    loop {
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let n = q.bufs.len().min(MAX_IOVECS);
        for (i, (b, _)) in q.bufs.iter().take(n).enumerate() {
            iov[i] = IoSlice::new(b);
        }
        if n == 0 {
            slot.queue = None;
            return Ok(Flushed::All);
        }
        match io.write_vectored(&iov[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                *total += written as u64;
                q.consume(written);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                slot.blocked = true;
                return Ok(Flushed::Pending);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Unsent bytes of one connection, kept only while there are any.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    /// Buffers in send order, each flagged when it is a control frame.
    bufs: VecDeque<(Bytes, bool)>,
    /// Small data frames coalesced here, after `bufs`.
    tail: BytesMut,
    bytes: usize,
    /// `bufs[0]` is partly written: nothing may be put in front of it.
    head_started: bool,
}

impl WriteQueue {
    fn push_copy(&mut self, data: &[u8], control: bool) {
        self.bytes += data.len();
        if control {
            self.push_control(Bytes::copy_from_slice(data));
        } else {
            self.tail.extend_from_slice(data);
        }
    }

    fn push_bytes(&mut self, data: Bytes, control: bool) {
        self.bytes += data.len();
        if control {
            self.push_control(data);
        } else {
            self.freeze_tail();
            self.bufs.push_back((data, false));
        }
    }

    /// Puts a control frame after the frame being written and the control
    /// frames already waiting, ahead of all queued data.
    fn push_control(&mut self, frame: Bytes) {
        let first = usize::from(self.head_started && !self.bufs.is_empty());
        let at = self.bufs.iter().skip(first).take_while(|(_, c)| *c).count() + first;
        self.bufs.insert(at, (frame, true));
    }

    fn freeze_tail(&mut self) {
        if !self.tail.is_empty() {
            let t = self.tail.split().freeze();
            self.bufs.push_back((t, false));
        }
    }

    fn consume(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let (front, _) = self.bufs.front_mut().expect("wrote more than was queued");
            if n >= front.len() {
                n -= front.len();
                self.bufs.pop_front();
                self.head_started = false;
            } else {
                front.advance(n);
                self.head_started = true;
                n = 0;
            }
        }
    }

    /// Keeps only the partly written head and the control frames.
    fn discard_unstarted(&mut self) {
        let keep_head = usize::from(self.head_started && !self.bufs.is_empty());
        let mut i = 0;
        self.bufs.retain(|(_, control)| {
            i += 1;
            i <= keep_head || *control
        });
        self.tail.clear();
        self.bytes = self.bufs.iter().map(|(b, _)| b.len()).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `budget` bytes, then blocks.
    struct Sink {
        data: Vec<u8>,
        budget: usize,
        calls: usize,
        buffers: usize,
    }

    impl VectoredWrite for Sink {
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            self.buffers += bufs.len();
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.budget);
                self.data.extend_from_slice(&b[..take]);
                self.budget -= take;
                n += take;
                if self.budget == 0 {
                    break;
                }
            }
            Ok(n)
        }
    }

    fn sink(budget: usize) -> Sink {
        Sink {
            data: Vec::new(),
            budget,
            calls: 0,
            buffers: 0,
        }
    }

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in payloads {
            v.extend_from_slice(&crate::protocol::server_frame(OpCode::Binary, p));
        }
        v
    }

    #[test]
    fn frame_now_writes_from_the_payload_after_earlier_output() {
        let mut ob = Outbox::default();
        ob.open(0, 1);
        ob.frame(0, OpCode::Text, false, b"first");
        let big = vec![9u8; 100_000];
        let mut s = sink(usize::MAX);
        ob.frame_now(0, OpCode::Binary, &big, &mut s);
        assert_eq!(
            s.data,
            [frames(&[]), text_frame(b"first"), frames(&[&big])].concat()
        );
        // The earlier output went out first, then header and payload in one call.
        assert_eq!((s.calls, s.buffers), (2, 3));
        assert!(ob.is_idle(0));
        assert!(ob.cork.len() < 100, "the payload was copied into the cork");
        assert_eq!(ob.take_written(), s.data.len() as u64);
    }

    #[test]
    fn frame_now_queues_what_the_socket_does_not_take() {
        let mut ob = Outbox::default();
        ob.open(0, 1);
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut s = sink(1000);
        ob.frame_now(0, OpCode::Binary, &big, &mut s);
        let whole = frames(&[&big]);
        assert_eq!(s.data, whole[..1000]);
        assert!(ob.slot(0).blocked);
        assert_eq!(ob.queued_bytes(0), whole.len() - 1000);
        // A pong sent meanwhile waits for the started frame, then goes out.
        ob.frame(0, OpCode::Pong, false, b"p");
        assert_eq!(ob.write_batch(0, &mut s).unwrap(), Flushed::Pending);
        ob.end_iteration();
        s.budget = usize::MAX;
        assert_eq!(ob.write_queue(0, &mut s).unwrap(), Flushed::All);
        let pong = crate::protocol::server_frame(OpCode::Pong, b"p");
        assert_eq!(s.data, [&whole[..], &pong[..]].concat());
        assert!(ob.is_idle(0));
    }

    #[test]
    fn frame_now_on_a_full_socket_lets_a_close_go_first() {
        let mut ob = Outbox::default();
        ob.open(0, 1);
        let big = vec![1u8; 70_000];
        let mut s = sink(0);
        ob.frame_now(0, OpCode::Binary, &big, &mut s);
        assert!(s.data.is_empty());
        assert!(ob.slot(0).blocked);
        // Over the limit: the unstarted data is dropped, the close goes out alone.
        ob.discard_data(0);
        ob.frame(0, OpCode::Close, false, &[3, 232]);
        assert_eq!(ob.write_batch(0, &mut s).unwrap(), Flushed::Pending);
        s.budget = usize::MAX;
        assert_eq!(ob.write_queue(0, &mut s).unwrap(), Flushed::All);
        assert_eq!(
            s.data,
            crate::protocol::server_frame(OpCode::Close, &[3, 232])
        );
        // Without the discard, the close still goes before the unstarted frame.
        ob.end_iteration();
        let mut s = sink(0);
        ob.frame_now(0, OpCode::Binary, &big, &mut s);
        ob.frame(0, OpCode::Close, false, &[3, 232]);
        ob.write_batch(0, &mut s).unwrap();
        s.budget = usize::MAX;
        ob.write_queue(0, &mut s).unwrap();
        let close = crate::protocol::server_frame(OpCode::Close, &[3, 232]);
        assert_eq!(s.data, [&close[..], &frames(&[&big])[..]].concat());
    }

    fn text_frame(p: &[u8]) -> Vec<u8> {
        crate::protocol::server_frame(OpCode::Text, p).to_vec()
    }

    #[test]
    fn one_write_per_connection_per_iteration() {
        let mut ob = Outbox::default();
        ob.open(0, 1);
        ob.open(1, 1);
        let shared = ob.share(crate::protocol::server_frame(OpCode::Binary, b"all"));
        ob.frame(0, OpCode::Binary, false, b"a");
        ob.frame(1, OpCode::Binary, false, b"b");
        ob.shared(0, shared);
        ob.shared(1, shared);
        ob.frame(0, OpCode::Binary, false, &[7; 70_000]);
        let mut keys = Vec::new();
        ob.take_batch_keys(&mut keys);
        assert_eq!(keys, [0, 1]);
        let (mut s0, mut s1) = (sink(usize::MAX), sink(usize::MAX));
        assert_eq!(ob.write_batch(0, &mut s0).unwrap(), Flushed::All);
        assert_eq!(ob.write_batch(1, &mut s1).unwrap(), Flushed::All);
        assert_eq!((s0.calls, s1.calls), (1, 1));
        assert_eq!(s0.data, frames(&[b"a", b"all", &[7; 70_000]]));
        assert_eq!(s1.data, frames(&[b"b", b"all"]));
        ob.end_iteration();
        assert_eq!(ob.queued_bytes(0), 0);
    }

    #[test]
    fn consecutive_frames_go_out_as_one_buffer() {
        let mut ob = Outbox::default();
        ob.open(0, 1);
        ob.open(1, 1);
        // Pipelined replies, then two broadcasts stashed for both connections.
        ob.frame(0, OpCode::Text, false, b"r1");
        ob.frame(0, OpCode::Text, false, b"r2");
        let b1 = ob.stash(&crate::protocol::server_frame(OpCode::Text, b"b1"));
        ob.stashed(0, b1);
        ob.stashed(1, b1);
        let b2 = ob.stash(&crate::protocol::server_frame(OpCode::Text, b"b2"));
        ob.stashed(0, b2);
        ob.stashed(1, b2);
        let (mut s0, mut s1) = (sink(usize::MAX), sink(usize::MAX));
        ob.write_batch(0, &mut s0).unwrap();
        ob.write_batch(1, &mut s1).unwrap();
        // Connection 0: r1 r2 b1 are contiguous in the cork, b2 follows b1 directly.
        assert_eq!((s0.calls, s0.buffers), (1, 1));
        assert_eq!((s1.calls, s1.buffers), (1, 1));
        let text = |parts: &[&[u8]]| -> Vec<u8> {
            let mut v = Vec::new();
            for p in parts {
                v.extend_from_slice(&crate::protocol::server_frame(OpCode::Text, p));
            }
            v
        };
        assert_eq!(s0.data, text(&[b"r1", b"r2", b"b1", b"b2"]));
        assert_eq!(s1.data, text(&[b"b1", b"b2"]));
        // HTTP bytes never merge with frames (frames may be split apart later).
        ob.end_iteration();
        ob.raw(0, b"HTTP/1.1 101 ...\r\n\r\n");
        ob.frame(0, OpCode::Text, false, b"hi");
        let mut s = sink(usize::MAX);
        ob.write_batch(0, &mut s).unwrap();
        assert_eq!(s.buffers, 2);
    }

    #[test]
    fn partial_writes_queue_the_rest_in_order() {
        let mut ob = Outbox::default();
        ob.open(3, 1);
        let expected = frames(&[b"first", &[1; 1000], b"third"]);
        ob.frame(3, OpCode::Binary, false, b"first");
        ob.frame(3, OpCode::Binary, false, &[1; 1000]);
        ob.frame(3, OpCode::Binary, false, b"third");
        let mut s = sink(10);
        assert_eq!(ob.write_batch(3, &mut s).unwrap(), Flushed::Pending);
        ob.end_iteration();
        assert!(ob.slot(3).blocked);
        assert_eq!(ob.queued_bytes(3), expected.len() - 10);
        // Next iteration: more output goes behind the queue, not around it.
        ob.frame(3, OpCode::Binary, false, b"fourth");
        s.budget = 500;
        assert_eq!(
            ob.write_batch(3, &mut s).unwrap(),
            Flushed::Pending,
            "still blocked"
        );
        assert_eq!(s.data.len(), 10, "no write while blocked");
        ob.end_iteration();
        assert_eq!(ob.write_queue(3, &mut s).unwrap(), Flushed::Pending);
        s.budget = usize::MAX;
        assert_eq!(ob.write_queue(3, &mut s).unwrap(), Flushed::All);
        let mut all = expected;
        all.extend(frames(&[b"fourth"]));
        assert_eq!(s.data, all);
        assert_eq!(ob.queued_bytes(3), 0);
        assert!(ob.slot(3).queue.is_none(), "an empty queue is freed");
    }

    #[test]
    fn control_frames_jump_the_data_queue_but_not_a_started_frame() {
        let mut ob = Outbox::default();
        ob.open(0, 1);
        ob.frame(0, OpCode::Binary, false, &[1; 100]);
        ob.frame(0, OpCode::Binary, false, &[2; 100]);
        let mut s = sink(50);
        ob.write_batch(0, &mut s).unwrap();
        ob.end_iteration();
        ob.frame(0, OpCode::Pong, false, b"p1");
        ob.frame(0, OpCode::Binary, false, &[3; 10]);
        ob.frame(0, OpCode::Pong, false, b"p2");
        ob.write_batch(0, &mut s).unwrap();
        ob.end_iteration();
        s.budget = usize::MAX;
        assert_eq!(ob.write_queue(0, &mut s).unwrap(), Flushed::All);
        let mut expected = frames(&[&[1; 100]]);
        expected.extend_from_slice(&crate::protocol::server_frame(OpCode::Pong, b"p1"));
        expected.extend_from_slice(&crate::protocol::server_frame(OpCode::Pong, b"p2"));
        expected.extend(frames(&[&[2; 100], &[3; 10]]));
        assert_eq!(s.data, expected);
    }

    #[test]
    fn discard_keeps_started_frame_and_controls() {
        let mut ob = Outbox::default();
        ob.open(0, 1);
        ob.frame(0, OpCode::Binary, false, &[1; 100]);
        ob.frame(0, OpCode::Binary, false, &[2; 100]);
        let mut s = sink(20);
        ob.write_batch(0, &mut s).unwrap();
        ob.end_iteration();
        ob.discard_data(0);
        ob.frame(0, OpCode::Close, false, &[3, 232]);
        ob.write_batch(0, &mut s).unwrap();
        ob.end_iteration();
        s.budget = usize::MAX;
        ob.write_queue(0, &mut s).unwrap();
        let mut expected = frames(&[&[1; 100]]);
        expected.extend_from_slice(&crate::protocol::server_frame(OpCode::Close, &[3, 232]));
        assert_eq!(s.data, expected);
    }

    #[test]
    fn the_cork_is_reused_once_everything_in_it_is_written() {
        // 100 connections, each answered with 16 KiB right after its read (as
        // the worker does): the cork stays at one reply, not 1.6 MB per turn.
        let mut ob = Outbox::default();
        for key in 0..100 {
            ob.open(key, 1);
        }
        let reply = vec![5u8; 16 << 10];
        for key in 0..100 {
            ob.frame(key, OpCode::Binary, false, &reply);
            let mut s = sink(usize::MAX);
            assert_eq!(ob.write_batch(key, &mut s).unwrap(), Flushed::All);
            assert_eq!(s.data, frames(&[&reply]));
        }
        assert!(
            ob.cork.capacity() < 2 * (reply.len() + 14),
            "{}",
            ob.cork.capacity()
        );
        // A batch still waiting keeps the cork: a stashed frame stays valid.
        let b = ob.stash(&crate::protocol::server_frame(OpCode::Text, b"all"));
        ob.stashed(1, b);
        ob.frame(0, OpCode::Text, false, b"own");
        ob.stashed(0, b);
        let (mut s0, mut s1) = (sink(usize::MAX), sink(usize::MAX));
        ob.write_batch(0, &mut s0).unwrap();
        ob.frame(2, OpCode::Text, false, b"later");
        ob.write_batch(1, &mut s1).unwrap();
        let text = |parts: &[&[u8]]| -> Vec<u8> {
            let mut v = Vec::new();
            for p in parts {
                v.extend_from_slice(&crate::protocol::server_frame(OpCode::Text, p));
            }
            v
        };
        assert_eq!(s0.data, text(&[b"own", b"all"]));
        assert_eq!(s1.data, text(&[b"all"]));
        let mut s2 = sink(usize::MAX);
        ob.write_batch(2, &mut s2).unwrap();
        assert_eq!(s2.data, text(&[b"later"]));
        assert!(!ob.has_batch());
    }

    #[test]
    fn forgotten_connections_are_skipped() {
        let mut ob = Outbox::default();
        ob.open(0, 1);
        ob.frame(0, OpCode::Text, false, b"x");
        ob.forget(0);
        let mut keys = Vec::new();
        ob.take_batch_keys(&mut keys);
        assert!(keys.is_empty());
    }
}
