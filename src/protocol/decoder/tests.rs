use proptest::prelude::*;

use super::*;
use crate::protocol::close::CloseCode;
use crate::protocol::{Client, Encoder, Server};

/// An owned copy of an event, to compare across runs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Compressed(bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

fn own(ev: Event<'_>) -> Owned {
    match ev {
        Event::Message(Message::Text(t)) => Owned::Text(t.to_owned()),
        Event::Message(Message::Binary(b)) => Owned::Binary(b.to_vec()),
        Event::Compressed { binary, payload } => Owned::Compressed(binary, payload.to_vec()),
        Event::Ping(p) => Owned::Ping(p.to_vec()),
        Event::Pong(p) => Owned::Pong(p.to_vec()),
        Event::Close(c) => Owned::Close(c.code.get(), c.reason.to_owned()),
    }
}

/// Feeds `stream` to a server decoder in pieces cut at `cuts`; returns the
/// events and the first error, if any.
fn run_cut(
    stream: &[u8],
    cuts: &[usize],
    cfg: &DecoderConfig,
) -> (Vec<Owned>, Option<ProtocolError>) {
    let mut dec = Decoder::<Server>::new();
    let mut data = stream.to_vec();
    let mut events = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    bounds.push(0);
    bounds.push(data.len());
    bounds.sort_unstable();
    bounds.dedup();
    for w in bounds.windows(2) {
        let mut input = Input::new(&mut data[w[0]..w[1]]);
        loop {
            match dec.decode(&mut input, cfg) {
                Ok(Some(ev)) => events.push(own(ev)),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
        assert!(
            input.is_empty(),
            "Ok(None) must mean all input was consumed"
        );
    }
    (events, None)
}

/// Like [`run_cut`], but the way the runtime reads: wherever a data frame
/// is in progress, its payload is written straight into the room
/// [`Decoder::payload_room`] gives (at most `max` bytes at a time), the rest
/// is decoded from the pieces.
fn run_cut_direct(
    stream: &[u8],
    cuts: &[usize],
    max: usize,
    cfg: &DecoderConfig,
) -> (Vec<Owned>, Option<ProtocolError>) {
    let mut dec = Decoder::<Server>::new();
    let mut data = stream.to_vec();
    let mut events = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    bounds.push(0);
    bounds.push(data.len());
    bounds.sort_unstable();
    bounds.dedup();
    for w in bounds.windows(2) {
        let mut at = w[0];
        while at < w[1] {
            if let Some(room) = dec.payload_room(1, max, cfg) {
                let n = room.len().min(w[1] - at);
                for (dst, &b) in room.iter_mut().zip(&data[at..at + n]) {
                    dst.write(b);
                }
                at += n;
                // SAFETY: the first n bytes of the room were just written.
                if let Err(e) = unsafe { dec.payload_filled(n) } {
                    return (events, Some(e));
                }
                loop {
                    match dec.decode(&mut Input::new(&mut []), cfg) {
                        Ok(Some(ev)) => events.push(own(ev)),
                        Ok(None) => break,
                        Err(e) => return (events, Some(e)),
                    }
                }
                continue;
            }
            let mut input = Input::new(&mut data[at..w[1]]);
            loop {
                match dec.decode(&mut input, cfg) {
                    Ok(Some(ev)) => events.push(own(ev)),
                    Ok(None) => break,
                    Err(e) => return (events, Some(e)),
                }
            }
            at = w[1];
        }
    }
    (events, None)
}

fn run(stream: &[u8]) -> (Vec<Owned>, Option<ProtocolError>) {
    run_cut(stream, &[], &DecoderConfig::default())
}

/// A masked (client) frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_rsv(fin, 0, opcode, payload)
}

fn frame_rsv(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[test]
fn every_opcode_and_length_class() {
    for len in [0usize, 1, 125, 126, 65535, 65536] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let (ev, err) = run(&frame(true, 2, &payload));
        assert_eq!(
            (ev, err),
            (vec![Owned::Binary(payload.clone())], None),
            "binary {len}"
        );
        let (ev, err) = run(&frame(true, 1, text.as_bytes()));
        assert_eq!((ev, err), (vec![Owned::Text(text)], None), "text {len}");
        if len <= 125 {
            assert_eq!(
                run(&frame(true, 9, &payload)).0,
                vec![Owned::Ping(payload.clone())]
            );
            assert_eq!(
                run(&frame(true, 10, &payload)).0,
                vec![Owned::Pong(payload.clone())]
            );
        } else {
            let err = run(&frame(true, 9, &payload)).1.expect("long ping");
            assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
        }
    }
    assert_eq!(
        run(&frame(true, 8, b"\x03\xe8ok")).0,
        vec![Owned::Close(1000, "ok".into())]
    );
    assert_eq!(
        run(&frame(true, 8, b"")).0,
        vec![Owned::Close(1005, String::new())]
    );
    for op in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
        let err = run(&frame(true, op, b"x")).1.expect("reserved opcode");
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR, "opcode {op}");
    }
}

