//! The server handshake: parse + classify arbitrary bytes; an accepted upgrade
//! must produce a valid 101 response with the right accept key.
#![no_main]

use edgews::protocol::handshake::{accept_key, header_buf, server};
use edgews::protocol::Parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = header_buf();
    let Ok(Parse::Complete((req, used))) = server::parse_request(data, &mut headers, 8192) else {
        return;
    };
    assert!(used <= data.len() && used <= 8192);
    match server::classify(&req) {
        Ok(server::RequestKind::Upgrade(up)) => {
            let mut out = Vec::new();
            server::write_accept_response(&mut out, up.key, Some("chat"), None);
            let mut h = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut h);
            assert!(matches!(
                resp.parse(&out),
                Ok(httparse::Status::Complete(_))
            ));
            assert_eq!(resp.code, Some(101));
            let accept = resp
                .headers
                .iter()
                .find(|h| h.name == "Sec-WebSocket-Accept")
                .unwrap();
            assert_eq!(accept.value, &accept_key(up.key)[..]);
        }
        Ok(server::RequestKind::Http) => {}
        Err(e) => {
            let mut out = Vec::new();
            server::write_error_response(&mut out, &e);
            assert!(out.starts_with(format!("HTTP/1.1 {}", e.status()).as_bytes()));
        }
    }
});
