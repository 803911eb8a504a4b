//! Echo + pub/sub peer on tokio + tokio-tungstenite.
//!
//! One task per connection. The task reads a message, answers it with `feed`
//! (buffered, not flushed), keeps going while more input is already available
//! (`now_or_never`), and flushes once the read side has nothing buffered.
//! Room deliveries arrive on a per-connection unbounded mpsc queue and go
//! through the same feed/flush path. Pings and closes are answered by
//! tungstenite itself.

use std::sync::Arc;

use futures_util::{FutureExt, SinkExt, StreamExt};
use peers::{parse_cmd, Cmd, Member, Rooms};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Bytes, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;
type Res<T> = Result<T, tungstenite::Error>;

/// Max messages handled between two flushes (bounds latency under a flood).
const BATCH: usize = 256;

fn main() {
    let args = peers::parse_args("peer-tungstenite");
    let rt = peers::runtime(args.threads);
    rt.block_on(async move {
        let listener = peers::bind(args.listen).expect("bind");
        eprintln!(
            "peer-tungstenite (tokio-tungstenite 0.30) listening on {} threads={}",
            listener.local_addr().expect("addr"),
            args.threads
        );
        let rooms: Arc<Rooms<Message>> = Arc::new(Rooms::default());
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let rooms = rooms.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(stream, rooms).await {
                    match e {
                        tungstenite::Error::ConnectionClosed
                        | tungstenite::Error::AlreadyClosed
                        | tungstenite::Error::Io(_)
                        | tungstenite::Error::Protocol(_) => {}
                        e => eprintln!("connection error: {e}"),
                    }
                }
            });
        }
    });
}

async fn handle(stream: TcpStream, rooms: Arc<Rooms<Message>>) -> Res<()> {
    let _ = stream.set_nodelay(true);
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let mut member = Member::new(rooms, tx);

    loop {
        // Wait for either an incoming message or a room delivery.
        tokio::select! {
            biased;
            out = rx.recv() => {
                // We hold a sender in `member`, so the queue never closes.
                let Some(out) = out else { return Ok(()) };
                ws.feed(out).await?;
            }
            msg = ws.next() => match msg {
                Some(msg) => on_message(msg?, &mut ws, &mut member).await?,
                None => return Ok(()),
            },
        }
        // Handle everything that is already available without waiting, then
        // flush once.
        let mut n = 0;
        while n < BATCH {
            let mut progressed = false;
            while let Ok(out) = rx.try_recv() {
                ws.feed(out).await?;
                progressed = true;
                n += 1;
            }
            match ws.next().now_or_never() {
                Some(Some(msg)) => {
                    on_message(msg?, &mut ws, &mut member).await?;
                    progressed = true;
                    n += 1;
                }
                Some(None) => {
                    let _ = ws.flush().await;
                    return Ok(());
                }
                None => {}
            }
            if !progressed {
                break;
            }
        }
        ws.flush().await?;
    }
}

async fn on_message(msg: Message, ws: &mut Ws, member: &mut Member<Message>) -> Res<()> {
    match msg {
        Message::Text(text) => match parse_cmd(text.as_str()) {
            Cmd::Echo => ws.feed(Message::Text(text)).await?,
            Cmd::Sub(room) => member.subscribe(room),
            Cmd::Unsub(room) => member.unsubscribe(room),
            Cmd::Pub { room, payload_at } => {
                let bytes: &Bytes = text.as_ref();
                // SAFETY: the payload starts right after an ASCII ':' of a valid
                // UTF-8 string, so the suffix is valid UTF-8 too.
                let payload = unsafe { Utf8Bytes::from_bytes_unchecked(bytes.slice(payload_at..)) };
                // One shared (refcounted) payload for all members; each
                // member's task encodes its own frame header.
                member.publish(room, Message::Text(payload));
            }
        },
        Message::Binary(data) => ws.feed(Message::Binary(data)).await?,
        // Pong replies and the close handshake are handled by tungstenite.
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
    }
    Ok(())
}
