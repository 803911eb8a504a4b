//! Giving memory back to the operating system.
//!
//! Large buffers (a 16 MiB message, an inflated bomb, a burst of output) must
//! not stay resident after use. glibc's malloc raises its mmap threshold
//! every time a large mapped block is freed (up to 32 MiB), after which
//! blocks of that size come from the heap and stay there when freed. The
//! engine fixes the threshold at start-up (which also switches the dynamic
//! adjustment off): blocks from [`MMAP_THRESHOLD_BYTES`] up are mapped and
//! unmapped on free, and the smaller ones (reused from the heap without a
//! page fault, e.g. the buffer of each 256 KiB message) are handed back by
//! [`release_free_memory`], which a worker calls once it has been quiet for
//! a moment after freeing large buffers.
//!
//! Small blocks: glibc keeps freed blocks of up to 128 bytes in "fast bins",
//! per size and never merged with their free neighbours. A burst of
//! connections setting up interleaves short-lived blocks (JSON and token
//! parsing) with long-lived ones (a room server's users, room members), and
//! the short-lived ones left behind as fast-bin holes between long-lived
//! ones stay resident for good: ~30 B per idle room-server connection
//! (`benches/rooms.sh` density cell). The engine switches fast bins off
//! (`M_MXFAST` 0): freed small blocks merge with free neighbours and the
//! space is reused for any size. glibc's per-thread cache (7 blocks per
//! size) still serves the hot small-block reuse without locks, and the
//! fan-out and request-path CPU figures did not move (README).
//!
//! All of this is a no-op on targets other than Linux with glibc.

/// Allocations at least this big get their own mapping.
pub(crate) const MMAP_THRESHOLD_BYTES: usize = 1 << 20;

/// Fixes glibc's mmap threshold and switches its fast bins off (once per process).
pub(crate) fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only changes allocator parameters; it is
            // thread-safe and has no memory-safety preconditions.
            let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES as i32) };
            if ok != 1 {
                tracing::warn!("mallopt(M_MMAP_THRESHOLD) failed; freed memory may stay resident");
            }
            // SAFETY: as above.
            if unsafe { libc::mallopt(libc::M_MXFAST, 0) } != 1 {
                tracing::warn!(
                    "mallopt(M_MXFAST) failed; small freed blocks may fragment the heap"
                );
            }
        }
    });
}

/// Returns the allocator's free pages to the system (`malloc_trim`).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds as free;
    // it takes the allocator's own locks and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Physical memory of the machine in bytes, if known.
pub(crate) fn physical_memory_bytes() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
        let (pages, page) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if pages > 0 && page > 0 {
            return Some(pages as u64 * page as u64);
        }
    }
    None
}
