// The demo page and edgews.js in a real browser (Debian's chromium, driven by
// playwright-core) against the real `edgews serve` binary. Run by run.sh,
// which builds the binary and passes:
//   SERVER_BIN   the edgews binary
//   WORK_DIR     an empty directory: the server's working directory (its dev
//                secret file lands there, so a restarted server accepts the
//                same tokens)
//   ARTIFACTS    where screenshots and the server log go
//
// What it checks, in order (every wait is bounded; the whole run has a
// deadline):
//  1. GET / serves the page and /edgews.js the library, with their types.
//  2. Alice and Bob (two browser contexts) log in with dev tokens; the
//     handshake selected `edgews.v1` and permessage-deflate (seen in the
//     browser's own handshake response, through the DevTools protocol).
//  3. Both land in `lobby` and see each other with a member count of 2.
//  4. Room messages both ways; Bob's typing indicator shows at Alice's;
//     Alice goes `away` and Bob's member list shows it.
//  5. Bob messages Alice privately; Alice gets the conversation.
//  6. The server is killed mid-conversation. While it is down, Alice sends
//     two room messages and a private one: the page queues them. The server
//     restarts; Bob reconnects and rejoins first (Alice's token fetch is held
//     back so the order is fixed, since a server without history cannot
//     replay to Bob what he was not there for); then Alice reconnects,
//     rejoins, and her queued messages are delivered: Bob sees each exactly
//     once and in order, the private one too, and both pages report the
//     rejoin with `recovered:false`; Alice's `away` status is restored.
//  7. Bob's "drop connection" button cuts his connection; the page
//     reconnects and a message sent right after arrives.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdirSync, createWriteStream } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BIN = need("SERVER_BIN");
const WORK_DIR = need("WORK_DIR");
const ARTIFACTS = need("ARTIFACTS");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const WAIT_MS = 15_000;
const DEADLINE_MS = 180_000;

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run tests/browser/run.sh)`);
  return v;
}

const deadline = setTimeout(() => {
  console.error(`FAIL: the browser test did not finish in ${DEADLINE_MS / 1000} s`);
  process.exit(1);
}, DEADLINE_MS);

mkdirSync(ARTIFACTS, { recursive: true });
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
let server = null;
let browser = null;
let step = "start";
const pageErrors = []; // uncaught exceptions in the pages: any one fails the test

function log(msg) {
  step = msg;
  console.log(`- ${msg}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startServer() {
  const out = createWriteStream(join(ARTIFACTS, "server.log"), { flags: "a" });
  const child = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`], {
    cwd: WORK_DIR,
    stdio: ["ignore", "pipe", "pipe"],
    env: serverEnv(),
  });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  child.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const until = Date.now() + WAIT_MS;
  for (;;) {
    try {
      const res = await fetch(`${base}/healthz`);
      if (res.ok) return child;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) throw new Error(`edgews serve exited with ${child.exitCode}; see server.log`);
    if (Date.now() > until) throw new Error("edgews serve did not answer /healthz in time");
    await sleep(100);
  }
}

// The server reads EDGEWS_* variables as configuration (an unknown one is an
// error): it gets none from this environment but its log level, so the
// test runs on defaults plus the flags above.
function serverEnv() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("EDGEWS_")));
  env.EDGEWS_LOG = process.env.EDGEWS_LOG ?? "info";
  return env;
}

async function stopServer(signal) {
  const child = server;
  server = null;
  if (!child || child.exitCode !== null) return;
  child.kill(signal);
  const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await child.exited;
  clearTimeout(killer);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

/** Logs a user in on a fresh browser context; records the page's WebSocket handshakes. */
async function login(name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await context.newPage();
  page.on("pageerror", (err) => {
    console.error(`[${name} page error] ${err.message}`);
    pageErrors.push(`${name}: ${err.message}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error") console.error(`[${name} console] ${m.text()}`);
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const handshakes = [];
  cdp.on("Network.webSocketWillSendHandshakeRequest", (e) => handshakes.push({ request: e.request.headers }));
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) => {
    const h = handshakes.at(-1);
    if (h) h.response = e.response;
  });
  // Lets the test hold this user's token fetches (and so its reconnects).
  let gate = null;
  await page.route("**/dev/token?*", async (route) => {
    if (gate) await gate.promise;
    await route.continue();
  });
  await page.goto(base + "/");
  await page.fill("#login-name", name);
  await page.click("#login-form button[type=submit]");
  await waitState(page, "open");
  return {
    name,
    context,
    page,
    handshakes,
    holdTokens() {
      let release;
      gate = { promise: new Promise((r) => (release = r)) };
      gate.release = release;
    },
    releaseTokens() {
      gate?.release();
      gate = null;
    },
  };
}

