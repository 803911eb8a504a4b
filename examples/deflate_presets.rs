//! The compression ratio of each dedicated-deflate preset on chat-like JSON.
//!
//! ```sh
//! cargo run --release --example deflate_presets
//! ```
//!
//! Compresses the same stream of 2,000 chat messages (JSON, 150-400 bytes,
//! from a fixed seed) through one connection's compressor for each
//! [`CompressorPreset`], with context takeover as in `--compression
//! dedicated`, and prints compressed/plain bytes. The inflater presets bound
//! the client's window (`client_max_window_bits`): their ratio is that of a
//! client compressing with that window and zlib's default memLevel 8.
//! Without context takeover (`--compression shared`) for comparison.
//! Memory per connection is in README's density table (`benches/density.sh`).

use edgews::protocol::deflate::{CompressorPreset, DecompressorPreset, Deflater, Inflater};

/// A small deterministic generator (xorshift64*), so every run sees the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "hello", "there", "anyone", "seen", "the", "new", "release", "notes", "yes", "no", "maybe",
    "tomorrow", "meeting", "at", "noon", "lunch", "coffee", "deploy", "failed", "again", "works",
    "for", "me", "thanks", "please", "review", "my", "pull", "request", "ok", "great", "idea",
    "weekend", "plans", "game", "tonight", "who", "is", "in", "lol", "sure", "why", "not",
    "server", "down", "back", "up", "now", "check", "logs", "ticket", "bug", "fixed", "merged",
];

/// Chat-like JSON messages: a few rooms and users, free text, timestamps, ids.
fn messages(count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ts = 1_733_200_000_000u64;
    (0..count)
        .map(|i| {
            ts += 1 + rng.below(5000);
            let words = 5 + rng.below(40) as usize;
            let text: Vec<&str> = (0..words)
                .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                .collect();
            let user = rng.below(50);
            format!(
                "{{\"type\":\"message\",\"id\":\"m{:08x}\",\"room\":\"room-{}\",\"user\":{{\"id\":{user},\"name\":\"user{user}\",\"avatar\":\"https://cdn.example.com/a/{user}.png\"}},\"text\":\"{}\",\"ts\":{ts},\"seq\":{i}}}",
                rng.next() as u32,
                rng.below(8),
                text.join(" "),
            )
            .into_bytes()
        })
        .collect()
}

/// Compressed bytes of the stream through `deflater`, checked by inflating.
fn compressed(messages: &[Vec<u8>], mut deflater: Deflater, mut inflater: Inflater) -> usize {
    let (mut z, mut plain) = (Vec::new(), Vec::new());
    let mut total = 0;
    for m in messages {
        z.clear();
        plain.clear();
        deflater.compress(m, &mut z);
        inflater
            .inflate(&z, &mut plain, m.len())
            .expect("our own stream inflates");
        assert!(&plain == m, "round trip");
        total += z.len();
    }
    total
}

fn main() {
    let messages = messages(2000);
    let plain: usize = messages.iter().map(Vec::len).sum();
    println!(
        "{} messages, {plain} bytes of JSON ({} bytes on average)\n",
        messages.len(),
        plain / messages.len()
    );
    println!("| compressor preset | windowBits / memLevel | zlib buffers | compressed / plain |");
    println!("|---|---|---:|---:|");
    for (name, preset) in CompressorPreset::ALL {
        let inflater = Inflater::with_preset(DecompressorPreset::new(preset.window_bits), false);
        let z = compressed(&messages, Deflater::with_preset(preset, false), inflater);
        println!(
            "| `{name}` | {} / {} | {} B | {:.3} |",
            preset.window_bits,
            preset.mem_level,
            preset.buffer_bytes(),
            z as f64 / plain as f64
        );
    }
    let z = compressed(&messages, Deflater::new(15, true), Inflater::new(15, true));
    println!(
        "| (shared: no context takeover) | 15 / 8 | one per worker | {:.3} |",
        z as f64 / plain as f64
    );
    println!(
        "\n| decompressor preset | client's windowBits | window | client's compressed / plain |"
    );
    println!("|---|---|---:|---:|");
    for (name, preset) in DecompressorPreset::ALL {
        let client = Deflater::with_preset(CompressorPreset::new(preset.window_bits, 8), false);
        let z = compressed(&messages, client, Inflater::with_preset(preset, false));
        println!(
            "| `{name}` | {} | {} B | {:.3} |",
            preset.window_bits,
            preset.buffer_bytes(),
            z as f64 / plain as f64
        );
    }
}
