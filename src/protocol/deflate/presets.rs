//! Memory presets for per-connection ("dedicated") compression, after
//! uWebSockets' `DEDICATED_COMPRESSOR_3KB … 256KB` and
//! `DEDICATED_DECOMPRESSOR_512B … 32KB`.
//!
//! The small presets run on stock zlib, the largest on zlib-rs (see
//! [`CompressorPreset::uses_zlib_rs`]).
//!
//! A preset names zlib's own estimate of its buffers: a compressor needs
//! `2^(windowBits+2) + 2^(memLevel+9)` bytes, an inflater `2^windowBits`
//! bytes of window. zlib's state adds ~5.8 KB (compressor) and ~7 KB
//! (inflater) to each, so the small presets cost more than their name:
//! README's density table has the measured resident memory per connection
//! and the ratio each gets on chat-like JSON.

/// Window and hash sizes of one connection's compressor.
///
/// The window bounds how far back a match may refer (and what the client's
/// inflater must keep); `mem_level` sizes the hash table and the block
/// buffer, trading ratio and speed for memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressorPreset {
    /// LZ77 window: `2^window_bits` bytes (9–15). Also the most the server
    /// answers for `server_max_window_bits`.
    pub window_bits: u8,
    /// zlib's `memLevel` (1–9): a hash table of `2^(mem_level+7)` entries.
    pub mem_level: u8,
}

impl CompressorPreset {
    /// ~3 KiB of zlib buffers: window 512 B, memLevel 1.
    pub const SIZE_3KB: Self = Self::new(9, 1);
    /// ~4 KiB: window 512 B, memLevel 2.
    pub const SIZE_4KB: Self = Self::new(9, 2);
    /// ~8 KiB: window 1 KiB, memLevel 3.
    pub const SIZE_8KB: Self = Self::new(10, 3);
    /// ~16 KiB: window 2 KiB, memLevel 4.
    pub const SIZE_16KB: Self = Self::new(11, 4);
    /// ~32 KiB: window 4 KiB, memLevel 5.
    pub const SIZE_32KB: Self = Self::new(12, 5);
    /// ~64 KiB: window 8 KiB, memLevel 6.
    pub const SIZE_64KB: Self = Self::new(13, 6);
    /// ~128 KiB: window 16 KiB, memLevel 7.
    pub const SIZE_128KB: Self = Self::new(14, 7);
    /// ~256 KiB: window 32 KiB, memLevel 8 (zlib's defaults).
    pub const SIZE_256KB: Self = Self::new(15, 8);

    /// Every named preset, smallest first, with its name.
    pub const ALL: [(&'static str, Self); 8] = [
        ("3kb", Self::SIZE_3KB),
        ("4kb", Self::SIZE_4KB),
        ("8kb", Self::SIZE_8KB),
        ("16kb", Self::SIZE_16KB),
        ("32kb", Self::SIZE_32KB),
        ("64kb", Self::SIZE_64KB),
        ("128kb", Self::SIZE_128KB),
        ("256kb", Self::SIZE_256KB),
    ];

    /// A compressor with a window of `2^window_bits` bytes and `mem_level`.
    pub const fn new(window_bits: u8, mem_level: u8) -> Self {
        CompressorPreset {
            window_bits,
            mem_level,
        }
    }

    /// zlib's buffers for this preset, in bytes (its state comes on top).
    pub const fn buffer_bytes(self) -> usize {
        (1 << (self.window_bits as u32 + 2)) + (1 << (self.mem_level as u32 + 9))
    }

    /// True when both values are in zlib's ranges (window 9–15, memLevel 1–9).
    pub const fn is_valid(self) -> bool {
        9 <= self.window_bits
            && self.window_bits <= 15
            && 1 <= self.mem_level
            && self.mem_level <= 9
    }

    /// True when this preset runs on zlib-rs rather than stock zlib: a
    /// 32 KiB window with memLevel 8 or 9 (the `256kb` preset, the
    /// default), where zlib-rs runs 2–4x faster. It costs more memory: it
    /// allocates and clears a fixed 64 Ki-entry hash table, ~320 KB
    /// resident from the first message, where stock zlib's buffers fill as
    /// the window does (README's density table); a host short of memory
    /// picks a smaller preset. Smaller
    /// windows stay on stock zlib even at memLevel 8: its memory follows
    /// them, and zlib-rs matches worse within them (on chat-like JSON with a
    /// 512-byte window, 0.765 of the input against stock zlib's 0.618).
    pub const fn uses_zlib_rs(self) -> bool {
        self.window_bits >= 15 && self.mem_level >= 8
    }

    /// The preset of this name (`"3kb"` … `"256kb"`, as in [`Self::ALL`]).
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, p)| p)
    }
}

