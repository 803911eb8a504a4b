//! Payload masking (RFC 6455 §5.3): XOR with a 4-byte key, in place.
//!
//! Implementations, chosen at run time by [`apply_mask`]:
//! - [`apply_mask_scalar`]: one byte at a time; the reference the others are tested against.
//! - word-at-a-time: 8-byte XORs over the buffer, portable (LLVM widens it to the
//!   baseline SSE2 on x86_64 and NEON on aarch64).
//! - AVX2 (x86_64): the same word loop compiled with AVX2 enabled, so LLVM
//!   emits 32-byte vector XORs. Chosen when the CPU has AVX2 and the buffer
//!   is at least 256 bytes. Measured (`cargo bench --bench mask`, AMD EPYC):
//!   41.7 → 56.9 GB/s at 1 KiB, 50.8 → 58.1 GB/s at 64 KiB, 49.9 → 62.2 GB/s
//!   at 1 MiB; at 125 bytes it is slower (12.0 vs 12.8 GB/s), hence the threshold.
//!
//! No intrinsics are used: the only `unsafe` is calling a `#[target_feature]`
//! function after checking the CPU has that feature.
//!
//! An AVX-512F variant (64-byte `vpxorq` with unaligned loads and stores) was
//! measured on an Intel Xeon with AVX-512 (2026-12-02, `taskset -c 1 cargo
//! bench --bench mask`) and left out: at 64 KiB and 1 MiB it is no faster
//! than AVX2 or the portable loop (39.8–42.5 vs 33–45 GB/s, L2/memory bound),
//! at 125 bytes and below it is slower (9.6 vs 12.3 GB/s), and at 1 KiB it
//! ranged from 0.5x to 1.9x of AVX2 between runs. Unsafe intrinsics stay out
//! until a benchmark shows a steady gain; heavy 512-bit use can also lower
//! the core's clock for the rest of the event loop.

/// Masks (or unmasks: XOR is its own inverse) `buf` in place.
///
/// `offset` is the position of `buf[0]` within the payload, so a payload can
/// be unmasked in pieces as it arrives: pass the number of payload bytes
/// already processed.
///
/// ```
/// use edgews::protocol::apply_mask;
/// let mut data = *b"Hello, world";
/// apply_mask(&mut data, [1, 2, 3, 4], 0);
/// let (a, b) = data.split_at_mut(5); // unmask in two pieces
/// apply_mask(a, [1, 2, 3, 4], 0);
/// apply_mask(b, [1, 2, 3, 4], 5);
/// assert_eq!(&data, b"Hello, world");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let key = rotate(mask, offset);
    #[cfg(target_arch = "x86_64")]
    {
        if buf.len() >= SIMD_MIN_BYTES && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked on the line above.
            unsafe { x86::mask_avx2(buf, key) };
            return;
        }
    }
    mask_words(buf, key);
}

/// Below this length the portable word loop is as fast as AVX2 (see the module doc).
const SIMD_MIN_BYTES: usize = 256;

/// The byte-at-a-time reference implementation.
pub fn apply_mask_scalar(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[(i + offset) & 3];
    }
}

/// The portable word-at-a-time implementation (no run-time dispatch).
pub fn apply_mask_portable(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    mask_words(buf, rotate(mask, offset));
}

/// The key as seen from a buffer starting `offset` bytes into the payload.
#[inline(always)]
fn rotate(mask: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset & 3;
    [
        mask[s],
        mask[(s + 1) & 3],
        mask[(s + 2) & 3],
        mask[(s + 3) & 3],
    ]
}

/// XORs 8 bytes at a time; the tail keeps the key's phase because 8 is a multiple of 4.
#[inline(always)]
fn mask_words(buf: &mut [u8], key: [u8; 4]) {
    let key64 = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ key64).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// The word loop compiled for AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) fn mask_avx2(buf: &mut [u8], key: [u8; 4]) {
        super::mask_words(buf, key);
    }
}

/// Runs one named implementation, for benchmarks: `"scalar"`, `"portable"`,
/// `"avx2"` or `"auto"` (what [`apply_mask`] picks). Returns false
/// when the CPU lacks the feature or the name is unknown.
#[doc(hidden)]
pub fn apply_mask_named(name: &str, buf: &mut [u8], mask: [u8; 4]) -> bool {
    match name {
        "scalar" => apply_mask_scalar(buf, mask, 0),
        "portable" => apply_mask_portable(buf, mask, 0),
        "auto" => apply_mask(buf, mask, 0),
        #[cfg(target_arch = "x86_64")]
        "avx2" if std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: AVX2 support checked in the match guard.
            unsafe { x86::mask_avx2(buf, mask) }
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn all_implementations_match_scalar(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            mask in any::<[u8; 4]>(),
            offset in 0usize..8,
        ) {
            let mut expected = data.clone();
            apply_mask_scalar(&mut expected, mask, offset);
            let mut auto = data.clone();
            apply_mask(&mut auto, mask, offset);
            prop_assert_eq!(&auto, &expected);
            let mut portable = data.clone();
            apply_mask_portable(&mut portable, mask, offset);
            prop_assert_eq!(&portable, &expected);
            let mut v = data.clone();
            if apply_mask_named("avx2", &mut v, rotate(mask, offset)) {
                prop_assert_eq!(&v, &expected);
            }
        }

        #[test]
        fn unmasking_in_pieces_matches_whole(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            mask in any::<[u8; 4]>(),
            cuts in proptest::collection::vec(0usize..600, 0..6),
        ) {
            let mut whole = data.clone();
            apply_mask(&mut whole, mask, 0);
            let mut pieces = data.clone();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            for w in cuts.windows(2) {
                apply_mask(&mut pieces[w[0]..w[1]], mask, w[0]);
            }
            prop_assert_eq!(whole, pieces);
        }
    }

    #[test]
    fn unaligned_starts() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        for start in 0..16 {
            let mut a = data.clone();
            let mut b = data.clone();
            apply_mask(&mut a[start..], [0xAA, 0x55, 0x0F, 0xF0], start);
            apply_mask_scalar(&mut b[start..], [0xAA, 0x55, 0x0F, 0xF0], start);
            assert_eq!(a, b);
        }
    }
}
