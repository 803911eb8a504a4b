//! The client's check of a server answer: no panic on arbitrary bytes.
#![no_main]

use edgews::protocol::handshake::client;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = client::parse_response(data, "dGhlIHNhbXBsZSBub25jZQ==");
});
