//! Raw DEFLATE streams on stock zlib (through `libz-sys`), for the
//! per-connection ("dedicated") compressors and inflaters.
//!
//! Why not the zlib-rs backend used everywhere else: its compressor keeps a
//! fixed 64 Ki-entry hash table (128 KiB) whatever `memLevel` asks for, and
//! its inflater allocates ~20 KiB whatever the window. Measured per stream
//! after one 1 KiB message (RSS growth over 2,000 streams): zlib-rs
//! compressor 139 KB at windowBits 9 / memLevel 1, stock zlib 9.3 KB; zlib-rs
//! inflater 20 KB at windowBits 9, stock zlib 7.8 KB. Stock zlib sizes its
//! hash table by `memLevel` (`2^(memLevel+7)` entries), which is what makes
//! the small presets of [`super::CompressorPreset`] possible.
//!
//! This is the only module of the protocol layer with `unsafe`: each block
//! is a call into zlib on a stream this module initialised and owns, or the
//! bookkeeping of the output bytes zlib reports having written.

use std::ffi::{c_int, c_uint, c_void};
use std::ptr;

use libz_sys as z;

/// Whether a call ended its stream (BFINAL seen) or may go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Progress {
    /// More input or output room may be used.
    Going,
    /// The deflate stream ended (inflate only).
    Ended,
}

/// zlib's allocation callback: plain `malloc`, like zlib's own default, so
/// pages that zlib never touches cost no resident memory.
unsafe extern "C" fn zalloc(_opaque: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    match (items as usize).checked_mul(size as usize) {
        // SAFETY: malloc has no preconditions; zlib checks for null.
        Some(bytes) => unsafe { libc::malloc(bytes) },
        None => ptr::null_mut(),
    }
}

/// zlib's release callback, for memory from [`zalloc`].
unsafe extern "C" fn zfree(_opaque: *mut c_void, address: *mut c_void) {
    // SAFETY: zlib only frees what it got from `zalloc` (malloc), once.
    unsafe { libc::free(address) }
}

/// A fresh, not yet initialised stream, boxed: zlib keeps a pointer back to
/// the `z_stream` in its state and checks it on every call, so it must never
/// move.
fn new_stream() -> Box<z::z_stream> {
    Box::new(z::z_stream {
        next_in: ptr::null_mut(),
        avail_in: 0,
        total_in: 0,
        next_out: ptr::null_mut(),
        avail_out: 0,
        total_out: 0,
        msg: ptr::null_mut(),
        state: ptr::null_mut(),
        zalloc,
        zfree,
        opaque: ptr::null_mut(),
        data_type: 0,
        adler: 0,
        reserved: 0,
    })
}

/// Points the stream at `input` and at the spare capacity of `out`.
fn set_buffers(strm: &mut z::z_stream, input: &[u8], out: &mut Vec<u8>) {
    strm.next_in = input.as_ptr().cast_mut();
    strm.avail_in = c_uint::try_from(input.len()).unwrap_or(c_uint::MAX);
    let spare = out.spare_capacity_mut();
    strm.next_out = spare.as_mut_ptr().cast();
    strm.avail_out = c_uint::try_from(spare.len()).unwrap_or(c_uint::MAX);
}

/// Takes the output zlib wrote into `out`'s spare capacity, clears the
/// stream's pointers, and returns how many input bytes it used.
fn take_buffers(strm: &mut z::z_stream, input: &[u8], out: &mut Vec<u8>) -> usize {
    let written = out.capacity() - out.len() - strm.avail_out as usize;
    // SAFETY: zlib initialised exactly the `written` bytes it advanced
    // `next_out` over, all within the spare capacity given to it.
    unsafe { out.set_len(out.len() + written) };
    let used = input.len() - strm.avail_in as usize;
    strm.next_in = ptr::null_mut();
    strm.avail_in = 0;
    strm.next_out = ptr::null_mut();
    strm.avail_out = 0;
    used
}

/// A raw (headerless) DEFLATE compressor with a chosen window and `memLevel`.
pub(super) struct RawDeflate {
    strm: Box<z::z_stream>,
}

// SAFETY: the stream is owned (no shared pointers into it leave this type)
// and zlib keeps no thread-local state, so it may move between threads.
unsafe impl Send for RawDeflate {}

impl RawDeflate {
    /// A compressor at `level` (0–9) with a window of `2^window_bits` bytes
    /// (9–15) and `memLevel` `mem_level` (1–9); out-of-range values are clamped.
    pub fn new(level: u8, window_bits: u8, mem_level: u8) -> Self {
        let mut strm = new_stream();
        // SAFETY: `strm` is a fresh stream with valid allocation callbacks and
        // null buffers; the version and size are those of the linked zlib.
        let rc = unsafe {
            z::deflateInit2_(
                &mut *strm,
                c_int::from(level.min(9)),
                z::Z_DEFLATED,
                -c_int::from(window_bits.clamp(9, 15)),
                c_int::from(mem_level.clamp(1, 9)),
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as c_int,
            )
        };
        // Parameters are clamped to valid values, so only an allocation failure is left.
        assert_eq!(rc, z::Z_OK, "deflateInit2 failed: out of memory");
        RawDeflate { strm }
    }

