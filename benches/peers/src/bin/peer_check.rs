//! Conformance check (and a rough echo throughput probe) for a peer server.
//!
//! ```text
//! peer-check --url ws://127.0.0.1:9001/                  # functional checks, exit 1 on mismatch
//! peer-check --url ws://127.0.0.1:9001/ --bench 5 \
//!            --conns 16 --size 64 --window 64           # + rough pipelined echo msgs/s
//! peer-check --url ... --bench 5 --no-checks            # echo throughput only (plain echo servers)
//! ```

use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type R<T> = Result<T, String>;

const T: Duration = Duration::from_secs(5);

struct Opts {
    url: String,
    bench: u64,
    conns: usize,
    size: usize,
    window: usize,
    no_checks: bool,
}

fn parse() -> Opts {
    let mut o = Opts {
        url: "ws://127.0.0.1:9001/".into(),
        bench: 0,
        conns: 16,
        size: 64,
        window: 64,
        no_checks: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut v = || {
            it.next()
                .unwrap_or_else(|| die(&format!("missing value for {a}")))
        };
        match a.as_str() {
            "--url" => o.url = v(),
            "--bench" => o.bench = v().parse().unwrap_or_else(|_| die("bad --bench")),
            "--conns" => o.conns = v().parse().unwrap_or_else(|_| die("bad --conns")),
            "--size" => o.size = v().parse().unwrap_or_else(|_| die("bad --size")),
            "--window" => o.window = v().parse().unwrap_or_else(|_| die("bad --window")),
            "--no-checks" => o.no_checks = true,
            _ => die(&format!("unknown argument {a}")),
        }
    }
    o
}

fn die(m: &str) -> ! {
    eprintln!("peer-check: {m}");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = parse();
    let mut failed = 0;
    let mut passed = 0;
    macro_rules! check {
        ($name:expr, $e:expr) => {
            match tokio::time::timeout(Duration::from_secs(20), $e).await {
                Ok(Ok(())) => {
                    passed += 1;
                    println!("PASS {}", $name);
                }
                Ok(Err(e)) => {
                    failed += 1;
                    println!("FAIL {}: {}", $name, e);
                }
                Err(_) => {
                    failed += 1;
                    println!("FAIL {}: timed out", $name);
                }
            }
        };
    }
    let u = o.url.as_str();
    if o.no_checks {
        bench(&o).await;
        return;
    }
    check!("echo text/binary/empty/utf8", echo_basic(u));
    check!(
        "echo large (64 KiB text, 1 MiB + 8 MiB binary)",
        echo_large(u)
    );
    check!("echo pipelined 1000 messages in order", echo_pipelined(u));
    check!("echo fragmented text message", echo_fragmented(u));
    check!("ping -> pong", ping_pong(u));
    check!(
        "non-commands echoed (binary sub:, pub without payload sep)",
        not_commands(u)
    );
    check!("pub/sub across connections, incl. sender, unsub", pubsub(u));
    check!("pub/sub fan-out to 50 subscribers, 2 rooms", fanout(u));
    check!("close handshake", close(u));
    println!("{passed} passed, {failed} failed");
    if failed == 0 && o.bench > 0 {
        bench(&o).await;
    }
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

async fn connect(url: &str) -> R<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        let _ = s.set_nodelay(true);
    }
    Ok(ws)
}

async fn send(ws: &mut Ws, m: Message) -> R<()> {
    ws.send(m).await.map_err(|e| format!("send: {e}"))
}

/// Next data (text/binary) message, skipping pongs.
async fn recv(ws: &mut Ws) -> R<Message> {
    loop {
        let m = tokio::time::timeout(T, ws.next())
            .await
            .map_err(|_| "timed out waiting for a message".to_string())?
            .ok_or("connection ended")?
            .map_err(|e| format!("recv: {e}"))?;
        match m {
            Message::Text(_) | Message::Binary(_) | Message::Close(_) => return Ok(m),
            _ => {}
        }
    }
}