#[test]
fn masking_is_enforced_per_role() {
    let unmasked = [0x81u8, 0x01, b'a'];
    let err = run(&unmasked).1.expect("server needs masked frames");
    assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);

    let mut masked = frame(true, 1, b"a");
    let mut client = Decoder::<Client>::new();
    let err = client
        .decode(&mut Input::new(&mut masked), &DecoderConfig::default())
        .unwrap_err();
    assert!(err.to_string().contains("masked"));

    let mut plain = unmasked.to_vec();
    let ev = client
        .decode(&mut Input::new(&mut plain), &DecoderConfig::default())
        .unwrap();
    assert_eq!(ev.map(own), Some(Owned::Text("a".into())));
}

#[test]
fn fragments_with_interleaved_control_frames() {
    let mut s = frame(false, 1, "hé".as_bytes());
    s.extend(frame(true, 9, b"p1"));
    s.extend(frame(false, 0, b""));
    s.extend(frame(true, 10, b"p2"));
    s.extend(frame(true, 0, "llo".as_bytes()));
    s.extend(frame(true, 2, &[1, 2, 3]));
    let expected = vec![
        Owned::Ping(b"p1".to_vec()),
        Owned::Pong(b"p2".to_vec()),
        Owned::Text("héllo".into()),
        Owned::Binary(vec![1, 2, 3]),
    ];
    for cut in 0..=s.len() {
        assert_eq!(
            run_cut(&s, &[cut], &DecoderConfig::default()),
            (expected.clone(), None)
        );
    }
    // Byte by byte.
    let cuts: Vec<usize> = (0..s.len()).collect();
    assert_eq!(
        run_cut(&s, &cuts, &DecoderConfig::default()),
        (expected, None)
    );
}

#[test]
fn fragmentation_errors() {
    let err = run(&frame(true, 0, b"x"))
        .1
        .expect("continuation without start");
    assert!(err.to_string().contains("continuation"));
    let mut s = frame(false, 1, b"a");
    s.extend(frame(true, 1, b"b"));
    let err = run(&s).1.expect("new message inside fragmented one");
    assert!(err.to_string().contains("inside a fragmented"));
    let err = run(&frame(false, 9, b"")).1.expect("fragmented ping");
    assert!(err.to_string().contains("fragmented control"));
}