function waitState(page, state) {
  return page.waitForFunction((s) => document.getElementById("conn-state").dataset.state === s, state, {
    timeout: WAIT_MS,
  });
}

/** Texts of the chat lines (not system lines) in the open conversation. */
function lines(page) {
  return page.$$eval("#messages li.msg", (els) =>
    els.map((li) => ({
      from: li.querySelector(".from").textContent,
      text: li.querySelector(".text").textContent,
      pending: li.classList.contains("pending"),
    })),
  );
}

async function waitLine(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li.msg .text")].some((e) => e.textContent === t),
    text,
    { timeout: WAIT_MS },
  );
}

async function send(page, text) {
  await page.fill("#send-text", text);
  await page.click("#send-button");
}

async function openConv(page, key) {
  await page.click(`#rooms button[data-key="${key}"], #dms button[data-key="${key}"]`, { timeout: WAIT_MS });
}

function header(headers, name) {
  const key = Object.keys(headers ?? {}).find((k) => k.toLowerCase() === name);
  return key ? headers[key] : undefined;
}

try {
  server = await startServer();

  log("the page and the library are served with their types");
  for (const [path, type] of [
    ["/", "text/html"],
    ["/edgews.js", "text/javascript"],
    ["/app.js", "text/javascript"],
    ["/style.css", "text/css"],
    ["/edgews.d.ts", "text/plain"],
  ]) {
    const res = await fetch(base + path);
    check(res.ok, `GET ${path} is ${res.status}`);
    check((res.headers.get("content-type") ?? "").startsWith(type), `GET ${path} content-type ${res.headers.get("content-type")}`);
  }

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true, // playwright adds --headless and a fresh temporary --user-data-dir
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  console.log(`chromium ${browser.version()}`);

  log("Alice and Bob log in with dev tokens");
  const alice = await login("Alice");
  const bob = await login("Bob");

  log("the handshake selected edgews.v1 and permessage-deflate");
  for (const u of [alice, bob]) {
    const h = u.handshakes.at(-1);
    check(h?.response, `${u.name}: a handshake response was seen`);
    check(h.response.status === 101, `${u.name}: handshake status ${h.response.status}`);
    const offered = header(h.request, "sec-websocket-protocol") ?? "";
    check(/^edgews\.v1, token\.[\w-]+\.[\w-]+\.[\w-]+$/.test(offered), `${u.name}: offered subprotocols ${offered}`);
    check(header(h.response.headers, "sec-websocket-protocol") === "edgews.v1", `${u.name}: selected subprotocol`);
    const ext = header(h.response.headers, "sec-websocket-extensions") ?? "";
    check(ext.includes("permessage-deflate"), `${u.name}: server agreed to permessage-deflate (got "${ext}")`);
  }

  log("both are in lobby and see each other");
  for (const u of [alice, bob]) {
    await u.page.waitForFunction(
      () =>
        document.getElementById("member-count").textContent === "2" &&
        document.querySelectorAll("#member-list li").length === 2,
      null,
      { timeout: WAIT_MS },
    );
  }

  log("room messages both ways");
  await send(alice.page, "Hi Bob, this is the lobby.");
  await waitLine(bob.page, "Hi Bob, this is the lobby.");
  await send(bob.page, "Hello Alice!");
  await waitLine(alice.page, "Hello Alice!");

  log("Bob's typing shows at Alice's");
  await bob.page.fill("#send-text", "typing something");
  await alice.page.waitForFunction(() => document.getElementById("typing").textContent.includes("Bob is typing"), null, {
    timeout: WAIT_MS,
  });
  await bob.page.fill("#send-text", "");

  log("Alice goes away; Bob sees it");
  await alice.page.selectOption("#presence", "away");
  await bob.page.waitForFunction(
    () => document.querySelector('#member-list button[data-user="alice"] .status')?.textContent === "away",
    null,
    { timeout: WAIT_MS },
  );

  log("Bob messages Alice privately");
  await bob.page.click('#member-list button[data-user="alice"]');
  await send(bob.page, "Psst, a private word.");
  await alice.page.waitForSelector('#dms button[data-key="@bob"]', { timeout: WAIT_MS });
  await openConv(alice.page, "@bob");
  await waitLine(alice.page, "Psst, a private word.");
  await openConv(alice.page, "#lobby");
  await openConv(bob.page, "#lobby");

  log("the server is killed mid-conversation; Alice keeps writing");
  alice.holdTokens();
  await stopServer("SIGKILL");
  await waitState(alice.page, "reconnecting");
  await waitState(bob.page, "reconnecting");
  const queued = ["Sent while the server was down (1)", "Sent while the server was down (2)"];
  for (const t of queued) await send(alice.page, t);
  await openConv(alice.page, "@bob");
  await send(alice.page, "A private one, also while down.");
  await openConv(alice.page, "#lobby");
  const pending = (await lines(alice.page)).filter((l) => l.pending).map((l) => l.text);
  check(JSON.stringify(pending) === JSON.stringify(queued), `Alice's page shows the queued messages as pending: ${pending}`);

  log("the server restarts; Bob reconnects and rejoins first");
  server = await startServer();
  await waitState(bob.page, "open");
  await bob.page.waitForFunction(() => document.getElementById("member-count").textContent === "1", null, {
    timeout: WAIT_MS,
  });
  check((await alice.page.$eval("#conn-state", (e) => e.dataset.state)) !== "open", "Alice is still held back");

  log("Alice reconnects; her queued messages arrive once each, in order");
  alice.releaseTokens();
  await waitState(alice.page, "open");
  for (const t of queued) await waitLine(bob.page, t);
  await alice.page.waitForFunction(() => !document.querySelector("#messages li.pending"), null, { timeout: WAIT_MS });
  const bobSees = (await lines(bob.page)).map((l) => `${l.from}: ${l.text}`);
  const expected = [
    "Alice: Hi Bob, this is the lobby.",
    "Bob: Hello Alice!",
    `Alice: ${queued[0]}`,
    `Alice: ${queued[1]}`,
  ];
  check(JSON.stringify(bobSees) === JSON.stringify(expected), `Bob's lobby is exactly ${JSON.stringify(expected)}, got ${JSON.stringify(bobSees)}`);
  const aliceSees = (await lines(alice.page)).map((l) => `${l.from}: ${l.text}`);
  check(JSON.stringify(aliceSees) === JSON.stringify(expected), `Alice's lobby is exactly the same, got ${JSON.stringify(aliceSees)}`);
  await openConv(bob.page, "@alice");
  await waitLine(bob.page, "A private one, also while down.");
  const dm = (await lines(bob.page)).map((l) => `${l.from}: ${l.text}`);
  check(
    JSON.stringify(dm) === JSON.stringify(["Bob: Psst, a private word.", "Alice: A private one, also while down."]),
    `Bob's private conversation, got ${JSON.stringify(dm)}`,
  );
  await openConv(bob.page, "#lobby");
  for (const u of [alice, bob]) {
    const notes = await u.page.$$eval("#messages li.system", (els) => els.map((e) => e.textContent));
    check(notes.some((n) => n.startsWith("Reconnected and rejoined")), `${u.name}'s page reports the rejoin (recovered:false): ${notes}`);
    const h = u.handshakes.at(-1);
    check(header(h?.response?.headers, "sec-websocket-extensions")?.includes("permessage-deflate"), `${u.name}: deflate after reconnect`);
  }
  await bob.page.waitForFunction(() => document.getElementById("member-count").textContent === "2", null, {
    timeout: WAIT_MS,
  });
  log("Alice's status (away) came back with her");
  await bob.page.waitForFunction(
    () => document.querySelector('#member-list button[data-user="alice"] .status')?.textContent === "away",
    null,
    { timeout: WAIT_MS },
  );

  log("Bob's connection is cut; the page recovers");
  const before = bob.handshakes.length;
  await bob.page.click("#drop");
  await bob.page.waitForFunction(() => window.edgewsClient.state === "open", null, { timeout: WAIT_MS });
  for (const until = Date.now() + WAIT_MS; bob.handshakes.length === before && Date.now() < until; ) await sleep(50);
  check(bob.handshakes.length === before + 1, `Bob made one new handshake (${bob.handshakes.length - before})`);
  await send(bob.page, "Back after a cut connection.");
  await waitLine(alice.page, "Back after a cut connection.");

  log("screenshots");
  await bob.page.screenshot({ path: join(ARTIFACTS, "chat.png") });
  await bob.page.setViewportSize({ width: 390, height: 780 });
  await bob.page.screenshot({ path: join(ARTIFACTS, "chat-phone.png") });
  await alice.page.screenshot({ path: join(ARTIFACTS, "chat-alice.png") });

  check(pageErrors.length === 0, `no uncaught exception in the pages: ${pageErrors.join("; ")}`);
  console.log("PASS: browser chat test");
} catch (err) {
  console.error(`FAIL at "${step}": ${err.stack ?? err}`);
  process.exitCode = 1;
  // Whatever the pages showed when it failed.
  for (const [i, ctx] of (browser?.contexts() ?? []).entries()) {
    for (const p of ctx.pages()) await p.screenshot({ path: join(ARTIFACTS, `failure-${i}.png`) }).catch(() => {});
  }
} finally {
  await browser?.close().catch(() => {});
  await stopServer("SIGTERM");
  clearTimeout(deadline);
}
