//! permessage-deflate against an independent client that negotiates it:
//! Python's `websockets` (installed into a venv under target/ on first use).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{config, http, upgrade_request, Got, Raw, TestServer};
use edgews::protocol::deflate::Deflater;
use edgews::protocol::OpCode;
use edgews::runtime::Compression;

/// A Python with `websockets`, made once per test run.
fn python() -> &'static PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
        let py = venv.join("bin/python");
        let ready = Command::new(&py)
            .args(["-c", "import websockets.sync.client"])
            .status()
            .is_ok_and(|s| s.success());
        if !ready {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status();
            assert!(
                made.is_ok_and(|s| s.success()),
                "python3 -m venv failed (is python3-venv installed?)"
            );
            let pip = Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "websockets>=13"])
                .status();
            assert!(
                pip.is_ok_and(|s| s.success()),
                "pip install websockets failed"
            );
        }
        py
    })
}

/// Echo round trips from Python: plain ASCII, repetitive text (compresses well),
/// non-ASCII, binary, a 1 MiB message, and 300 similar messages in a row (context
/// takeover across messages). Prints the negotiated extension header.
const CLIENT: &str = r#"
import json, os, sys
from websockets.sync.client import connect
with connect(sys.argv[1], max_size=None, compression="deflate") as ws:
    print(ws.response.headers.get("Sec-WebSocket-Extensions"), flush=True)
    messages = ["short", "hello world " * 300, "κόσμε € 𝄞 " * 500, os.urandom(5000), bytes(1 << 20)]
    for i in range(300):
        messages.append(json.dumps({"i": i, "room": "lobby", "text": "the same words again " * 10}))
    for m in messages:
        ws.send(m)
        assert ws.recv() == m, f"echo mismatch for a {len(m)}-byte message"
    print("ok", len(messages), flush=True)
"#;

fn interop(mode: Compression) -> (String, u64, u64) {
    let server = TestServer::echo(config().compression(mode));
    let out = Command::new(python())
        .args(["-c", CLIENT, &server.url()])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok 305"), "{stdout}");
    let stats = server.handle.worker_stats();
    let sent: u64 = stats.iter().map(|s| s.bytes_out.get()).sum();
    let received: u64 = stats.iter().map(|s| s.message_bytes_in.get()).sum();
    (
        stdout.lines().next().unwrap_or_default().to_owned(),
        sent,
        received,
    )
}