#[test]
fn reserved_bits_and_rsv1() {
    for rsv in [1u8, 2, 4, 6, 7] {
        let err = run(&frame_rsv(true, rsv, 1, b"x"))
            .1
            .expect("rsv without extension");
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    }
    let deflate = DecoderConfig {
        allow_rsv1: true,
        ..DecoderConfig::default()
    };
    let (ev, err) = run_cut(&frame_rsv(true, 4, 1, b"zz"), &[], &deflate);
    assert_eq!(
        (ev, err),
        (vec![Owned::Compressed(false, b"zz".to_vec())], None)
    );
    // RSV1 only on the first frame of a data message, never on control frames.
    let mut s = frame_rsv(false, 4, 2, b"a");
    s.extend(frame_rsv(true, 4, 0, b"b"));
    assert!(run_cut(&s, &[], &deflate).1.is_some());
    assert!(run_cut(&frame_rsv(true, 4, 9, b""), &[], &deflate)
        .1
        .is_some());
    let mut s = frame_rsv(false, 4, 2, b"a");
    s.extend(frame(true, 0, b"b"));
    for cut in 0..=s.len() {
        let (ev, err) = run_cut(&s, &[cut], &deflate);
        assert_eq!(
            (ev, err),
            (vec![Owned::Compressed(true, b"ab".to_vec())], None)
        );
    }
}

#[test]
fn oversized_messages_fail_at_the_header() {
    let cfg = DecoderConfig {
        max_message_bytes: 100,
        allow_rsv1: false,
    };
    let ok = frame(true, 2, &[0; 100]);
    assert_eq!(run_cut(&ok, &[], &cfg).1, None);
    // Only the header of a too-large frame is needed to fail: no payload is buffered.
    let big = frame(true, 2, &[0; 101]);
    let err = run_cut(&big[..8], &[], &cfg).1.expect("too large");
    assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
    // Across fragments.
    let mut s = frame(false, 2, &[0; 60]);
    s.extend(frame(true, 0, &[0; 41]));
    assert_eq!(
        run_cut(&s, &[], &cfg).1.map(|e| e.close_code()),
        Some(CloseCode::MESSAGE_TOO_BIG)
    );
    // A header announcing 2^62 bytes.
    let mut huge = vec![0x82, 0xFF];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&[0; 4]);
    assert_eq!(
        run(&huge).1.map(|e| e.close_code()),
        Some(CloseCode::MESSAGE_TOO_BIG)
    );
}

#[test]
fn bad_utf8_at_every_position_fails_before_the_message_ends() {
    let text = "κόσμε abc €𝄞 xyz".as_bytes();
    for pos in 0..text.len() {
        let mut bad = text.to_vec();
        bad[pos] = 0xFF;
        // Single frame.
        let err = run(&frame(true, 1, &bad)).1.expect("invalid utf-8");
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD, "pos {pos}");
        // First fragment carries the bad byte; the final fragment never arrives.
        let s = frame(false, 1, &bad[..=pos]);
        let err = run(&s).1.expect("fail fast in a fragment");
        assert_eq!(
            err.close_code(),
            CloseCode::INVALID_PAYLOAD,
            "fragment pos {pos}"
        );
        // Bad byte inside a frame whose rest has not arrived yet.
        let whole = frame(true, 1, &bad);
        let header = whole.len() - bad.len();
        let err = run(&whole[..header + pos + 1])
            .1
            .expect("fail fast mid-frame");
        assert_eq!(
            err.close_code(),
            CloseCode::INVALID_PAYLOAD,
            "mid-frame pos {pos}"
        );
    }
    // A code point cut at the end of the message.
    let err = run(&frame(true, 1, &[b'a', 0xE2, 0x82]))
        .1
        .expect("truncated");
    assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
    let mut s = frame(false, 1, &[0xE2]);
    s.extend(frame(true, 0, &[0x82, 0xAC]));
    assert_eq!(run(&s).0, vec![Owned::Text("€".into())]);
}

#[test]
fn close_frame_validation() {
    assert_eq!(
        run(&frame(true, 8, &[3])).1.map(|e| e.close_code()),
        Some(CloseCode::PROTOCOL_ERROR)
    );
    let err = run(&frame(true, 8, &[0x03, 0xE8, 0xFF]))
        .1
        .expect("bad reason");
    assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
    let err = run(&frame(true, 8, &1004u16.to_be_bytes()))
        .1
        .expect("reserved code");
    assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice("é".repeat(61).as_bytes());
    assert_eq!(
        run(&frame(true, 8, &payload)).0,
        vec![Owned::Close(4000, "é".repeat(61))]
    );
}

