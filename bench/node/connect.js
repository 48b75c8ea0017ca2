// A connect-rate client in Node.js: opens connections at a rate, each with its own HS256 token,
// waits for the hello push, subscribes, and counts it done at the subscribe's reply.
//
// Why: the Python load tester spends about 350 µs of its own CPU per connect (four processes on
// one core reach 2,500-3,000 connects/s), and Node's `ws` client about 250 µs, so neither can
// show whether a server takes 5,000/s on a two-core machine. This client speaks the handshake
// and the few frames it needs over raw sockets (one fixed Sec-WebSocket-Key, a fixed mask:
// enough for a load generator talking to a server directly), at a fraction of that; it reports
// its own CPU. The protocol steps are the Python tester's `hold --subscribe`.
//
//     node bench/node/connect.js --url ws://127.0.0.1:8000/ws --connections 10000 --rate 8000 \
//       --token-secret S [--channels 100] [--prefix bench:] [--sources 127.0.0.2-127.0.0.9]
//
// Prints one JSON line: {"asked", "done", "failed", "seconds", "connects_per_s", "cpu_s"}.

"use strict";

const crypto = require("node:crypto");
const net = require("node:net");

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const url = option("url", "ws://127.0.0.1:8000/ws");
const count = Number(option("connections", "10000"));
const rate = Number(option("rate", "8000"));
const channels = Number(option("channels", "100"));
const prefix = option("prefix", "bench:");
const secret = option("token-secret", null);
const pendingMax = Number(option("pending", "1024"));
const timeoutMs = Number(option("timeout", "30")) * 1000;

// 127.0.0.2-127.0.0.9: source addresses, so 10,000s of connects do not exhaust one address's
// ephemeral ports.
function sources(spec) {
  if (!spec) return [undefined];
  const [first, last] = spec.split("-");
  const base = first.split(".").slice(0, 3).join(".");
  const from = Number(first.split(".")[3]);
  const to = last ? Number(last.split(".").pop()) : from;
  const out = [];
  for (let i = from; i <= to; i++) out.push(`${base}.${i}`);
  return out;
}
const addresses = sources(option("sources", null));

function b64url(data) {
  return Buffer.from(data).toString("base64url");
}

function token(sub) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }));
  const sig = crypto.createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

const open = [];
let done = 0;
let failed = 0;
let pending = 0;
let next = 0;
const cpu0 = process.cpuUsage();
const t0 = performance.now();

function finish() {
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(
    JSON.stringify({
      asked: count,
      done,
      failed,
      seconds: Number(seconds.toFixed(3)),
      connects_per_s: Number((done / seconds).toFixed(1)),
      cpu_s: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)),
    }) + "\n",
  );
  for (const sock of open) sock.destroy();
  process.exit(failed ? 1 : 0);
}

function settled(ok) {
  pending--;
  if (ok) done++;
  else failed++;
  if (done + failed === count) finish();
  else launch();
}

const target = new URL(url);
const KEY = "dGhlIHNhbXBsZSBub25jZQ=="; // RFC 6455's sample nonce
const MASK = Buffer.from([0x5a, 0x3c, 0x96, 0xe1]);

function request(n) {
  const path = target.pathname + (secret ? `?token=${token(`bench-${n}`)}` : "");
  return (
    `GET ${path} HTTP/1.1\r\nHost: ${target.host}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  );
}

// Tokens and requests are made before the clock starts, as the Python tester's are.
const requests = [];
for (let n = 0; n < count; n++) requests.push(request(n));

// One masked text frame (payloads here are under 126 bytes).
function frame(text) {
  const payload = Buffer.from(text);
  const out = Buffer.allocUnsafe(6 + payload.length);
  out[0] = 0x81;
  out[1] = 0x80 | payload.length;
  MASK.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i] ^ MASK[i & 3];
  return out;
}

// The server's unmasked frame in `buf` at `at`: [opcode, text, next offset], or null if it is
// incomplete.
function readFrame(buf, at) {
  if (buf.length < at + 2) return null;
  let len = buf[at + 1] & 0x7f;
  let start = at + 2;
  if (len === 126) {
    if (buf.length < at + 4) return null;
    len = buf.readUInt16BE(at + 2);
    start = at + 4;
  } else if (len === 127) {
    if (buf.length < at + 10) return null;
    len = Number(buf.readBigUInt64BE(at + 2));
    start = at + 10;
  }
  if (buf.length < start + len) return null;
  return [buf[at] & 0x0f, buf.toString("utf8", start, start + len), start + len];
}

function connectOne(n) {
  pending++;
  const sock = net.connect({
    host: target.hostname,
    port: Number(target.port),
    localAddress: addresses[n % addresses.length],
  });
  sock.setNoDelay(true);
  let buf = Buffer.alloc(0);
  let at = -1; // where frames start, once the response head is read
  let stage = "hello";
  let over = false;
  const end = (ok) => {
    if (over) return;
    over = true;
    clearTimeout(timer);
    settled(ok);
  };
  const timer = setTimeout(() => end(false), timeoutMs);
  sock.on("connect", () => sock.write(requests[n]));
  sock.on("data", (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    if (at < 0) {
      const head = buf.indexOf("\r\n\r\n");
      if (head < 0) return;
      if (buf.toString("latin1", 0, 12) !== "HTTP/1.1 101") return end(false);
      at = head + 4;
    }
    for (let f = readFrame(buf, at); f !== null; f = readFrame(buf, at)) {
      const [opcode, text, nextAt] = f;
      at = nextAt;
      if (opcode === 8) return end(false); // closed by the server
      if (opcode !== 1) continue;
      const msg = JSON.parse(text);
      if (stage === "hello" && msg.push === "hello") {
        stage = "subscribe";
        sock.write(frame(JSON.stringify({ id: 1, op: "subscribe", channel: `${prefix}c${n % channels}` })));
      } else if (stage === "subscribe" && msg.id === 1) {
        stage = "live";
        end(msg.ok === true);
      }
    }
  });
  sock.on("error", () => end(false));
  sock.on("close", () => end(false));
  open.push(sock);
}

// Paced at `rate` from t0, at most `pendingMax` connects in flight: a millisecond timer, and
// every connect that settles frees its place at once.
function launch() {
  const due = Math.min(count, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
  while (next < due && pending < pendingMax) connectOne(next++);
  if (next >= count) clearInterval(pacer);
}

const pacer = setInterval(launch, 1);
launch();
