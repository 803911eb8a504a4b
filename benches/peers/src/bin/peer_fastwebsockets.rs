//! Echo + pub/sub peer on fastwebsockets (hyper upgrade), modelled on
//! fastwebsockets' own `echo_server` / `echo_server_split` examples:
//! current-thread runtime by default, `tokio::task::unconstrained` per
//! connection, auto_close + auto_pong, fragment collection, and frames are
//! echoed straight back with `write_frame` (fastwebsockets writes each frame
//! to the socket immediately; there is no write buffer to flush).
//!
//! To also deliver room messages while waiting for input, the socket is split
//! (`unstable-split` feature, as in `echo_server_split`) and one task
//! `select!`s between the pinned read future and its room queue. The automatic
//! pong / close replies produced by the read half are pushed onto that same
//! queue, so all writes stay in order on one writer.

use std::sync::Arc;

use bytes::Bytes;
use fastwebsockets::{upgrade, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use peers::{parse_cmd, Cmd, Member, Rooms};
use tokio::sync::mpsc;

/// What a connection's writer can be asked to send.
#[derive(Clone)]
enum Out {
    /// A room delivery: one shared payload, sent as a text frame.
    Text(Bytes),
    /// An automatic reply (pong / close) produced by the read half.
    Ctrl(Arc<Frame<'static>>),
}

fn main() {
    let args = peers::parse_args("peer-fastwebsockets");
    let rt = peers::runtime(args.threads);
    rt.block_on(async move {
        let listener = peers::bind(args.listen).expect("bind");
        eprintln!(
            "peer-fastwebsockets (fastwebsockets 0.10) listening on {} threads={}",
            listener.local_addr().expect("addr"),
            args.threads
        );
        let rooms: Arc<Rooms<Out>> = Arc::new(Rooms::default());
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let rooms = rooms.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = service_fn(move |req| server_upgrade(req, rooms.clone()));
                let conn = http1::Builder::new()
                    .serve_connection(io, svc)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    eprintln!("http error: {e:?}");
                }
            });
        }
    });
}

async fn server_upgrade(
    mut req: Request<Incoming>,
    rooms: Arc<Rooms<Out>>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        if let Err(e) = tokio::task::unconstrained(handle_client(fut, rooms)).await {
            match e {
                WebSocketError::ConnectionClosed
                | WebSocketError::UnexpectedEOF
                | WebSocketError::IoError(_) => {}
                e => eprintln!("websocket error: {e}"),
            }
        }
    });
    Ok(response)
}

async fn handle_client(
    fut: upgrade::UpgradeFut,
    rooms: Arc<Rooms<Out>>,
) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let (rd, mut wr) = ws.split(tokio::io::split);
    let mut rd = FragmentCollectorRead::new(rd);

    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let ctrl_tx = tx.clone();
    let mut member = Member::new(rooms, tx);
    // Obligated sends (pong, close reply) go through our own queue.
    let mut send_fn = move |f: Frame<'static>| {
        let r = ctrl_tx
            .send(Out::Ctrl(Arc::new(f)))
            .map_err(|_| "connection queue closed");
        std::future::ready(r)
    };

    loop {
        let frame = {
            let read = rd.read_frame(&mut send_fn);
            tokio::pin!(read);
            loop {
                tokio::select! {
                    biased;
                    out = rx.recv() => {
                        // `member` holds a sender, so the queue never closes.
                        let Some(out) = out else { return Ok(()) };
                        if write_out(&mut wr, out).await? {
                            return Ok(());
                        }
                    }
                    frame = &mut read => break frame?,
                }
            }
        };
        match frame.opcode {
            OpCode::Close => {
                // The close reply is queued behind any pending deliveries.
                while let Ok(out) = rx.try_recv() {
                    if write_out(&mut wr, out).await? {
                        break;
                    }
                }
                return Ok(());
            }
            OpCode::Text => {
                // Text payloads are guaranteed valid UTF-8 by fastwebsockets.
                let cmd = std::str::from_utf8(&frame.payload)
                    .map(parse_cmd)
                    .unwrap_or(Cmd::Echo);
                match cmd {
                    Cmd::Echo => wr.write_frame(frame).await?,
                    Cmd::Sub(room) => member.subscribe(room),
                    Cmd::Unsub(room) => member.unsubscribe(room),
                    Cmd::Pub { room, payload_at } => {
                        let room: Box<str> = room.into();
                        let payload = into_bytes(frame.payload).slice(payload_at..);
                        member.publish(&room, Out::Text(payload));
                    }
                }
            }
            OpCode::Binary => wr.write_frame(frame).await?,
            _ => {}
        }
    }
}

/// Writes one queued item; returns true if it was the close reply.
async fn write_out<S>(
    wr: &mut fastwebsockets::WebSocketWrite<S>,
    out: Out,
) -> Result<bool, WebSocketError>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    match out {
        Out::Text(payload) => {
            wr.write_frame(Frame::text(Payload::Borrowed(&payload)))
                .await?;
            Ok(false)
        }
        Out::Ctrl(f) => {
            let is_close = f.opcode == OpCode::Close;
            let frame = Frame::new(true, f.opcode, None, Payload::Borrowed(&f.payload));
            wr.write_frame(frame).await?;
            Ok(is_close)
        }
    }
}

fn into_bytes(p: Payload<'_>) -> Bytes {
    match p {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        Payload::Borrowed(s) => Bytes::copy_from_slice(s),
        Payload::BorrowedMut(s) => Bytes::copy_from_slice(s),
    }
}