#[test]
fn idle_decoder_holds_no_memory() {
    let mut dec = Decoder::<Server>::new();
    let cfg = DecoderConfig::default();
    let mut s = frame(true, 2, &[7; 300]);
    let (a, b) = s.split_at_mut(100);
    assert!(dec.decode(&mut Input::new(a), &cfg).unwrap().is_none());
    assert!(!dec.is_idle());
    assert!(dec.buffered_bytes() > 0);
    let mut input = Input::new(b);
    assert!(dec.decode(&mut input, &cfg).unwrap().is_some());
    assert!(dec.decode(&mut input, &cfg).unwrap().is_none());
    assert!(dec.is_idle(), "a completed message must release the buffer");
    assert_eq!(dec.buffered_bytes(), 0);
    assert_eq!(std::mem::size_of::<Decoder<Server>>(), 8);
}

#[test]
fn whole_frames_are_not_copied() {
    let mut s = frame(true, 2, b"zero-copy");
    let range = s.as_ptr_range();
    let mut dec = Decoder::<Server>::new();
    let mut input = Input::new(&mut s);
    match dec.decode(&mut input, &DecoderConfig::default()).unwrap() {
        Some(Event::Message(Message::Binary(b))) => assert!(range.contains(&b.as_ptr())),
        other => panic!("{other:?}"),
    }
}

/// One generated frame: kind, payload, and how a data message is fragmented.
#[derive(Clone, Debug)]
enum Item {
    Text(String, Vec<usize>),
    Binary(Vec<u8>, Vec<usize>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn item() -> impl Strategy<Value = Item> {
    let splits = proptest::collection::vec(0usize..300, 0..3);
    prop_oneof![
        ("\\PC{0,200}", splits.clone()).prop_map(|(s, c)| Item::Text(s, c)),
        (proptest::collection::vec(any::<u8>(), 0..70_000), splits)
            .prop_map(|(b, c)| Item::Binary(b, c)),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Item::Ping),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Item::Pong),
    ]
}

