//! A published message: framed once, compressed at most once.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::protocol::{server_frame, FrameHeader, OpCode};

/// One publish, shared by every worker it goes to.
#[derive(Debug)]
pub(crate) struct Published {
    /// The uncompressed frame, queued as is to members without compression.
    pub frame: Bytes,
    header_len: usize,
    pub opcode: OpCode,
    /// The frame compressed without context (window 15), for every member in
    /// shared compression mode on any worker; `None` when the message is under
    /// the compression threshold. Made by the first worker that needs it.
    pub deflated: OnceLock<Option<Bytes>>,
}

impl Published {
    pub fn new(opcode: OpCode, payload: &[u8]) -> Self {
        Published {
            frame: server_frame(opcode, payload),
            header_len: FrameHeader::encoded_len(payload.len() as u64, false),
            opcode,
            deflated: OnceLock::new(),
        }
    }

    /// The message payload (inside the uncompressed frame).
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.header_len..]
    }
}
