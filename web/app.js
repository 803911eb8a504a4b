// The demo chat page: everything it does goes through edgews.js, so it
// doubles as an example of the client library. No build step, no framework.
import { EdgewsClient, State } from "/edgews.js";

const $ = (id) => document.getElementById(id);
const TYPING_SHOW_MS = 3000;
const TYPING_SEND_EVERY_MS = 2000;

let client = null;
let me = null; // {id, name}
let current = null; // key of the open conversation
let nextCid = 1;
let lastTypingSent = 0;
// key -> conversation. Rooms are "#name", private conversations "@userid".
const convs = new Map();
// key -> Map(user id -> timeout), who is typing where.
const typers = new Map();

// ------------------------------------------------------------------ login

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  const name = $("login-name").value.trim();
  const pasted = $("login-token").value.trim();
  let token;
  if (pasted) {
    token = pasted;
  } else {
    const sub = name.toLowerCase().replace(/[^a-z0-9_.-]+/g, "-").replace(/^-+|-+$/g, "") || "guest";
    // A function, so every reconnect (and refresh) gets a fresh dev token.
    token = () => devToken(sub, name);
    try {
      await token(); // fail here, visibly, rather than in a reconnect loop
    } catch (err) {
      $("login-error").textContent = String(err.message ?? err);
      return;
    }
  }
  start(token);
});

async function devToken(sub, name) {
  const res = await fetch(`/dev/token?sub=${encodeURIComponent(sub)}&name=${encodeURIComponent(name)}`, {
    cache: "no-store",
  });
  if (!res.ok) {
    throw new Error(
      res.status === 404
        ? "This server is not in dev mode: paste a token instead."
        : `Could not get a dev token (HTTP ${res.status}).`,
    );
  }
  return (await res.json()).token;
}

function start(token) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  client = new EdgewsClient(`${scheme}://${location.host}/ws`, { token });
  window.edgewsClient = client; // for the console (and the browser test)

  client.on("state", renderState);
  client.on("welcome", (w) => {
    me = w.user;
    $("me").textContent = me.name || me.id;
    $("me").title = `user id ${me.id}, connection ${w.conn_id}`;
  });
  client.on("close", (c) => {
    if (c.reconnecting && c.wasOpen) {
      systemLine(current, `Connection lost (${c.code}); reconnecting in ${(c.delayMs / 1000).toFixed(1)} s…`);
    } else if (!c.reconnecting && !c.byClient) {
      systemLine(current, `Disconnected for good (close ${c.code}${c.reason ? `: ${c.reason}` : ""}).`);
    }
  });
  client.on("rejoin", ({ room, recovered, reason }) => {
    const note = recovered
      ? "Reconnected and rejoined; missed messages recovered."
      : `Reconnected and rejoined; messages others sent while you were away were not recovered${reason ? ` (${reason})` : ""}.`;
    systemLine(`#${room}`, note);
    refreshMembers(room);
  });
  client.on("message", onRoomMessage);
  client.on("private", onPrivate);
  client.on("user_joined", (e) => {
    const c = conv(`#${e.room}`);
    c.members.set(e.user.id, { ...e.user, status: "online" });
    c.count = e.members;
    systemLine(c.key, `${e.user.name || e.user.id} joined.`);
    if (c.key === current) renderMembers();
    renderLists();
  });
  client.on("user_left", (e) => {
    const c = conv(`#${e.room}`);
    c.members.delete(e.user.id);
    c.count = e.members;
    systemLine(c.key, `${e.user.name || e.user.id} left.`);
    if (c.key === current) renderMembers();
    renderLists();
  });
  client.on("presence", (e) => {
    const c = conv(`#${e.room}`);
    const m = c.members.get(e.user.id);
    if (m) m.status = e.status;
    else if (e.status !== "offline") c.members.set(e.user.id, { ...e.user, status: e.status });
    if (c.key === current) renderMembers();
  });
  client.on("typing", (e) => {
    if (me && e.user.id === me.id) return;
    showTyping(`#${e.room}`, e.user);
  });
  client.on("error", (err) => {
    // A failed token fetch while reconnecting is one more failed attempt; the badge says so.
    if (err.code === "token" && client.state === State.RECONNECTING) return;
    systemLine(current, `Error: ${err.message}`);
  });

  $("login").hidden = true;
  $("chat").hidden = false;
  client.connect().then(() => {
    if (!convs.size) joinRoom("lobby");
  });
}

