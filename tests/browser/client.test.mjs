// edgews.js's own logic, in Node against a scripted fake WebSocket: the
// reconnect schedule (backoff, jitter bounds, drain hints), rejoin with
// `since`, the `recovered` flag, queueing while disconnected, resending what
// was in flight, and when it gives up. Timers are mocked, so nothing sleeps.
// The real-browser, real-server test is chat.test.mjs.
//   node --test tests/browser/client.test.mjs
import { test, mock, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { EdgewsClient, EdgewsError, State } from "../../web/edgews.js";

/** A WebSocket that records what the client sends and lets the test play the server. */
class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.closed = null;
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code, reason) {
    this.closed = { code, reason };
  }
  // --- the server's side
  deliver(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  welcome(extra = {}) {
    this.deliver({ type: "welcome", conn_id: 1, user: { id: "u", name: "U" }, server_time: 0, expires_at: null, limits: {}, ...extra });
  }
  ack(req, extra = {}) {
    this.deliver({ type: "ack", id: req.id, ...extra });
  }
  drop(code = 1006, reason = "") {
    this.onclose?.({ code, reason });
  }
  take(type) {
    const i = this.sent.findIndex((m) => m.type === type);
    assert.notEqual(i, -1, `the client sent a ${type}: ${JSON.stringify(this.sent)}`);
    return this.sent.splice(i, 1)[0];
  }
}

const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};
const last = () => FakeSocket.all.at(-1);

let random;
beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ["setTimeout", "Date"] });
  random = 0.5;
  mock.method(Math, "random", () => random);
});
afterEach(() => {
  mock.timers.reset();
  mock.restoreAll();
});

function client(options = {}) {
  return new EdgewsClient("ws://test/ws", { token: "T", WebSocket: FakeSocket, pingIntervalMs: 0, ...options });
}

async function connected(c) {
  const p = c.connect();
  await flush();
  last().welcome();
  await flush();
  return p;
}

test("offers the token as a subprotocol and resolves connect with the welcome", async () => {
  const c = client();
  const welcome = await connected(c);
  assert.deepEqual(last().protocols, ["edgews.v1", "token.T"]);
  assert.equal(welcome.user.id, "u");
  assert.equal(c.state, State.OPEN);
});

test("a request settles with its ack, or rejects with the error's code", async () => {
  const c = client();
  await connected(c);
  const ok = c.join("lobby");
  const bad = c.send("nowhere", { text: "x" });
  const ws = last();
  const join = ws.take("join");
  const msg = ws.take("message");
  ws.deliver({ type: "error", id: msg.id, code: "not_in_room", message: "join first" });
  ws.ack(join, { room: "lobby", members: 3 });
  assert.equal((await ok).members, 3);
  await assert.rejects(bad, (e) => e instanceof EdgewsError && e.code === "not_in_room");
});

