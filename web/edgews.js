// edgews.js: the browser (and Node ≥ 22) client of the edgews room server,
// wire protocol v1 (docs/protocol.md). One dependency-free ES module:
//
//   import { EdgewsClient } from "/edgews.js";
//   const client = new EdgewsClient("ws://127.0.0.1:8080/ws", { token: () => fetchToken() });
//   client.on("message", (m) => console.log(m.room, m.from.name, m.data));
//   await client.connect();
//   await client.join("lobby");
//   await client.send("lobby", { text: "hello" });
//
// What it does for the application (docs/client.md has the details):
// - authenticates with the token in the subprotocol list (`edgews.v1`,
//   `token.<jwt>`), since browsers cannot set an Authorization header;
// - turns every request into a promise settled by its one `ack` or `error`;
// - reconnects on its own with jittered exponential backoff, honouring a
//   server's drain hint (`reconnect_after_ms`, from a `drain` event or a JSON
//   close reason), rejoins the rooms it was in, with `since: {epoch, offset}`
//   when the server sent offsets, and reports `recovered` per room;
// - queues requests made while disconnected and sends them once the rooms
//   are rejoined, so a chat message typed during an outage is not lost;
// - detects a dead connection with an application ping, since browsers hide
//   WebSocket ping frames from JavaScript;
// - refreshes the token before it expires when `token` is a function.

/** The subprotocol of wire protocol v1. */
export const PROTOCOL = "edgews.v1";

/** Connection states, in the order a healthy connection goes through them. */
export const State = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  OPEN: "open",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
});

const DEFAULTS = Object.freeze({
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  factor: 2,
  jitter: 0.5,
  requestTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  pingIntervalMs: 25_000,
  pingTimeoutMs: 10_000,
  maxQueue: 1000,
  refreshBeforeMs: 30_000,
  resendUnacked: true,
});

// Close codes after which reconnecting with the same credentials is pointless.
const CLOSE_UNAUTHORIZED = 4001;
const CLOSE_TOKEN_EXPIRED = 4003;
const CLOSE_RATE_LIMIT = 4008;

// Requests that are worth keeping across an outage; the rest (typing, ping)
// are only meaningful now.
const QUEUEABLE = new Set(["join", "leave", "message", "private", "presence", "who"]);

/**
 * A request that failed: an `error` reply from the server (its `code` is one
 * of the protocol's stable codes, e.g. `not_in_room`), or a client-side
 * failure (`timeout`, `disconnected`, `closed`, `queue_full`).
 */
export class EdgewsError extends Error {
  constructor(code, message, reply) {
    super(message ? `${code}: ${message}` : code);
    this.name = "EdgewsError";
    /** The stable error code. */
    this.code = code;
    /** The server's `error` message, when there was one. */
    this.reply = reply ?? null;
  }
}