// ------------------------------------------------------------------ rooms

$("join-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const room = $("join-room").value.trim().replace(/^#/, "");
  if (!room) return;
  $("join-room").value = "";
  joinRoom(room);
});

async function joinRoom(room) {
  const c = conv(`#${room}`);
  open(c.key);
  try {
    const ack = await client.join(room);
    c.joined = true;
    c.count = ack.members;
    renderLists();
    await refreshMembers(room);
  } catch (err) {
    systemLine(c.key, `Could not join: ${err.message}`);
  }
}

async function refreshMembers(room) {
  const c = conv(`#${room}`);
  try {
    const page = await client.who(room, { limit: 200 });
    c.count = page.count;
    c.members = new Map(page.members.map((m) => [m.id, m]));
    if (c.key === current) renderMembers();
    renderLists();
  } catch (err) {
    systemLine(c.key, `Could not list members: ${err.message}`);
  }
}

$("leave").addEventListener("click", async () => {
  const c = convs.get(current);
  if (!c) return;
  convs.delete(c.key);
  if (c.kind === "room") client.leave(c.id).catch(() => {});
  current = null;
  open(convs.keys().next().value ?? null);
});

$("presence").addEventListener("change", (ev) => {
  client.setPresence(ev.target.value).catch((err) => systemLine(current, `Status not set: ${err.message}`));
});

$("drop").addEventListener("click", () => client.simulateDisconnect());

// --------------------------------------------------------------- messages

$("send-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("send-text");
  const text = input.value.trim();
  const c = convs.get(current);
  if (!text || !c) return;
  input.value = "";
  lastTypingSent = 0; // receivers clear the indicator on a message: the next keystroke counts anew
  // `cid` lets us match the server's echo of our own room message with the
  // line shown as pending while it was queued or in flight.
  const cid = `${Date.now().toString(36)}-${nextCid++}`;
  const line = { from: me, text, ts: Date.now(), cid, pending: true, mine: true };
  c.messages.push(line);
  renderMessages();
  try {
    if (c.kind === "room") {
      await client.send(c.id, { text, cid });
    } else {
      const ack = await client.sendPrivate(c.id, { text, cid });
      line.ts = ack.ts ?? line.ts;
    }
    line.pending = false;
  } catch (err) {
    line.pending = false;
    line.failed = err.code === "user_offline" ? "not delivered: offline" : `not sent: ${err.code}`;
  }
  if (c.key === current) renderMessages();
});

$("send-text").addEventListener("input", () => {
  const c = convs.get(current);
  if (c?.kind !== "room") return;
  const now = Date.now();
  if (now - lastTypingSent < TYPING_SEND_EVERY_MS) return;
  lastTypingSent = now;
  client.typing(c.id);
});

function onRoomMessage(e) {
  const c = conv(`#${e.room}`);
  const data = e.data && typeof e.data === "object" ? e.data : { text: String(e.data) };
  if (me && e.from.id === me.id && data.cid) {
    const mine = c.messages.find((l) => l.cid === data.cid);
    if (mine) {
      mine.pending = false;
      mine.ts = e.ts;
      if (c.key === current) renderMessages();
      return;
    }
  }
  clearTyping(c.key, e.from.id);
  c.messages.push({ from: e.from, text: String(data.text ?? JSON.stringify(e.data)), ts: e.ts });
  delivered(c);
}

function onPrivate(e) {
  const c = conv(`@${e.from.id}`, e.from.name);
  const data = e.data && typeof e.data === "object" ? e.data : { text: String(e.data) };
  c.messages.push({ from: e.from, text: String(data.text ?? JSON.stringify(e.data)), ts: e.ts });
  delivered(c);
}

function delivered(c) {
  if (c.key === current) renderMessages();
  else c.unread += 1;
  if (!current) open(c.key);
  renderLists();
}

function systemLine(key, text) {
  const c = key && convs.get(key);
  if (!c) return;
  c.messages.push({ system: true, text, ts: Date.now() });
  if (c.key === current) renderMessages();
}

// ----------------------------------------------------------------- typing

function showTyping(key, user) {
  let map = typers.get(key);
  if (!map) typers.set(key, (map = new Map()));
  clearTimeout(map.get(user.id)?.timer);
  map.set(user.id, { user, timer: setTimeout(() => clearTyping(key, user.id), TYPING_SHOW_MS) });
  if (key === current) renderTyping();
}

