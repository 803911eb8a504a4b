//! The client session over anything a server could send: a 101 whose
//! `Sec-WebSocket-Extensions` answer is the first line of the input, then
//! the rest as frames, cut into pieces of a size the input picks. No panic,
//! messages within the limit, and the send queue stays bounded.
#![no_main]

use edgews::client::{Config, Event, Session};
use edgews::protocol::deflate::DeflateOffer;
use edgews::protocol::handshake::accept_key;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let (answer, frames) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let cfg = Config::default()
        .max_message_bytes(LIMIT)
        .max_queue_bytes(LIMIT)
        .compression_threshold_bytes(0)
        .deflate(Some(DeflateOffer {
            client_max_window_bits: true,
            ..DeflateOffer::default()
        }));
    let mut s = Session::new("fuzz:1", "/", &cfg);
    let req = String::from_utf8(s.output().to_vec()).expect("our request is ASCII");
    let key = req
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("a key");
    let mut input = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        std::str::from_utf8(&accept_key(key.as_bytes())).expect("base64")
    )
    .into_bytes();
    if !answer.is_empty() {
        input.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        input.extend_from_slice(answer);
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(frames);
    for piece in input.chunks_mut(usize::from(cut).max(1)) {
        s.receive(piece, |ev, sender| {
            if let Event::Message(m) = ev {
                assert!(m.len() <= LIMIT);
                let _ = sender.send(m); // echo, compressed when agreed
            }
        });
        assert!(s.output().len() <= 2 * LIMIT + 1024);
    }
});