async fn expect(ws: &mut Ws, want: &Message) -> R<()> {
    let got = recv(ws).await?;
    if &got != want {
        return Err(format!("expected {}, got {}", show(want), show(&got)));
    }
    Ok(())
}

fn show(m: &Message) -> String {
    match m {
        Message::Text(t) if t.len() <= 64 => format!("text {:?}", t.as_str()),
        Message::Text(t) => format!("text of {} bytes", t.len()),
        Message::Binary(b) if b.len() <= 32 => format!("binary {:?}", &b[..]),
        Message::Binary(b) => format!("binary of {} bytes", b.len()),
        other => format!("{other:?}"),
    }
}

fn text(s: &str) -> Message {
    Message::Text(s.into())
}

/// Round-trips a marker so that every earlier message on `ws` has been processed.
async fn sync(ws: &mut Ws, tag: &str) -> R<()> {
    let m = text(&format!("sync-{tag}"));
    send(ws, m.clone()).await?;
    expect(ws, &m).await
}

async fn echo_basic(u: &str) -> R<()> {
    let mut ws = connect(u).await?;
    for m in [
        text("hello"),
        Message::Binary(Bytes::from_static(&[0, 1, 2, 255])),
        text(""),
        Message::Binary(Bytes::new()),
        text("héllo wörld ✓ 🦀"),
        text("subscribe:not-a-command"),
        text("x".repeat(125).as_str()),
        text("y".repeat(126).as_str()),
    ] {
        send(&mut ws, m.clone()).await?;
        expect(&mut ws, &m).await?;
    }
    Ok(())
}

async fn echo_large(u: &str) -> R<()> {
    let mut ws = connect(u).await?;
    let t: String = (0..65536)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let b1: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let b8: Vec<u8> = (0..8 << 20).map(|i| (i * 13 % 253) as u8).collect();
    for m in [
        text(&t),
        Message::Binary(b1.into()),
        Message::Binary(b8.into()),
    ] {
        send(&mut ws, m.clone()).await?;
        expect(&mut ws, &m).await?;
    }
    Ok(())
}

async fn echo_pipelined(u: &str) -> R<()> {
    let mut ws = connect(u).await?;
    for i in 0..1000 {
        let m = if i % 2 == 0 {
            text(&format!("msg {i}"))
        } else {
            Message::Binary(vec![i as u8; i % 300].into())
        };
        ws.feed(m).await.map_err(|e| e.to_string())?;
    }
    ws.flush().await.map_err(|e| e.to_string())?;
    for i in 0..1000 {
        let m = if i % 2 == 0 {
            text(&format!("msg {i}"))
        } else {
            Message::Binary(vec![i as u8; i % 300].into())
        };
        expect(&mut ws, &m).await?;
    }
    Ok(())
}

async fn echo_fragmented(u: &str) -> R<()> {
    let mut ws = connect(u).await?;
    let parts: [&[u8]; 3] = [b"frag", b"ment", b"ed \xe2\x9c\x93"];
    for (i, p) in parts.iter().enumerate() {
        let header = FrameHeader {
            is_final: i == parts.len() - 1,
            opcode: if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            },
            ..FrameHeader::default()
        };
        let f = Frame::from_payload(header, Bytes::copy_from_slice(p));
        send(&mut ws, Message::Frame(f)).await?;
    }
    expect(&mut ws, &text("fragmented ✓")).await
}

async fn ping_pong(u: &str) -> R<()> {
    let mut ws = connect(u).await?;
    send(&mut ws, Message::Ping(Bytes::from_static(b"are you there"))).await?;
    let m = tokio::time::timeout(T, ws.next())
        .await
        .map_err(|_| "no pong".to_string())?
        .ok_or("connection ended")?
        .map_err(|e| e.to_string())?;
    match m {
        Message::Pong(p) if &p[..] == b"are you there" => Ok(()),
        Message::Pong(p) => Err(format!("pong payload mismatch: {p:?}")),
        other => Err(format!("expected pong, got {}", show(&other))),
    }
}