impl Default for CompressorPreset {
    /// [`CompressorPreset::SIZE_256KB`], the best ratio.
    fn default() -> Self {
        Self::SIZE_256KB
    }
}

/// Window of one connection's inflater.
///
/// The server asks clients to compress within this window
/// (`client_max_window_bits`) when they offer to accept a limit, as
/// browsers do. A client that does not offer it may use a 32 KiB window, so
/// its inflater gets one whatever the preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecompressorPreset {
    /// LZ77 window: `2^window_bits` bytes (9–15).
    pub window_bits: u8,
}

impl DecompressorPreset {
    /// 512 B window.
    pub const SIZE_512B: Self = Self::new(9);
    /// 1 KiB window.
    pub const SIZE_1KB: Self = Self::new(10);
    /// 2 KiB window.
    pub const SIZE_2KB: Self = Self::new(11);
    /// 4 KiB window.
    pub const SIZE_4KB: Self = Self::new(12);
    /// 8 KiB window.
    pub const SIZE_8KB: Self = Self::new(13);
    /// 16 KiB window.
    pub const SIZE_16KB: Self = Self::new(14);
    /// 32 KiB window (any client's largest).
    pub const SIZE_32KB: Self = Self::new(15);

    /// Every named preset, smallest first, with its name.
    pub const ALL: [(&'static str, Self); 7] = [
        ("512b", Self::SIZE_512B),
        ("1kb", Self::SIZE_1KB),
        ("2kb", Self::SIZE_2KB),
        ("4kb", Self::SIZE_4KB),
        ("8kb", Self::SIZE_8KB),
        ("16kb", Self::SIZE_16KB),
        ("32kb", Self::SIZE_32KB),
    ];

    /// An inflater with a window of `2^window_bits` bytes.
    pub const fn new(window_bits: u8) -> Self {
        DecompressorPreset { window_bits }
    }

    /// The window, in bytes (zlib's state comes on top).
    pub const fn buffer_bytes(self) -> usize {
        1 << self.window_bits as u32
    }

    /// True when the window is in zlib's range for raw streams (9–15).
    pub const fn is_valid(self) -> bool {
        9 <= self.window_bits && self.window_bits <= 15
    }

    /// The preset of this name (`"512b"` … `"32kb"`, as in [`Self::ALL`]).
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, p)| p)
    }
}

impl Default for DecompressorPreset {
    /// [`DecompressorPreset::SIZE_32KB`]: clients use their largest window.
    fn default() -> Self {
        Self::SIZE_32KB
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_zlib_memory() {
        for (name, p) in CompressorPreset::ALL {
            assert!(p.is_valid(), "{name}");
            let kb: usize = name.trim_end_matches("kb").parse().unwrap();
            assert_eq!(p.buffer_bytes(), kb << 10, "{name}");
        }
        for (name, p) in DecompressorPreset::ALL {
            assert!(p.is_valid(), "{name}");
            let bytes = match name.strip_suffix("kb") {
                Some(kb) => kb.parse::<usize>().unwrap() << 10,
                None => name.trim_end_matches('b').parse().unwrap(),
            };
            assert_eq!(p.buffer_bytes(), bytes, "{name}");
        }
        assert!(!CompressorPreset::new(8, 1).is_valid());
        assert!(!CompressorPreset::new(9, 0).is_valid());
        assert!(!CompressorPreset::new(15, 10).is_valid());
        assert!(!DecompressorPreset::new(16).is_valid());
        assert_eq!(
            CompressorPreset::named("16KB"),
            Some(CompressorPreset::SIZE_16KB)
        );
        assert_eq!(CompressorPreset::named("512b"), None);
        assert_eq!(
            DecompressorPreset::named("512b"),
            Some(DecompressorPreset::SIZE_512B)
        );
        assert_eq!(DecompressorPreset::named("64kb"), None);
    }
}