    /// Compresses `input` with a sync flush into the spare capacity of `out`
    /// (growing its length), and returns how much input was used. Call again
    /// with the rest while input is left or the output filled up.
    pub fn compress_sync(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        set_buffers(&mut self.strm, input, out);
        // SAFETY: the stream was initialised by deflateInit2 and not moved;
        // its buffers point into `input` and `out`'s spare capacity, which
        // outlive the call.
        let rc = unsafe { z::deflate(&mut *self.strm, z::Z_SYNC_FLUSH) };
        let used = take_buffers(&mut self.strm, input, out);
        // Z_BUF_ERROR only means no progress was possible (no room): not an error.
        assert!(
            rc == z::Z_OK || rc == z::Z_BUF_ERROR,
            "deflate failed on a healthy stream: {rc}"
        );
        used
    }

    /// Forgets the window: the next message is compressed on its own.
    pub fn reset(&mut self) {
        // SAFETY: the stream was initialised by deflateInit2 and not moved.
        let rc = unsafe { z::deflateReset(&mut *self.strm) };
        debug_assert_eq!(rc, z::Z_OK);
    }
}

impl Drop for RawDeflate {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised by deflateInit2 and is ended once.
        unsafe { z::deflateEnd(&mut *self.strm) };
    }
}

impl std::fmt::Debug for RawDeflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawDeflate").finish_non_exhaustive()
    }
}

/// A raw (headerless) DEFLATE inflater with a chosen window.
pub(super) struct RawInflate {
    strm: Box<z::z_stream>,
}

// SAFETY: as for `RawDeflate`.
unsafe impl Send for RawInflate {}

/// The data is not valid DEFLATE.
#[derive(Debug)]
pub(super) struct Corrupt;

impl RawInflate {
    /// An inflater for streams compressed with windows of up to
    /// `2^window_bits` bytes (9–15, clamped). zlib allocates the window on
    /// the first call that needs it.
    pub fn new(window_bits: u8) -> Self {
        let mut strm = new_stream();
        // SAFETY: as in `RawDeflate::new`.
        let rc = unsafe {
            z::inflateInit2_(
                &mut *strm,
                -c_int::from(window_bits.clamp(9, 15)),
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as c_int,
            )
        };
        assert_eq!(rc, z::Z_OK, "inflateInit2 failed: out of memory");
        RawInflate { strm }
    }

    /// Inflates `input` with a sync flush into `out`. Returns the input
    /// used, the output written and whether the stream ended; `Err` on
    /// invalid data (then [`RawInflate::reset`] before reuse).
    pub fn inflate_sync(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, usize, Progress), Corrupt> {
        let strm = &mut *self.strm;
        strm.next_in = input.as_ptr().cast_mut();
        strm.avail_in = c_uint::try_from(input.len()).unwrap_or(c_uint::MAX);
        strm.next_out = out.as_mut_ptr();
        strm.avail_out = c_uint::try_from(out.len()).unwrap_or(c_uint::MAX);
        let (avail_in, avail_out) = (strm.avail_in, strm.avail_out);
        // SAFETY: the stream was initialised by inflateInit2 and not moved;
        // its buffers point into `input` and `out` with their lengths (or
        // less), and both outlive the call.
        let rc = unsafe { z::inflate(strm, z::Z_SYNC_FLUSH) };
        let used = (avail_in - strm.avail_in) as usize;
        let written = (avail_out - strm.avail_out) as usize;
        strm.next_in = ptr::null_mut();
        strm.avail_in = 0;
        strm.next_out = ptr::null_mut();
        strm.avail_out = 0;
        match rc {
            z::Z_OK | z::Z_BUF_ERROR => Ok((used, written, Progress::Going)),
            z::Z_STREAM_END => Ok((used, written, Progress::Ended)),
            // Z_DATA_ERROR, and Z_NEED_DICT (a preset-dictionary bit cannot
            // appear in raw deflate, but treat anything else as corrupt too).
            _ => Err(Corrupt),
        }
    }

    /// Starts a new stream, forgetting the window.
    pub fn reset(&mut self) {
        // SAFETY: the stream was initialised by inflateInit2 and not moved.
        let rc = unsafe { z::inflateReset(&mut *self.strm) };
        debug_assert_eq!(rc, z::Z_OK);
    }

    /// Loads `history` (the stream's earlier output; only its last window's
    /// worth counts) as the window, so a stream can go on in a fresh state.
    pub fn set_window(&mut self, history: &[u8]) {
        if history.is_empty() {
            return;
        }
        let len = c_uint::try_from(history.len()).unwrap_or(c_uint::MAX);
        let tail = &history[history.len() - len as usize..];
        // SAFETY: the stream was initialised by inflateInit2 and not moved;
        // zlib copies `len` bytes from `tail`, which is that long. For a raw
        // stream this is allowed at any time.
        let rc = unsafe { z::inflateSetDictionary(&mut *self.strm, tail.as_ptr(), len) };
        // Only a failed window allocation can make it fail.
        assert_eq!(rc, z::Z_OK, "inflateSetDictionary failed: out of memory");
    }
}

impl Drop for RawInflate {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised by inflateInit2 and is ended once.
        unsafe { z::inflateEnd(&mut *self.strm) };
    }
}

impl std::fmt::Debug for RawInflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawInflate").finish_non_exhaustive()
    }
}