test("backoff doubles from initialDelayMs up to maxDelayMs, minus jitter", async () => {
  const c = client({ initialDelayMs: 100, maxDelayMs: 1000 });
  const delays = [];
  c.on("close", (e) => delays.push(e.delayMs));
  await connected(c);
  random = 0; // no jitter taken off
  for (let i = 0; i < 6; i++) {
    last().drop();
    mock.timers.tick(delays.at(-1));
    await flush();
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
  random = 1; // the most jitter: half the delay taken off
  last().drop();
  assert.equal(delays.at(-1), 500);
});

test("a welcome resets the backoff", async () => {
  const c = client({ initialDelayMs: 100 });
  const delays = [];
  c.on("close", (e) => delays.push(e.delayMs));
  await connected(c);
  random = 0;
  last().drop();
  mock.timers.tick(100);
  await flush();
  last().drop();
  mock.timers.tick(200);
  await flush();
  last().welcome();
  await flush();
  last().drop();
  assert.deepEqual(delays, [100, 200, 100]);
});

test("a drain event's reconnect_after_ms sets the next delay, spread by up to half", async () => {
  const c = client();
  const delays = [];
  c.on("close", (e) => delays.push(e.delayMs));
  const drains = [];
  c.on("drain", (e) => drains.push(e));
  await connected(c);
  last().deliver({ type: "drain", reconnect_after_ms: 4000 });
  random = 0;
  last().drop(1001, "");
  assert.equal(drains.length, 1);
  assert.deepEqual(delays, [4000]);
  const sockets = FakeSocket.all.length;
  mock.timers.tick(3999);
  await flush();
  assert.equal(FakeSocket.all.length, sockets, "no attempt before the hint");
  mock.timers.tick(1);
  await flush();
  assert.equal(FakeSocket.all.length, sockets + 1);
});

test("a JSON close reason's reconnect_after_ms is honoured too", async () => {
  const c = client();
  const delays = [];
  c.on("close", (e) => delays.push(e.delayMs));
  await connected(c);
  random = 1;
  last().drop(1001, '{"reconnect_after_ms":2000}');
  assert.deepEqual(delays, [3000]);
});

test("rejoins after a reconnect, with since when the server gave offsets, and reports recovered", async () => {
  const c = client();
  await connected(c);
  const rejoins = [];
  c.on("rejoin", (e) => rejoins.push(e));
  for (const room of ["a", "b"]) {
    const p = c.join(room);
    last().ack(last().take("join"), { room, members: 1 });
    await p;
  }
  last().deliver({ type: "message", room: "a", from: { id: "x", name: "X" }, data: 1, ts: 1, offset: 41, epoch: "e1" });
  last().deliver({ type: "message", room: "a", from: { id: "x", name: "X" }, data: 2, ts: 2, offset: 42, epoch: "e1" });
  last().drop();
  mock.timers.tick(60_000);
  await flush();
  const ws = last();
  ws.welcome();
  await flush();
  const joinA = ws.take("join");
  const joinB = ws.take("join");
  assert.deepEqual({ ...joinA, id: 0 }, { type: "join", room: "a", since: { epoch: "e1", offset: 42 }, id: 0 });
  assert.deepEqual({ ...joinB, id: 0 }, { type: "join", room: "b", id: 0 }, "no since without offsets");
  assert.equal(c.state, State.RECONNECTING, "not open before the rooms are rejoined");
  ws.ack(joinA, { room: "a", members: 2, recovered: true });
  ws.ack(joinB, { room: "b", members: 1 });
  await flush();
  assert.equal(c.state, State.OPEN);
  assert.deepEqual(
    rejoins.map((r) => [r.room, r.recovered]),
    [["a", true], ["b", false]],
  );
});

test("the join ack's position is enough for since: no message needed", async () => {
  const c = client();
  await connected(c);
  const p = c.join("quiet");
  last().ack(last().take("join"), { room: "quiet", members: 1, epoch: "e7", offset: 12 });
  await p;
  last().drop();
  mock.timers.tick(60_000);
  await flush();
  const ws = last();
  ws.welcome();
  await flush();
  const join = ws.take("join");
  assert.deepEqual({ ...join, id: 0 }, { type: "join", room: "quiet", since: { epoch: "e7", offset: 12 }, id: 0 });
  // Refused: the ack's new position is the base of the next rejoin.
  ws.ack(join, { room: "quiet", members: 1, epoch: "e8", offset: 3, recovered: false, reason: "epoch_changed" });
  await flush();
  ws.drop();
  mock.timers.tick(60_000);
  await flush();
  const ws2 = last();
  ws2.welcome();
  await flush();
  const again = ws2.take("join");
  assert.deepEqual(again.since, { epoch: "e8", offset: 3 });
});

test("requests made while disconnected are queued and sent after the rejoin, in order", async () => {
  const c = client();
  await connected(c);
  const j = c.join("r");
  last().ack(last().take("join"), { room: "r", members: 1 });
  await j;
  last().drop();
  const sent = [c.send("r", "one"), c.send("r", "two"), c.sendPrivate("v", "pm")];
  assert.equal(c.typing("r"), false, "typing is not queued");
  await assert.rejects(c.ping(), (e) => e.code === "disconnected");
  mock.timers.tick(60_000);
  await flush();
  const ws = last();
  ws.welcome();
  await flush();
  assert.deepEqual(ws.sent.map((m) => m.type), ["join"], "only the rejoin goes first");
  ws.ack(ws.take("join"), { room: "r", members: 1 });
  await flush();
  assert.deepEqual(ws.sent.map((m) => m.data), ["one", "two", "pm"]);
  for (const m of [...ws.sent]) ws.ack(m);
  await Promise.all(sent);
});

test("requests on the wire when the connection drops are sent again (at least once)", async () => {
  const c = client();
  await connected(c);
  const p = c.sendPrivate("v", "hello");
  const first = last().take("private");
  last().drop();
  mock.timers.tick(60_000);
  await flush();
  last().welcome();
  await flush();
  const again = last().take("private");
  assert.equal(again.id, first.id);
  last().ack(again);
  await p;
});

test("with resendUnacked off, they reject with disconnected", async () => {
  const c = client({ resendUnacked: false });
  await connected(c);
  const p = c.sendPrivate("v", "hello");
  last().drop();
  await assert.rejects(p, (e) => e.code === "disconnected");
});

test("the queue is bounded", async () => {
  const c = client({ maxQueue: 2 });
  await connected(c);
  last().drop();
  c.send("r", 1).catch(() => {});
  c.send("r", 2).catch(() => {});
  await assert.rejects(c.send("r", 3), (e) => e.code === "queue_full");
});

test("4001 with a fixed token is final; with a token function it reconnects with a fresh token", async () => {
  const fixed = client();
  await connected(fixed);
  const queued = (last().drop(), fixed.send("r", 1));
  mock.timers.tick(60_000);
  await flush();
  last().drop(4001, "unauthorized");
  assert.equal(fixed.state, State.CLOSED);
  await assert.rejects(queued, (e) => e.code === "unauthorized");

  let n = 0;
  const fresh = client({ token: async () => `T${++n}` });
  await connected(fresh);
  last().drop(4003, "token expired");
  assert.equal(fresh.state, State.RECONNECTING);
  mock.timers.tick(60_000);
  await flush();
  assert.deepEqual(last().protocols, ["edgews.v1", "token.T2"]);
});

test("close() stops for good and rejects what is pending", async () => {
  const c = client();
  await connected(c);
  const p = c.send("r", 1);
  c.close();
  await assert.rejects(p, (e) => e.code === "closed");
  const sockets = FakeSocket.all.length;
  mock.timers.tick(600_000);
  await flush();
  assert.equal(FakeSocket.all.length, sockets);
  assert.equal(c.state, State.CLOSED);
});

test("silence past pingIntervalMs sends a ping; no reply within pingTimeoutMs reconnects", async () => {
  const c = client({ pingIntervalMs: 1000, pingTimeoutMs: 500 });
  await connected(c);
  const ws = last();
  mock.timers.tick(1000);
  assert.deepEqual(ws.sent, [{ type: "ping" }]);
  ws.deliver({ type: "pong", ts: 1 });
  mock.timers.tick(999);
  assert.equal(c.state, State.OPEN);
  mock.timers.tick(1);
  mock.timers.tick(500);
  assert.equal(c.state, State.RECONNECTING);
  assert.ok(ws.closed, "the dead socket was closed");
});

test("the token is refreshed before it expires when it comes from a function", async () => {
  let n = 0;
  const c = client({ token: () => `T${++n}`, refreshBeforeMs: 30_000 });
  const p = c.connect();
  await flush();
  last().welcome({ server_time: 1_000_000, expires_at: 1_000_000 + 120_000 });
  await p;
  mock.timers.tick(89_999);
  await flush();
  assert.equal(last().sent.length, 0);
  mock.timers.tick(1);
  await flush();
  const refresh = last().take("refresh");
  assert.equal(refresh.token, "T2");
});

test("a steady stream of messages means no pings; pings start after pingIntervalMs of silence", async () => {
  const c = client({ pingIntervalMs: 1000, pingTimeoutMs: 500 });
  await connected(c);
  const ws = last();
  for (let i = 0; i < 10; i++) {
    mock.timers.tick(400);
    ws.deliver({ type: "event_of_some_kind" });
  }
  assert.deepEqual(ws.sent, [], "no ping while messages keep arriving");
  mock.timers.tick(1000);
  assert.deepEqual(ws.sent, [{ type: "ping" }]);
});

test("leave while reconnecting settles locally and the room is not rejoined", async () => {
  const c = client();
  await connected(c);
  const j = c.join("r");
  last().ack(last().take("join"), { room: "r", members: 1 });
  await j;
  last().drop();
  const ack = await c.leave("r");
  assert.equal(ack.local, true);
  mock.timers.tick(60_000);
  await flush();
  last().welcome();
  await flush();
  assert.deepEqual(last().sent, []);
  assert.equal(c.state, State.OPEN);
});

test("server errors without an id and unknown event types reach the app", async () => {
  const c = client();
  await connected(c);
  const errors = [];
  const events = [];
  c.on("error", (e) => errors.push(e.code));
  c.on("event", (e) => events.push(e.type));
  last().deliver({ type: "error", code: "rate_limited", message: "slow down" });
  last().deliver({ type: "something_new", x: 1 });
  last().onmessage({ data: "not json" });
  assert.deepEqual(errors, ["rate_limited", "bad_json"]);
  assert.deepEqual(events, ["something_new"]);
});