/** A client of one edgews room server endpoint. */
export class EdgewsClient {
  /**
   * @param {string} url the `ws:`/`wss:` URL of the endpoint, e.g. `wss://host/ws`
   * @param {object} options see docs/client.md; `token` (a string, or a
   *   function returning a string or a promise of one) is required
   */
  constructor(url, options = {}) {
    if (!options.token) throw new TypeError("EdgewsClient: options.token is required");
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this._WebSocket) throw new TypeError("EdgewsClient: no WebSocket implementation");
    /** The current state, one of {@link State}. */
    this.state = State.IDLE;
    /** The last `welcome` from the server (user, conn_id, limits), or null. */
    this.welcome = null;
    this._listeners = new Map();
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {msg, resolve, reject, timer, sent}
    this._queue = []; // pending entries waiting for a connection
    this._rooms = new Map(); // room -> {password, epoch, offset}
    this._attempt = 0;
    this._drainDelayMs = null;
    this._timers = { reconnect: null, ping: null, pingTimeout: null, refresh: null, connect: null };
    this._connectWaiters = [];
    this._presence = null;
    this._onOnline = () => {
      if (this.state === State.RECONNECTING) this._reconnectNow();
    };
    globalThis.addEventListener?.("online", this._onOnline);
  }

  // ---------------------------------------------------------------- events

  /**
   * Calls `fn(payload)` on each `event`; returns a function that removes it.
   * Events: `state`, `welcome`, `message`, `private`, `presence`,
   * `user_joined`, `user_left`, `typing`, `rejoin`, `drain`, `error`,
   * `close`, and `event` (every server message, for types this version
   * does not know).
   */
  on(event, fn) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  /** Removes a listener added with {@link on}. */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  _emit(event, payload) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (err) {
        // A listener's bug must not break the connection; surface it.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  }

  // ------------------------------------------------------------ connection

  /**
   * Opens the connection; resolves with the `welcome` message. While the
   * client is open or reconnecting, it resolves with the next welcome.
   */
  connect() {
    if (this.state === State.OPEN) return Promise.resolve(this.welcome);
    const waiter = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this.state === State.IDLE || this.state === State.CLOSED) {
      this._closedByUser = false;
      this._attempt = 0;
      this._open();
    }
    return waiter;
  }

  /**
   * Closes the connection for good (no reconnect). Pending and queued
   * requests reject with `closed`.
   */
  close(code = 1000, reason = "") {
    this._closedByUser = true;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      this._detach(ws);
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
    }
    this._failAll("closed", "the client was closed");
    this._rejectConnectWaiters(new EdgewsError("closed", "the client was closed"));
    this._setState(State.CLOSED);
    this._emit("close", { code, reason, reconnecting: false, byClient: true, wasOpen: ws != null });
  }

  /** Drops the connection as if the network failed, then reconnects (for demos and tests). */
  simulateDisconnect() {
    const ws = this._ws;
    if (!ws) return;
    this._detach(ws);
    this._ws = null;
    try {
      ws.close(4000, "simulated disconnect");
    } catch {
      ws.close();
    }
    this._onDisconnect(1006, "simulated disconnect");
  }

  async _open() {
    this._setState(this._attempt === 0 ? State.CONNECTING : State.RECONNECTING);
    let token;
    try {
      token = typeof this.options.token === "function" ? await this.options.token() : this.options.token;
    } catch (err) {
      this._emit("error", new EdgewsError("token", `could not get a token: ${err?.message ?? err}`));
      this._scheduleReconnect();
      return;
    }
    if (this._closedByUser) return;
    let ws;
    try {
      ws = new this._WebSocket(this.url, [PROTOCOL, `token.${token}`]);
    } catch (err) {
      this._emit("error", new EdgewsError("connect", String(err?.message ?? err)));
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this._welcomed = false;
    this._token = token;
    ws.onmessage = (ev) => this._onFrame(ev.data);
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._onDisconnect(ev.code, ev.reason);
    };
    ws.onerror = () => {}; // a close event always follows and carries what we need
    this._timers.connect = setTimeout(() => {
      // No welcome in time: treat as a failed attempt.
      if (this._ws === ws && !this._welcomed) {
        this._detach(ws);
        this._ws = null;
        ws.close();
        this._onDisconnect(1006, "connect timeout");
      }
    }, this.options.connectTimeoutMs);
  }

  _detach(ws) {
    ws.onmessage = ws.onclose = ws.onerror = null;
  }

  _onDisconnect(code, reason) {
    this._clearTimers();
    const wasOpen = this.state === State.OPEN;
    // Requests on the wire have no reply coming. Those worth keeping go back
    // to the front of the queue (at-least-once: the server may have acted on
    // them); the rest reject.
    const inflight = [...this._pending.values()].filter((p) => p.sent).sort((a, b) => a.msg.id - b.msg.id);
    const requeue = [];
    for (const p of inflight) {
      if (this.options.resendUnacked && QUEUEABLE.has(p.msg.type) && !p.internal) {
        p.sent = false;
        clearTimeout(p.timer); // the reply timeout starts again when it is resent
        requeue.push(p);
      } else {
        this._settle(p, new EdgewsError("disconnected", "the connection closed before the reply"));
      }
    }
    this._queue = [...requeue, ...this._queue];

    let hint = this._drainDelayMs;
    const parsed = parseReason(reason);
    if (parsed && Number.isFinite(parsed.reconnect_after_ms)) hint = parsed.reconnect_after_ms;
    this._drainDelayMs = null;

    const fatal =
      (code === CLOSE_UNAUTHORIZED || code === CLOSE_TOKEN_EXPIRED) && typeof this.options.token !== "function";
    if (this._closedByUser || fatal) {
      this._failAll(fatal ? "unauthorized" : "closed", `closed with ${code} ${reason}`);
      this._rejectConnectWaiters(new EdgewsError(fatal ? "unauthorized" : "closed", `closed with ${code} ${reason}`));
      this._setState(State.CLOSED);
      this._emit("close", { code, reason, reconnecting: false, byClient: false, wasOpen });
      return;
    }
    const delay = this._scheduleReconnect(hint, code === CLOSE_RATE_LIMIT);
    this._emit("close", { code, reason, reconnecting: true, delayMs: delay, byClient: false, wasOpen });
  }

  /** Schedules the next attempt; returns its delay in ms. */
  _scheduleReconnect(hintMs = null, slow = false) {
    this._setState(State.RECONNECTING);
    const o = this.options;
    let delay;
    if (hintMs != null && hintMs >= 0) {
      // The server asked for this much; spread the herd over half as much again.
      delay = hintMs + Math.random() * hintMs * 0.5;
    } else {
      const attempt = slow ? Math.max(this._attempt, 4) : this._attempt;
      const base = Math.min(o.maxDelayMs, o.initialDelayMs * Math.pow(o.factor, attempt));
      delay = base * (1 - o.jitter * Math.random());
    }
    this._attempt += 1;
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = setTimeout(() => this._open(), delay);
    return Math.round(delay);
  }

  _reconnectNow() {
    clearTimeout(this._timers.reconnect);
    this._open();
  }

  _clearTimers() {
    for (const k of Object.keys(this._timers)) {
      clearTimeout(this._timers[k]);
      this._timers[k] = null;
    }
  }

  _rejectConnectWaiters(err) {
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  // ------------------------------------------------------------ incoming

  _onFrame(data) {
    if (typeof data !== "string") return; // v1 is text frames only
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this._emit("error", new EdgewsError("bad_json", "the server sent invalid JSON"));
      return;
    }
    if (!msg || typeof msg !== "object") return;
    this._onReceive();
    switch (msg.type) {
      case "welcome":
        return this._onWelcome(msg);
      case "ack":
      case "error":
      case "pong":
        if (msg.id != null && this._pending.has(msg.id)) {
          const p = this._pending.get(msg.id);
          return this._settle(p, msg.type === "error" ? new EdgewsError(msg.code, msg.message, msg) : null, msg);
        }
        if (msg.type === "error") this._emit("error", new EdgewsError(msg.code, msg.message, msg));
        return;
      case "message":
        this._noteOffset(msg);
        break;
      case "drain":
        if (Number.isFinite(msg.reconnect_after_ms)) this._drainDelayMs = msg.reconnect_after_ms;
        break;
    }
    this._emit("event", msg);
    if (msg.type) this._emit(msg.type, msg);
  }

  _noteOffset(msg) {
    const room = this._rooms.get(msg.room);
    if (room && Number.isFinite(msg.offset)) {
      room.offset = msg.offset;
      if (msg.epoch != null) room.epoch = msg.epoch;
    }
  }

  // The join ack's position (`epoch`, `offset`): where this client stands
  // before any message arrives, so the next rejoin can ask for what it missed.
  _notePosition(room, ack) {
    const info = this._rooms.get(room);
    if (!info || !ack || !Number.isFinite(ack.offset) || ack.epoch == null) return;
    if (info.epoch !== ack.epoch || info.offset == null || ack.offset > info.offset) {
      info.epoch = ack.epoch;
      info.offset = ack.offset;
    }
  }

  async _onWelcome(msg) {
    clearTimeout(this._timers.connect);
    this._welcomed = true;
    const reconnected = this.welcome != null;
    this.welcome = msg;
    this._attempt = 0;
    this._scheduleRefresh(msg);
    // Rejoin first, so that queued messages to a room find us in it.
    if (reconnected || this._rooms.size) await this._rejoin();
    if (this._presence && this._presence !== "online") {
      this._request({ type: "presence", status: this._presence }, { internal: true }).catch(() => {});
    }
    if (!this._ws || !this._welcomed) return; // lost again while rejoining
    this._setState(State.OPEN);
    this._flushQueue();
    this._emit("welcome", msg);
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) w.resolve(msg);
  }

  async _rejoin() {
    const rooms = [...this._rooms.entries()];
    await Promise.all(
      rooms.map(async ([room, info]) => {
        const req = { type: "join", room };
        if (info.password != null) req.password = info.password;
        if (info.offset != null) req.since = { epoch: info.epoch ?? null, offset: info.offset };
        try {
          const ack = await this._request(req, { internal: true });
          // Recovered: the missed messages follow and move the offset on.
          if (ack.recovered !== true) this._notePosition(room, ack);
          this._emit("rejoin", { room, recovered: ack.recovered === true, reason: ack.reason ?? null, ack });
        } catch (err) {
          // The server refused (e.g. `forbidden`, `room_full`): we are out of
          // the room. A lost connection is not a refusal; the next welcome retries.
          if (err.reply) this._rooms.delete(room);
          this._emit("rejoin", { room, recovered: false, reason: err.code, error: err });
        }
      }),
    );
  }

  // ------------------------------------------------------------ requests

  /**
   * Sends any request and resolves with its `ack` (rejects with an
   * {@link EdgewsError}). `fields` must not contain `type` or `id`.
   */
  request(type, fields = {}) {
    return this._request({ ...fields, type });
  }

  _request(msg, { internal = false } = {}) {
    return new Promise((resolve, reject) => {
      msg.id = this._nextId++;
      const p = { msg, resolve, reject, timer: null, sent: false, internal };
      this._pending.set(msg.id, p);
      // Internal requests (rejoin) go out before the state is OPEN.
      if (internal ? this._ws && this._welcomed : this.state === State.OPEN) {
        this._transmit(p);
      } else if (this.state === State.CLOSED || this.state === State.IDLE) {
        this._settle(p, new EdgewsError("closed", "not connected: call connect() first"));
      } else if (!QUEUEABLE.has(msg.type)) {
        this._settle(p, new EdgewsError("disconnected", `not connected; '${msg.type}' is not queued`));
      } else if (this._queue.length >= this.options.maxQueue) {
        this._settle(p, new EdgewsError("queue_full", `more than ${this.options.maxQueue} requests queued`));
      } else {
        this._queue.push(p);
      }
    });
  }

  _transmit(p) {
    p.sent = true;
    clearTimeout(p.timer);
    p.timer = setTimeout(
      () => this._settle(p, new EdgewsError("timeout", `no reply in ${this.options.requestTimeoutMs} ms`)),
      this.options.requestTimeoutMs,
    );
    this._ws.send(JSON.stringify(p.msg));
  }

  _flushQueue() {
    const queue = this._queue;
    this._queue = [];
    for (const p of queue) if (this._pending.has(p.msg.id)) this._transmit(p);
  }

  _settle(p, err, reply) {
    if (!this._pending.delete(p.msg.id)) return;
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(reply);
  }

  _failAll(code, message) {
    for (const p of [...this._pending.values()]) this._settle(p, new EdgewsError(code, message));
    this._queue = [];
  }

  /** Sends a message without an id (no reply expected); dropped when not open. */
  _fire(msg) {
    if (this.state !== State.OPEN || !this._ws) return false;
    this._ws.send(JSON.stringify(msg));
    return true;
  }

  /**
   * Joins `room`; resolves with the ack (`{room, members, epoch, offset}`). The client
   * rejoins it after every reconnect until {@link leave}.
   */
  async join(room, { password } = {}) {
    const req = { type: "join", room };
    if (password != null) req.password = password;
    const ack = await this._request(req);
    if (!this._rooms.has(room)) this._rooms.set(room, { password: password ?? null, epoch: null, offset: null });
    this._notePosition(room, ack);
    return ack;
  }

  /**
   * Leaves `room`; it is no longer rejoined on reconnect. While
   * disconnected this settles at once (the server dropped the membership
   * with the connection) and nothing is sent.
   */
  leave(room) {
    const known = this._rooms.delete(room);
    if (known && this.state === State.RECONNECTING) {
      return Promise.resolve({ type: "ack", id: null, room, local: true });
    }
    return this._request({ type: "leave", room });
  }

  /** The rooms this client is in (and rejoins after a reconnect). */
  rooms() {
    return [...this._rooms.keys()];
  }

  /** Publishes `data` (any JSON) to `room`; resolves when the server acked it. */
  send(room, data, { excludeSelf = false } = {}) {
    const req = { type: "message", room, data };
    if (excludeSelf) req.exclude_self = true;
    return this._request(req);
  }

  /** Sends `data` to every connection of user `to`. Rejects with `user_offline` if it has none. */
  sendPrivate(to, data) {
    return this._request({ type: "private", to, data });
  }

  /** Sets this user's status: `online`, `away`, `busy` or `offline` (appear offline). Kept across reconnects. */
  setPresence(status) {
    this._presence = status;
    return this._request({ type: "presence", status });
  }

  /** One page of a room's members: `{room, count, members:[{id,name,status}], next}`. */
  who(room, { cursor, limit } = {}) {
    const req = { type: "who", room };
    if (cursor != null) req.cursor = cursor;
    if (limit != null) req.limit = limit;
    return this._request(req);
  }

  /** Tells the room this user is typing. Fire and forget: returns false when not connected. */
  typing(room) {
    return this._fire({ type: "typing", room });
  }

  /** Round trip to the server; resolves with the `pong` reply (`{type, id, ts}`). */
  ping() {
    return this._request({ type: "ping" });
  }

  /** Swaps in a new token for the same user (`refresh`). */
  async refresh(token) {
    const ack = await this._request({ type: "refresh", token });
    this._token = token;
    return ack;
  }

  // ------------------------------------------------------------ liveness

  // Browsers answer server pings but never show them to JavaScript, so a
  // half-open connection (laptop lid, NAT timeout) is only found by asking.
  // Each frame only records the time; one timer per interval does the rest.
  _onReceive() {
    this._lastRx = Date.now();
    if (this._timers.pingTimeout) {
      clearTimeout(this._timers.pingTimeout);
      this._timers.pingTimeout = null;
    }
    if (!this._timers.ping && this.options.pingIntervalMs) this._armPing(this.options.pingIntervalMs);
  }

  _armPing(wait) {
    const o = this.options;
    this._timers.ping = setTimeout(() => {
      this._timers.ping = null;
      if (!this._ws || !this._welcomed) return;
      const quiet = Date.now() - this._lastRx;
      if (quiet < o.pingIntervalMs) return this._armPing(o.pingIntervalMs - quiet);
      this._ws.send(JSON.stringify({ type: "ping" }));
      this._timers.pingTimeout = setTimeout(() => {
        const ws = this._ws;
        if (!ws) return;
        this._detach(ws);
        this._ws = null;
        ws.close();
        this._onDisconnect(1006, "no reply to ping");
      }, o.pingTimeoutMs);
    }, wait);
  }

  _scheduleRefresh(welcome) {
    clearTimeout(this._timers.refresh);
    if (typeof this.options.token !== "function" || !Number.isFinite(welcome.expires_at)) return;
    const now = Number.isFinite(welcome.server_time) ? welcome.server_time : Date.now();
    const wait = Math.max(1000, welcome.expires_at - now - this.options.refreshBeforeMs);
    this._timers.refresh = setTimeout(async () => {
      try {
        const ack = await this.refresh(await this.options.token());
        // The ack carries the new expiry when the server says it.
        this._scheduleRefresh({ expires_at: ack.expires_at, server_time: ack.server_time });
      } catch (err) {
        this._emit("error", err instanceof EdgewsError ? err : new EdgewsError("token", String(err)));
      }
    }, wait);
  }
}

/** A close reason that is a JSON object, or null. */
function parseReason(reason) {
  if (!reason || reason[0] !== "{") return null;
  try {
    const v = JSON.parse(reason);
    return v && typeof v === "object" ? v : null;
  } catch {
    return null;
  }
}