function clearTyping(key, userId) {
  const map = typers.get(key);
  if (!map?.has(userId)) return;
  clearTimeout(map.get(userId).timer);
  map.delete(userId);
  if (key === current) renderTyping();
}

// ------------------------------------------------------------------- view

function conv(key, title) {
  let c = convs.get(key);
  if (!c) {
    const kind = key[0] === "#" ? "room" : "dm";
    c = { key, kind, id: key.slice(1), title: title ?? key, messages: [], members: new Map(), count: 0, unread: 0 };
    convs.set(key, c);
    renderLists();
  }
  return c;
}

function open(key) {
  current = key;
  const c = key && convs.get(key);
  if (c) c.unread = 0;
  $("conv-title").textContent = c ? c.title : "Join a room to start";
  $("leave").hidden = !c;
  $("leave").textContent = c?.kind === "dm" ? "close" : "leave";
  $("send-text").disabled = $("send-button").disabled = !c;
  $("send-text").placeholder = c ? `Message ${c.title}` : "Message";
  renderLists();
  renderMessages();
  renderMembers();
  renderTyping();
}

function renderState(state) {
  const el = $("conn-state");
  el.dataset.state = state;
  el.textContent = state === State.OPEN ? "connected" : state;
}

function renderLists() {
  const rooms = $("rooms");
  const dms = $("dms");
  rooms.replaceChildren();
  dms.replaceChildren();
  for (const c of convs.values()) {
    const li = el("li", { className: c.key === current ? "active" : "" });
    const btn = el("button", { className: "item", type: "button" });
    btn.dataset.key = c.key;
    btn.append(el("span", { textContent: c.title }));
    if (c.kind === "room") btn.append(el("span", { className: "count", textContent: String(c.count || "") }));
    if (c.unread) btn.append(el("span", { className: "badge", textContent: String(c.unread) }));
    btn.addEventListener("click", () => open(c.key));
    li.append(btn);
    (c.kind === "room" ? rooms : dms).append(li);
  }
}

function renderMessages() {
  const list = $("messages");
  const c = current && convs.get(current);
  list.replaceChildren();
  if (!c) return;
  for (const m of c.messages) {
    if (m.system) {
      list.append(el("li", { className: "system", textContent: m.text }));
      continue;
    }
    const li = el("li", { className: `msg${m.mine ? " mine" : ""}${m.pending ? " pending" : ""}` });
    const head = el("div", { className: "meta" });
    head.append(el("span", { className: "from", textContent: m.from?.name || m.from?.id || "?" }));
    head.append(el("time", { textContent: new Date(m.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) }));
    if (m.pending) head.append(el("span", { className: "note", textContent: "sending…" }));
    if (m.failed) head.append(el("span", { className: "note failed", textContent: m.failed }));
    li.append(head, el("div", { className: "text", textContent: m.text }));
    list.append(li);
  }
  list.scrollTop = list.scrollHeight;
}

function renderMembers() {
  const list = $("member-list");
  const c = current && convs.get(current);
  list.replaceChildren();
  $("member-count").textContent = c?.kind === "room" ? String(c.count) : "";
  if (!c || c.kind !== "room") return;
  const members = [...c.members.values()].sort((a, b) => (a.name || a.id).localeCompare(b.name || b.id));
  for (const m of members) {
    const isMe = me && m.id === me.id;
    const btn = el("button", { className: "item", type: "button", disabled: isMe });
    btn.dataset.user = m.id;
    btn.append(el("span", { className: `dot ${m.status || "online"}`, title: m.status || "online" }));
    btn.append(el("span", { textContent: `${m.name || m.id}${isMe ? " (you)" : ""}` }));
    btn.append(el("span", { className: "status", textContent: m.status || "online" }));
    btn.addEventListener("click", () => open(conv(`@${m.id}`, m.name || m.id).key));
    const li = el("li");
    li.append(btn);
    list.append(li);
  }
  if (c.count > members.length) {
    list.append(el("li", { className: "more muted small", textContent: `and ${c.count - members.length} more` }));
  }
}

function renderTyping() {
  const map = current && typers.get(current);
  const names = map ? [...map.values()].map((t) => t.user.name || t.user.id) : [];
  $("typing").textContent = names.length === 0 ? "" : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
}

function el(tag, props = {}) {
  return Object.assign(document.createElement(tag), props);
}
