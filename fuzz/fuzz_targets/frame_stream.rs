//! The whole server decoder over an arbitrary byte stream cut into arbitrary
//! pieces. Invariants: no panic; `Ok(None)` consumes all input; events are
//! well-formed; cutting the stream differently changes neither the events
//! nor whether it fails.
#![no_main]

use edgews::protocol::{Decoder, DecoderConfig, Event, Input, Message, Server};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Message(bool, Vec<u8>),
    Compressed(bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

fn run(data: &[u8], cuts: &[usize], cfg: &DecoderConfig) -> (Vec<Owned>, bool) {
    let mut stream = data.to_vec();
    let mut dec = Decoder::<Server>::new();
    let mut events = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
        let end = end.clamp(start, stream.len());
        let mut input = Input::new(&mut stream[start..end]);
        loop {
            match dec.decode(&mut input, cfg) {
                Ok(Some(ev)) => events.push(match ev {
                    Event::Message(Message::Text(t)) => Owned::Message(true, t.as_bytes().to_vec()),
                    Event::Message(Message::Binary(b)) => {
                        assert!(b.len() <= cfg.max_message_bytes);
                        Owned::Message(false, b.to_vec())
                    }
                    Event::Compressed { binary, payload } => {
                        Owned::Compressed(binary, payload.to_vec())
                    }
                    Event::Ping(p) => {
                        assert!(p.len() <= 125);
                        Owned::Ping(p.to_vec())
                    }
                    Event::Pong(p) => {
                        assert!(p.len() <= 125);
                        Owned::Pong(p.to_vec())
                    }
                    Event::Close(c) => Owned::Close(c.code.get(), c.reason.to_owned()),
                }),
                Ok(None) => {
                    assert!(input.is_empty(), "Ok(None) must consume all input");
                    break;
                }
                Err(_) => return (events, true),
            }
        }
        start = end;
    }
    (events, false)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let cfg = DecoderConfig {
        max_message_bytes: 1 + usize::from(u16::from_le_bytes([data[0], data[1]])),
        allow_rsv1: data[2] & 1 == 1,
    };
    let ncuts = usize::from(data[3] % 8);
    let (cut_bytes, stream) = data[4..].split_at((ncuts * 2).min(data.len() - 4));
    let mut cuts: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| usize::from(c[0]) | usize::from(*c.get(1).unwrap_or(&0)) << 8)
        .collect();
    cuts.sort_unstable();
    let whole = run(stream, &[], &cfg);
    let pieces = run(stream, &cuts, &cfg);
    assert_eq!(whole, pieces, "the split must not matter");
});