/// Encodes items with the client encoder (random masks), fragmenting data
/// messages at the given points; returns the stream and the expected events.
fn encode(items: &[Item]) -> (Vec<u8>, Vec<Owned>) {
    let mut enc = Encoder::<Client>::new();
    let mut out = Vec::new();
    let mut expected = Vec::new();
    for it in items {
        let (op, payload, cuts) = match it {
            Item::Text(s, c) => (OpCode::Text, s.as_bytes(), c.as_slice()),
            Item::Binary(b, c) => (OpCode::Binary, b.as_slice(), c.as_slice()),
            Item::Ping(p) => {
                enc.frame(&mut out, OpCode::Ping, p);
                expected.push(Owned::Ping(p.clone()));
                continue;
            }
            Item::Pong(p) => {
                enc.frame(&mut out, OpCode::Pong, p);
                expected.push(Owned::Pong(p.clone()));
                continue;
            }
        };
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(payload.len())).collect();
        bounds.push(0);
        bounds.push(payload.len());
        bounds.sort_unstable();
        let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &payload[w[0]..w[1]]).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = if i == 0 { op } else { OpCode::Continuation };
            enc.frame_with(&mut out, i + 1 == pieces.len(), false, opcode, piece);
            if i == 0 && pieces.len() > 1 {
                // A ping between fragments.
                enc.frame(&mut out, OpCode::Ping, b"mid");
                expected.push(Owned::Ping(b"mid".to_vec()));
            }
        }
        expected.push(match it {
            Item::Text(s, _) => Owned::Text(s.clone()),
            _ => Owned::Binary(payload.to_vec()),
        });
    }
    (out, expected)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn any_split_of_the_stream_gives_the_same_events(
        items in proptest::collection::vec(item(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let (stream, expected) = encode(&items);
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        let (events, err) = run_cut(&stream, &cuts, &DecoderConfig::default());
        prop_assert_eq!(err, None);
        prop_assert_eq!(events, expected);
    }

    #[test]
    fn reading_payloads_into_the_message_buffer_gives_the_same_events(
        items in proptest::collection::vec(item(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        max in 1usize..100_000,
    ) {
        let (stream, expected) = encode(&items);
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        let (events, err) = run_cut_direct(&stream, &cuts, max, &DecoderConfig::default());
        prop_assert_eq!(err, None);
        prop_assert_eq!(events, expected);
    }

    #[test]
    fn arbitrary_bytes_read_directly_match_decoding(
        data in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(0usize..512, 0..4),
    ) {
        let cfg = DecoderConfig { max_message_bytes: 1000, allow_rsv1: true };
        let (e1, err1) = run_cut(&data, &cuts, &cfg);
        let (e2, err2) = run_cut_direct(&data, &cuts, 7, &cfg);
        prop_assert_eq!(e1, e2);
        prop_assert_eq!(err1.map(|e| e.close_code()), err2.map(|e| e.close_code()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(0usize..512, 0..4),
    ) {
        let cfg = DecoderConfig { max_message_bytes: 1000, allow_rsv1: true };
        let _ = run_cut(&data, &cuts, &cfg);
    }
}

#[test]
fn invalid_utf8_read_into_the_message_buffer_fails_with_1007() {
    let mut enc = Encoder::<Client>::new();
    let mut text = "é".repeat(20_000).into_bytes();
    text[30_000] = 0xff;
    let mut stream = Vec::new();
    enc.frame(&mut stream, OpCode::Text, &text);
    let (events, err) = run_cut_direct(&stream, &[100], 4096, &DecoderConfig::default());
    assert!(events.is_empty());
    assert_eq!(err.map(|e| e.close_code().get()), Some(1007));
}

#[test]
fn message_buffers_are_sized_by_the_frame_not_by_doubling() {
    let cfg = DecoderConfig {
        max_message_bytes: 64 << 20,
        allow_rsv1: false,
    };
    let buf_capacity =
        |dec: &Decoder<Server>| dec.buffered_bytes() - std::mem::size_of::<Partial>();
    let mut enc = Encoder::<Client>::new();
    // 256 KiB in one frame, over 64 KiB reads: one buffer of exactly its size.
    let payload = vec![3u8; 256 << 10];
    let mut stream = Vec::new();
    enc.frame(&mut stream, OpCode::Binary, &payload);
    let mut dec = Decoder::<Server>::new();
    let mut got = None;
    for piece in stream.chunks_mut(64 << 10) {
        let mut input = Input::new(piece);
        if let Some(ev) = dec.decode(&mut input, &cfg).unwrap() {
            got = Some(own(ev));
            assert_eq!(buf_capacity(&dec), payload.len());
        } else if !dec.is_idle() {
            assert_eq!(
                buf_capacity(&dec),
                payload.len(),
                "reserved at the first bytes"
            );
        }
    }
    assert_eq!(got, Some(Owned::Binary(payload)));
    // 8 MiB in one frame: grows by doubling, and ends exactly at its size.
    let payload = vec![4u8; 8 << 20];
    let mut stream = Vec::new();
    enc.frame(&mut stream, OpCode::Binary, &payload);
    let mut dec = Decoder::<Server>::new();
    let mut grows = 0;
    let mut last = 0;
    for piece in stream.chunks_mut(256 << 10) {
        let mut input = Input::new(piece);
        let done = dec.decode(&mut input, &cfg).unwrap().is_some();
        let cap = buf_capacity(&dec);
        grows += usize::from(cap != last);
        last = cap;
        assert!(cap <= payload.len());
        if done {
            assert_eq!(cap, payload.len());
        }
    }
    assert!(grows <= 8, "{grows} reallocations");
}
