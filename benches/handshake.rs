//! The opening handshake: parse + classify + 101 answer for a typical
//! browser request, and the client's check of the answer.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgews::protocol::handshake::{accept_key, client, header_buf, server};
use edgews::protocol::Parse;

const REQUEST: &[u8] = b"GET /chat?room=lobby HTTP/1.1\r\nHost: example.com:9001\r\n\
Connection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\
Upgrade: websocket\r\nOrigin: https://example.com\r\nSec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

fn handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(256);
    group.bench_function("server: parse + classify + 101", |b| {
        b.iter(|| {
            let mut headers = header_buf();
            let Ok(Parse::Complete((req, _))) =
                server::parse_request(std::hint::black_box(REQUEST), &mut headers, 8192)
            else {
                panic!("valid request")
            };
            let Ok(server::RequestKind::Upgrade(up)) = server::classify(&req) else {
                panic!("upgrade")
            };
            out.clear();
            server::write_accept_response(&mut out, up.key, None, None);
            out.len()
        })
    });
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        std::str::from_utf8(&accept_key(key.as_bytes())).expect("base64 is ASCII")
    );
    group.bench_function("client: check 101", |b| {
        b.iter(|| {
            client::parse_response(std::hint::black_box(response.as_bytes()), key)
                .map(|p| matches!(p, Parse::Complete(_)))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(1)).warm_up_time(std::time::Duration::from_millis(300));
    targets = handshake
}
criterion_main!(benches);