async fn not_commands(u: &str) -> R<()> {
    let mut ws = connect(u).await?;
    for m in [
        Message::Binary(Bytes::from_static(b"sub:r")),
        Message::Binary(Bytes::from_static(b"pub:r:x")),
        text("pub:nocolon"),
        text("Sub:r"),
    ] {
        send(&mut ws, m.clone()).await?;
        expect(&mut ws, &m).await?;
    }
    Ok(())
}

async fn pubsub(u: &str) -> R<()> {
    let room = format!("room-{}", std::process::id());
    let mut a = connect(u).await?;
    let mut b = connect(u).await?;
    let mut c = connect(u).await?; // never subscribes
    send(&mut a, text(&format!("sub:{room}"))).await?;
    send(&mut b, text(&format!("sub:{room}"))).await?;
    sync(&mut a, "a1").await?;
    sync(&mut b, "b1").await?;

    // b publishes: a and b (sender, subscribed) both get the payload.
    send(&mut b, text(&format!("pub:{room}:hello from b"))).await?;
    expect(&mut a, &text("hello from b")).await?;
    expect(&mut b, &text("hello from b")).await?;

    // A non-member publishes, payload containing ':' and UTF-8.
    send(&mut c, text(&format!("pub:{room}:a:b:c ✓"))).await?;
    expect(&mut a, &text("a:b:c ✓")).await?;
    expect(&mut b, &text("a:b:c ✓")).await?;
    // Empty payload.
    send(&mut c, text(&format!("pub:{room}:"))).await?;
    expect(&mut a, &text("")).await?;
    expect(&mut b, &text("")).await?;
    sync(&mut c, "c1").await?; // c got nothing but its own echo

    // Publishing to an empty/unknown room goes nowhere.
    send(&mut a, text("pub:nobody-here:zzz")).await?;
    sync(&mut a, "a2").await?;

    // a unsubscribes; b's next publish reaches only b.
    send(&mut a, text(&format!("unsub:{room}"))).await?;
    sync(&mut a, "a3").await?;
    send(&mut b, text(&format!("pub:{room}:only b"))).await?;
    expect(&mut b, &text("only b")).await?;
    send(&mut c, text(&format!("pub:{room}:only b again"))).await?;
    expect(&mut b, &text("only b again")).await?;
    sync(&mut a, "a4").await?; // would fail if a still received room traffic

    // Subscribing twice is idempotent (one delivery).
    send(&mut a, text(&format!("sub:{room}"))).await?;
    send(&mut a, text(&format!("sub:{room}"))).await?;
    sync(&mut a, "a5").await?;
    send(&mut c, text(&format!("pub:{room}:once"))).await?;
    expect(&mut a, &text("once")).await?;
    expect(&mut b, &text("once")).await?;
    sync(&mut a, "a6").await?;

    // A closed member is dropped from the room; the rest still get messages.
    b.close(None).await.map_err(|e| e.to_string())?;
    drop(b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    send(&mut c, text(&format!("pub:{room}:after b left"))).await?;
    expect(&mut a, &text("after b left")).await?;
    Ok(())
}

async fn fanout(u: &str) -> R<()> {
    let tag = std::process::id();
    let mut subs = Vec::new();
    for i in 0..50 {
        let mut ws = connect(u).await?;
        let room = if i % 2 == 0 { "even" } else { "odd" };
        send(&mut ws, text(&format!("sub:fan-{tag}-{room}"))).await?;
        send(&mut ws, text(&format!("sub:fan-{tag}-all"))).await?;
        sync(&mut ws, "s").await?;
        subs.push(ws);
    }
    let mut p = connect(u).await?;
    let big = "B".repeat(100_000);
    for k in 0..20 {
        send(&mut p, text(&format!("pub:fan-{tag}-all:m{k}"))).await?;
        send(&mut p, text(&format!("pub:fan-{tag}-even:e{k}"))).await?;
    }
    send(&mut p, text(&format!("pub:fan-{tag}-all:{big}"))).await?;
    for (i, ws) in subs.iter_mut().enumerate() {
        for k in 0..20 {
            expect(ws, &text(&format!("m{k}"))).await?;
            if i % 2 == 0 {
                expect(ws, &text(&format!("e{k}"))).await?;
            }
        }
        expect(ws, &text(&big)).await?;
    }
    Ok(())
}

async fn close(u: &str) -> R<()> {
    let mut ws = connect(u).await?;
    send(&mut ws, text("before close")).await?;
    expect(&mut ws, &text("before close")).await?;
    ws.send(Message::Close(None))
        .await
        .map_err(|e| e.to_string())?;
    // Expect the server's close reply, then the end of the stream.
    let mut got_close = false;
    loop {
        match tokio::time::timeout(T, ws.next()).await {
            Err(_) => return Err("timed out waiting for close reply".into()),
            Ok(None) => break,
            Ok(Some(Ok(Message::Close(_)))) => got_close = true,
            Ok(Some(Ok(other))) => return Err(format!("unexpected {}", show(&other))),
            Ok(Some(Err(e))) => {
                if got_close {
                    break;
                }
                return Err(format!("error before close reply: {e}"));
            }
        }
    }
    if got_close {
        Ok(())
    } else {
        Err("stream ended without a close reply".into())
    }
}

/// Rough pipelined echo throughput: `conns` connections, each keeping `window`
/// messages of `size` bytes in flight, for `bench` seconds.
async fn bench(o: &Opts) {
    let deadline = Instant::now() + Duration::from_secs(o.bench);
    let mut tasks = Vec::new();
    for _ in 0..o.conns {
        let ws = match connect(&o.url).await {
            Ok(ws) => ws,
            Err(e) => die(&e),
        };
        let (size, window) = (o.size, o.window);
        tasks.push(tokio::spawn(async move {
            let (mut w, mut r) = ws.split();
            let payload = Bytes::from(vec![b'x'; size]);
            // Keep `window` messages in flight: one new message per echo received.
            for _ in 0..window {
                w.feed(Message::Binary(payload.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            w.flush().await.map_err(|e| e.to_string())?;
            let (mut n, mut sent) = (0u64, window as u64);
            let check = |m: Option<Result<Message, _>>| -> R<()> {
                match m {
                    Some(Ok(Message::Binary(b))) if b.len() == size => Ok(()),
                    Some(Ok(other)) => Err(format!("bench: unexpected {}", show(&other))),
                    Some(Err(e)) => Err(format!("bench: {e}")),
                    None => Err("bench: connection ended".into()),
                }
            };
            while n < sent {
                check(r.next().await)?;
                n += 1;
                let mut more = 0;
                if Instant::now() < deadline {
                    w.feed(Message::Binary(payload.clone()))
                        .await
                        .map_err(|e| e.to_string())?;
                    sent += 1;
                    // Batch: answer everything already received before flushing.
                    while more < 256 {
                        match r.next().now_or_never() {
                            Some(m) => {
                                check(m)?;
                                n += 1;
                                more += 1;
                                w.feed(Message::Binary(payload.clone()))
                                    .await
                                    .map_err(|e| e.to_string())?;
                                sent += 1;
                            }
                            None => break,
                        }
                    }
                    w.flush().await.map_err(|e| e.to_string())?;
                }
            }
            let _ = w.close().await;
            Ok::<u64, String>(n)
        }));
    }
    let start = Instant::now();
    let mut total = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => die(&e),
            Err(e) => die(&e.to_string()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "bench: {} conns x window {} x {} B binary: {} echoes in {:.2}s = {:.0} msg/s",
        o.conns,
        o.window,
        o.size,
        total,
        secs,
        total as f64 / secs
    );
}
