//! permessage-deflate: negotiation on arbitrary header text, and inflating
//! arbitrary data with a hard limit (never more output than the limit, never
//! a panic), with and without context takeover.
#![no_main]

use edgews::protocol::deflate::{negotiate, DeflatePolicy, Inflater};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for policy in [
            DeflatePolicy {
                no_context_takeover: true,
                max_window_bits: 15,
            },
            DeflatePolicy {
                no_context_takeover: false,
                max_window_bits: 10,
            },
        ] {
            if let Some((p, answer)) = negotiate(text.split('\n'), policy) {
                assert!((9..=15).contains(&p.server_window_bits));
                assert!(answer.starts_with("permessage-deflate"));
            }
        }
    }
    let Some((&flags, payload)) = data.split_first() else {
        return;
    };
    let limit = 1 + usize::from(flags) * 1024;
    let mut inflater = Inflater::new(9 + flags % 7, flags & 0x80 == 0);
    for message in payload.split(|&b| b == 0xA5).take(4) {
        let mut out = Vec::new();
        let result = inflater.inflate(message, &mut out, limit);
        assert!(
            out.len() <= limit + 1,
            "output {} over limit {limit}",
            out.len()
        );
        if result.is_err() {
            break;
        }
    }
});
