//! Rooms and publish/subscribe over real sockets, with two workers.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{config, connect, read_text, wait_until, Got, Raw, TestServer, Ws};
use edgews::protocol::Message;
use edgews::runtime::{Accept, Conn, ConnId, Handler, Reject, Request, SlowConsumerPolicy};
use tungstenite::Message as TMessage;

fn subscribe(ws: &mut Ws, room: &str) {
    ws.send(TMessage::text(format!("sub:{room}"))).unwrap();
}

/// Joins `n` clients to `room` and waits until the server counts `total` members.
fn join(server: &TestServer, room: &str, n: usize, total: usize) -> Vec<Ws> {
    let mut clients: Vec<Ws> = (0..n).map(|_| connect(server.addr)).collect();
    for ws in &mut clients {
        subscribe(ws, room);
    }
    assert!(wait_until(Duration::from_secs(5), || server
        .handle
        .room_size(room)
        == Some(total)));
    clients
}

/// Joins `n` clients to an empty `room`.
fn members(server: &TestServer, room: &str, n: usize) -> Vec<Ws> {
    join(server, room, n, n)
}

#[test]
fn every_member_on_every_worker_gets_every_message_once_in_order() {
    let server = TestServer::echo(config());
    let mut clients = members(&server, "lobby", 40);
    let subs: Vec<u64> = server
        .handle
        .worker_stats()
        .iter()
        .map(|s| s.subscriptions.get())
        .collect();
    assert!(
        subs.iter().all(|&n| n > 0),
        "members on both workers: {subs:?}"
    );
    // Client 0 publishes (it is a member, so it gets its own messages too).
    for i in 0..200 {
        clients[0]
            .send(TMessage::text(format!("pub:lobby:m{i}")))
            .unwrap();
    }
    // Each reader hands its client back so the room stays full for the stats below.
    let (received, _clients): (Vec<Vec<String>>, Vec<Ws>) = clients
        .into_iter()
        .map(|mut ws| {
            thread::spawn(move || {
                let got: Vec<String> = (0..200).map(|_| read_text(&mut ws)).collect();
                (got, ws)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .unzip();
    let expected: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    for (n, got) in received.iter().enumerate() {
        assert_eq!(got, &expected, "member {n}");
    }
    let (size, stats) = server.handle.room_stats("lobby").unwrap();
    assert_eq!(
        (size, stats.published, stats.delivered, stats.dropped),
        (40, 200, 8000, 0)
    );
}

#[test]
fn publishing_from_a_foreign_thread() {
    let server = TestServer::echo(config());
    let mut clients = members(&server, "news", 10);
    let handle = server.handle.clone();
    thread::spawn(move || {
        for i in 0..100 {
            handle.publish("news", Message::Text(&format!("n{i}")));
        }
    })
    .join()
    .unwrap();
    for ws in &mut clients {
        for i in 0..100 {
            assert_eq!(read_text(ws), format!("n{i}"));
        }
    }
}

#[test]
fn leaving_and_disconnecting_stop_delivery_and_counts_follow_churn() {
    let server = TestServer::echo(config());
    let mut clients = members(&server, "r", 20);
    // Half leave, a quarter disconnect.
    for ws in clients.iter_mut().take(10) {
        ws.send(TMessage::text("unsub:r")).unwrap();
    }
    let gone: Vec<Ws> = clients.drain(10..15).collect();
    drop(gone);
    assert!(wait_until(Duration::from_secs(5), || server
        .handle
        .room_size("r")
        == Some(5)));
    clients[0]
        .send(TMessage::text("pub:r:only-members"))
        .unwrap();
    for ws in clients.iter_mut().skip(10) {
        assert_eq!(read_text(ws), "only-members");
    }
    // Those who left get the next echo, not the publish.
    for ws in clients.iter_mut().take(10) {
        ws.send(TMessage::text("echo-check")).unwrap();
        assert_eq!(read_text(ws), "echo-check");
    }
    // Churn: join/leave loops; the count ends exact.
    for round in 0..20 {
        let mut c = connect(server.addr);
        subscribe(&mut c, "r");
        if round % 2 == 0 {
            c.send(TMessage::text("unsub:r")).unwrap();
            c.send(TMessage::text("sync")).unwrap();
            assert_eq!(read_text(&mut c), "sync");
        } else {
            c.send(TMessage::text("sync")).unwrap();
            assert_eq!(read_text(&mut c), "sync");
            drop(c);
        }
    }
    assert!(wait_until(Duration::from_secs(5), || server
        .handle
        .room_size("r")
        == Some(5)));
    drop(clients);
    assert!(wait_until(Duration::from_secs(5), || server
        .handle
        .room_size("r")
        == Some(0)));
    let rooms: u64 = server
        .handle
        .worker_stats()
        .iter()
        .map(|s| s.rooms.get())
        .sum();
    assert_eq!(rooms, 0, "empty rooms are removed");
}

/// `others:<room>:<text>` publishes to everyone but the sender;
/// `to:<name>:<text>` sends to the connection registered as <name>;
/// `name:<name>` registers; `sub:<room>` joins.
struct Directory {
    names: Arc<Mutex<HashMap<String, ConnId>>>,
}

impl Handler for Directory {
    type Data = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Result<Accept<()>, Reject> {
        Ok(Accept::new(()))
    }
    fn on_message(&mut self, conn: &mut Conn<'_, ()>, msg: Message<'_>) {
        let Message::Text(text) = msg else { return };
        if let Some(name) = text.strip_prefix("name:") {
            self.names
                .lock()
                .unwrap()
                .insert(name.to_owned(), conn.id());
            conn.send_text("named");
        } else if let Some(room) = text.strip_prefix("sub:") {
            conn.subscribe(room);
            conn.send_text("joined");
        } else if let Some((room, body)) =
            text.strip_prefix("others:").and_then(|r| r.split_once(':'))
        {
            conn.publish_others(room, Message::Text(body));
        } else if let Some((name, body)) = text.strip_prefix("to:").and_then(|r| r.split_once(':'))
        {
            let id = self.names.lock().unwrap().get(name).copied();
            let ok = id.is_some_and(|id| conn.send_to(id, Message::Text(body)));
            if !ok {
                conn.send_text("no such connection");
            }
        }
    }
}

#[test]
fn publish_others_and_send_to_across_workers() {
    let names = Arc::new(Mutex::new(HashMap::new()));
    let n = names.clone();
    let server = TestServer::start(config(), move |_| Directory { names: n.clone() });
    let mut clients: Vec<Ws> = (0..8).map(|_| connect(server.addr)).collect();
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send(TMessage::text(format!("name:c{i}"))).unwrap();
        assert_eq!(read_text(ws), "named");
        ws.send(TMessage::text("sub:team")).unwrap();
        assert_eq!(read_text(ws), "joined");
    }
    let workers: std::collections::HashSet<usize> = names
        .lock()
        .unwrap()
        .values()
        .map(|id| id.worker())
        .collect();
    assert_eq!(workers.len(), 2, "clients spread over both workers");
    clients[0]
        .send(TMessage::text("others:team:hi all"))
        .unwrap();
    for ws in clients.iter_mut().skip(1) {
        assert_eq!(read_text(ws), "hi all");
    }
    // Every client sends a private message to every other one.
    for (i, ws) in clients.iter_mut().enumerate() {
        for j in (0..8).filter(|&j| j != i) {
            ws.send(TMessage::text(format!("to:c{j}:from c{i}")))
                .unwrap();
        }
    }
    for (j, ws) in clients.iter_mut().enumerate() {
        let mut got: Vec<String> = (0..7).map(|_| read_text(ws)).collect();
        got.sort();
        let mut want: Vec<String> = (0..8)
            .filter(|&i| i != j)
            .map(|i| format!("from c{i}"))
            .collect();
        want.sort();
        assert_eq!(got, want, "client {j}");
    }
    // The sender did not get its own publish: its next message is a fresh reply.
    clients[0].send(TMessage::text("to:nobody:x")).unwrap();
    assert_eq!(read_text(&mut clients[0]), "no such connection");
}

/// A member that stops reading while three others keep up: the publisher
/// sends in batches that the healthy readers take in stride (so only the
/// stalled member is ever over the backpressure limit).
fn slow_consumer(policy: SlowConsumerPolicy) -> TestServer {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A long close timeout: the stalled member reads only at the end, and must
    // then find the close frame behind what the kernel already holds for it.
    let cfg = config()
        .backpressure_bytes(256 << 10)
        .slow_consumer(policy)
        .close_timeout(Duration::from_secs(60));
    let server = TestServer::echo(cfg);
    // The stalled member keeps normal socket buffers: 19 MB is more than the
    // kernel holds on its behalf (~4 MB send + ~6 MB receive at most), so the
    // rest must be dropped or the member closed. (Shrinking its receive buffer
    // would clamp the TCP window below one loopback MSS and make the final
    // drain crawl at the persist timer's pace.)
    let mut stalled = Raw::connect(server.addr);
    stalled.text("sub:feed");
    let readers = join(&server, "feed", 3, 4);
    let mut publisher = connect(server.addr);
    let body = "x".repeat(16 << 10);
    let (count, batch) = (1200, 8); // 19 MB to every member
    let progress: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let threads: Vec<_> = readers
        .into_iter()
        .zip(progress.clone())
        .map(|(mut ws, done)| {
            thread::spawn(move || {
                for i in 0..count {
                    let text = read_text(&mut ws);
                    assert!(text.starts_with(&format!("{i}:")), "in order, none missing");
                    done.store(i + 1, Ordering::Release);
                }
            })
        })
        .collect();
    let rss_before = common::rss_bytes();
    let mut peak = rss_before;
    for start in (0..count).step_by(batch) {
        for i in start..start + batch {
            publisher
                .send(TMessage::text(format!("pub:feed:{i}:{body}")))
                .unwrap();
        }
        let caught_up = wait_until(Duration::from_secs(10), || {
            progress
                .iter()
                .all(|p| p.load(Ordering::Acquire) >= start + batch)
        });
        assert!(caught_up, "healthy readers stalled at batch {start}");
        if start % 400 == 0 {
            peak = peak.max(common::rss_bytes());
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    let growth = peak.max(common::rss_bytes()).saturating_sub(rss_before);
    assert!(
        growth < 16 << 20,
        "RSS grew by {} MiB while 19 MB went to a stalled member",
        growth >> 20
    );
    if policy == SlowConsumerPolicy::Close {
        assert_eq!(stalled.expect_close().0, 1008);
    } else {
        // Still connected; what it does get is in order, with gaps.
        let mut last = None;
        for _ in 0..3 {
            match stalled.next() {
                Got::Text(t) => {
                    let n: usize = t.split(':').next().unwrap().parse().unwrap();
                    assert!(last.is_none_or(|l| n > l));
                    last = Some(n);
                }
                other => panic!("{other:?}"),
            }
        }
    }
    server
}

#[test]
fn slow_consumer_drop_policy_bounds_memory_and_spares_the_room() {
    let server = slow_consumer(SlowConsumerPolicy::Drop);
    let drops: u64 = server
        .handle
        .worker_stats()
        .iter()
        .map(|s| s.slow_consumer_drops.get())
        .sum();
    assert!(
        drops > 100,
        "messages to the stalled member were dropped: {drops}"
    );
}

#[test]
fn slow_consumer_close_policy_closes_with_1008() {
    let server = slow_consumer(SlowConsumerPolicy::Close);
    let closes: u64 = server
        .handle
        .worker_stats()
        .iter()
        .map(|s| s.slow_consumer_closes.get())
        .sum();
    assert_eq!(closes, 1);
}
