'use strict';
// uWebSockets.js echo + pub/sub peer for edgews benchmarks.
//
// Protocol (text messages only; binary messages are always echoed):
//   sub:<room>            subscribe this connection to <room>   (ws.subscribe)
//   unsub:<room>          unsubscribe                            (ws.unsubscribe)
//   pub:<room>:<payload>  send <payload> as text to every member (app.publish,
//                         which also reaches the sender if it is subscribed;
//                         ws.publish would skip the sender)
//   anything else         echoed back unchanged                  (ws.send)
//
// Usage:
//   node echo.js --listen 127.0.0.1:9001      (also: node echo.js 9001, or PORT=9001 node echo.js)
//   --threads is accepted for parity with the Rust peers but must be 1
//   (a uWS app runs on the single Node.js event-loop thread).

const uWS = require('uwebsockets');

function usage(msg) {
  if (msg) console.error(`echo.js: ${msg}`);
  console.error('usage: node echo.js [--listen 127.0.0.1:PORT | PORT] [--threads 1]');
  process.exit(2);
}

let host = '127.0.0.1';
let port = process.env.PORT !== undefined ? Number(process.env.PORT) : 9001;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  let a = argv[i];
  let v;
  const eq = a.indexOf('=');
  if (a.startsWith('--') && eq !== -1) { v = a.slice(eq + 1); a = a.slice(0, eq); }
  const val = () => (v !== undefined ? v : (i + 1 < argv.length ? argv[++i] : usage(`missing value for ${a}`)));
  if (a === '--listen' || a === '-l') {
    const s = val();
    const c = s.lastIndexOf(':');
    if (c === -1) usage(`bad --listen ${s}`);
    host = s.slice(0, c).replace(/^\[|\]$/g, '');
    port = Number(s.slice(c + 1));
  } else if (a === '--threads' || a === '-t') {
    if (Number(val()) !== 1) usage('uWS peer is single-threaded: --threads must be 1');
  } else if (a === '--port' || a === '-p') {
    port = Number(val());
  } else if (a === '--help' || a === '-h') {
    usage();
  } else if (/^\d+$/.test(a)) {
    port = Number(a);
  } else {
    usage(`unknown argument ${a}`);
  }
}
if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`bad port ${port}`);

const COLON = 0x3a;
let dropped = 0;

const app = uWS.App();

app.ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  idleTimeout: 0, // disabled
  maxLifetime: 0, // disabled
  sendPingsAutomatically: false,
  // uWS drops sends/publishes once a socket has this much unsent data; the tokio
  // peers never drop (unbounded queues), so make this large. Drops are counted.
  maxBackpressure: 256 * 1024 * 1024,
  closeOnBackpressureLimit: false,

  message: (ws, message, isBinary) => {
    if (!isBinary && message.byteLength >= 4) {
      const u8 = new Uint8Array(message);
      const c0 = u8[0];
      if (c0 === 0x70 /* p */ && u8[1] === 0x75 && u8[2] === 0x62 && u8[3] === COLON) {
        // pub:<room>:<payload>  (without a second ':' it is echoed)
        const sep = u8.indexOf(COLON, 4);
        if (sep !== -1) {
          app.publish(u8.subarray(4, sep), u8.subarray(sep + 1), false, false);
          return;
        }
      } else if (c0 === 0x73 /* s */ && u8[1] === 0x75 && u8[2] === 0x62 && u8[3] === COLON) {
        ws.subscribe(u8.subarray(4));
        return;
      } else if (c0 === 0x75 /* u */ && message.byteLength >= 6 && u8[1] === 0x6e && u8[2] === 0x73 &&
                 u8[3] === 0x75 && u8[4] === 0x62 && u8[5] === COLON) {
        ws.unsubscribe(u8.subarray(6));
        return;
      }
    }
    ws.send(message, isBinary, false);
  },

  dropped: () => {
    if (dropped++ === 0) console.error('uws peer: a message was dropped due to backpressure (maxBackpressure)');
  },
  // Pings are answered and closes acknowledged by uWS itself; subscriptions are
  // removed automatically on close.
});

app.any('/*', (res) => {
  res.writeStatus('426 Upgrade Required').end('WebSocket only');
});

let listenSocket = null;
app.listen(host, port, (token) => {
  if (!token) {
    console.error(`uws peer: failed to listen on ${host}:${port}`);
    process.exit(1);
  }
  listenSocket = token;
  console.error(`peer-uws (uwebsockets ${require('uwebsockets/package.json').version}, node ${process.version}) ` +
    `listening on ${host}:${uWS.us_socket_local_port(token)} threads=1`);
});

function shutdown() {
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  if (dropped) console.error(`uws peer: ${dropped} messages dropped due to backpressure`);
  process.exit(0);
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