#[test]
fn shared_mode_interoperates_and_compresses() {
    let (ext, sent, payload) = interop(Compression::Shared);
    assert_eq!(
        ext,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    // The echoes went out compressed: far fewer bytes on the wire than payload.
    assert!(
        sent * 3 < payload,
        "sent {sent} bytes for {payload} bytes of payload"
    );
}

#[test]
fn dedicated_mode_interoperates_and_compresses_better() {
    let (ext, sent, payload) = interop(Compression::DEDICATED);
    assert_eq!(ext, "permessage-deflate");
    assert!(
        sent * 3 < payload,
        "sent {sent} bytes for {payload} bytes of payload"
    );
    let (_, shared_sent, _) = interop(Compression::Shared);
    assert!(
        sent < shared_sent,
        "context takeover beats resets: {sent} vs {shared_sent}"
    );
}

#[test]
fn small_windows_are_negotiated_and_work() {
    let (ext, _, _) = interop(Compression::dedicated_window_bits(10));
    assert_eq!(ext, "permessage-deflate; client_max_window_bits=10");
}

#[test]
fn smallest_presets_interoperate_and_compress() {
    use edgews::protocol::deflate::{CompressorPreset, DecompressorPreset};
    let (ext, sent, payload) = interop(Compression::Dedicated {
        compressor: CompressorPreset::SIZE_3KB,
        decompressor: DecompressorPreset::SIZE_512B,
    });
    // Python offers client_max_window_bits: it is told to keep within 512 bytes.
    assert_eq!(ext, "permessage-deflate; client_max_window_bits=9");
    assert!(
        sent * 2 < payload,
        "sent {sent} bytes for {payload} bytes of payload"
    );
}

#[test]
fn compression_off_declines_offers() {
    let server = TestServer::echo(config());
    let (status, text) = http(
        server.addr,
        &upgrade_request(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        ),
    );
    assert_eq!(status, 101);
    assert!(!text.contains("Sec-WebSocket-Extensions"), "{text}");
    let shared = TestServer::echo(config().compression(Compression::Shared));
    let (_, text) = http(
        shared.addr,
        &upgrade_request("Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"),
    );
    assert!(
        !text.contains("Sec-WebSocket-Extensions"),
        "unknown extensions are declined: {text}"
    );
    let (_, text) = http(
        shared.addr,
        &upgrade_request("Sec-WebSocket-Extensions: permessage-deflate; bogus\r\n"),
    );
    assert!(
        !text.contains("Sec-WebSocket-Extensions"),
        "an invalid offer is declined: {text}"
    );
}

#[test]
fn a_decompression_bomb_gets_1009_and_costs_at_most_the_limit() {
    let limit = 1 << 20;
    let server = TestServer::echo(
        config()
            .compression(Compression::Shared)
            .max_message_bytes(limit),
    );
    let offer = [("Sec-WebSocket-Extensions", "permessage-deflate")];
    let (mut raw, resp) = Raw::connect_with(server.addr, &offer);
    assert!(resp
        .extensions
        .is_some_and(|e| e.starts_with("permessage-deflate")));
    // One message of 64 MiB of zeros: ~64 KiB compressed, 64x the limit inflated.
    let zeros = vec![0u8; 4 << 20];
    let mut z = flate2::Compress::new(flate2::Compression::best(), false);
    let mut bomb = Vec::with_capacity(128 << 10);
    for i in 0..16 {
        let flush = if i == 15 {
            flate2::FlushCompress::Sync
        } else {
            flate2::FlushCompress::None
        };
        z.compress_vec(&zeros, &mut bomb, flush).unwrap();
    }
    bomb.truncate(bomb.len() - 4); // the sync-flush tail, as RFC 7692 senders do
    assert!(bomb.len() < 100 << 10, "{}", bomb.len());
    let rss_before = common::rss_bytes();
    raw.frame_rsv1(true, true, OpCode::Binary, &bomb);
    assert_eq!(raw.expect_close().0, 1009);
    let growth = common::rss_bytes().saturating_sub(rss_before);
    assert!(
        growth < 3 * limit as u64,
        "RSS grew {growth} bytes for a {limit}-byte limit"
    );
    // A valid compressed message on another connection still works.
    let (mut ok, _) = Raw::connect_with(server.addr, &offer);
    let mut z = Vec::new();
    Deflater::new(15, true).compress(&vec![b'a'; 1000], &mut z);
    ok.frame_rsv1(true, true, OpCode::Text, &z);
    // The 1000-byte echo is over the threshold: it comes back compressed.
    match ok.next() {
        Got::Compressed(z) => {
            let mut plain = Vec::new();
            edgews::protocol::deflate::Inflater::new(15, true)
                .inflate(&z, &mut plain, 2000)
                .unwrap();
            assert_eq!(plain, vec![b'a'; 1000]);
        }
        other => panic!("expected a compressed echo, got {other:?}"),
    }
}

/// Two connections on one worker with the smallest presets (window-only
/// inflaters): one sends messages of several inflate slices, compressed with
/// context takeover, while the other keeps echoing small ones; both read
/// back exactly what they sent, so a window handed from one connection's
/// message to the next turns never mixes with another's.
const TWO_CLIENTS: &str = r#"
import os, sys
from websockets.sync.client import connect
url = sys.argv[1]
with connect(url, max_size=None, compression="deflate") as big, connect(url, max_size=None, compression="deflate") as small:
    for round in range(3):
        # ~3 MiB that compresses well but not to nothing: a slice per turn, several turns.
        text = "".join(f"line {i} of round {round}: the quick brown fox {i % 97}\n" for i in range(60000))
        big.send(text)
        for i in range(20):
            m = f"small {round} {i} " * 40
            small.send(m)
            assert small.recv() == m, "small echo mismatch"
        assert big.recv() == text, "big echo mismatch"
    print("ok", flush=True)
"#;

#[test]
fn large_messages_inflate_in_slices_with_the_smallest_presets() {
    use edgews::protocol::deflate::{CompressorPreset, DecompressorPreset};
    let server = TestServer::echo(config().workers(1).compression(Compression::Dedicated {
        compressor: CompressorPreset::SIZE_3KB,
        decompressor: DecompressorPreset::SIZE_512B,
    }));
    let out = Command::new(python())
        .args(["-c", TWO_CLIENTS, &server.url()])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ok"),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
