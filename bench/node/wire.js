// The little of WebSocket and the protocol the Node benchmark clients need, over raw sockets.
//
// Why not `ws`: its client costs about 250 µs of CPU per connect here, more than the server it
// measures; this costs about half of that. One fixed Sec-WebSocket-Key and a fixed mask are
// enough for a load generator talking to a server directly (no proxy between).

"use strict";

const crypto = require("node:crypto");
const net = require("node:net");

const KEY = "dGhlIHNhbXBsZSBub25jZQ=="; // RFC 6455's sample nonce
const MASK = Buffer.from([0x5a, 0x3c, 0x96, 0xe1]);

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

// "127.0.5.2-127.0.5.9": source addresses, so 10,000s of connects do not exhaust one address's
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

function b64url(data) {
  return Buffer.from(data).toString("base64url");
}

// An HS256 connection token for user `sub`, valid for an hour.
function token(secret, sub) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }));
  const sig = crypto.createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

function upgradeRequest(target, query) {
  return (
    `GET ${target.pathname}${query} HTTP/1.1\r\nHost: ${target.host}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  );
}

// One masked frame: text, or a pong (opcode 10) echoing a ping's payload.
function frame(text, opcode = 1) {
  const payload = Buffer.from(text);
  const n = payload.length;
  const head = n < 126 ? 6 : 8;
  const out = Buffer.allocUnsafe(head + n);
  out[0] = 0x80 | opcode;
  if (n < 126) {
    out[1] = 0x80 | n;
  } else {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(n, 2);
  }
  MASK.copy(out, head - 4);
  for (let i = 0; i < n; i++) out[head + i] = payload[i] ^ MASK[i & 3];
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

// Open a WebSocket: `onMessage(msg, send)` gets each JSON text message, `onEnd()` is called once
// when the socket is refused, fails or closes. Returns the socket.
function open(target, request, localAddress, onMessage, onEnd) {
  const sock = net.connect({ host: target.hostname, port: Number(target.port), localAddress });
  sock.setNoDelay(true);
  let buf = Buffer.alloc(0);
  let at = -1; // where frames start, once the response head is read
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    sock.destroy();
    onEnd();
  };
  const send = (obj) => sock.write(frame(JSON.stringify(obj)));
  sock.on("connect", () => sock.write(request));
  sock.on("data", (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    if (at < 0) {
      const head = buf.indexOf("\r\n\r\n");
      if (head < 0) return;
      if (buf.toString("latin1", 0, 12) !== "HTTP/1.1 101") return end();
      at = head + 4;
    }
    for (let f = readFrame(buf, at); f !== null; f = readFrame(buf, at)) {
      const [opcode, text, next] = f;
      at = next;
      if (opcode === 8) return end(); // closed by the server
      if (opcode === 9) sock.write(frame(text, 10)); // the server's keep-alive ping
      if (opcode === 1) onMessage(JSON.parse(text), send);
    }
    if (at > 0) {
      buf = buf.subarray(at); // what is left: part of the next frame
      at = 0;
    }
  });
  sock.on("error", end);
  sock.on("close", end);
  return sock;
}

module.exports = { option, sources, token, upgradeRequest, open };
