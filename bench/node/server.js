// The bare Node.js + ws fan-out server: the second baseline of every benchmark (bench/README.md).
//
// Why: Node with `ws` is what teams pick when they decide Python is too slow for this job, so
// each figure is also reported against it, measured in the same run on the same machine. It
// speaks the same protocol-v1 subset as bench/baseline_tornado.py: hello, ping, subscribe,
// unsubscribe, publish (per-channel offsets), POST /api/publish and GET /api/stats (RSS and CPU
// seconds, for the cost figures). One process, one `ws.send` per subscriber, no history, no
// presence, no rate limits. With --token-secret, a `token` query parameter must be an HS256 JWT
// signed with it (checked with node:crypto), as Switchboard checks its connection tokens.
//
//     node bench/node/server.js --port 8899 [--api-key KEY] [--token-secret S]

"use strict";

const crypto = require("node:crypto");
const http = require("node:http");
const { WebSocketServer } = require("ws");

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(option("port", "8899"));
const host = option("host", "127.0.0.1");
const apiKey = option("api-key", null);
const tokenSecret = option("token-secret", null);

const channels = new Map(); // name -> { subscribers: Set<ws>, offset, epoch }
let connections = 0;
let messagesIn = 0;
let messagesOut = 0;

function channel(name) {
  let ch = channels.get(name);
  if (ch === undefined) {
    ch = { subscribers: new Set(), offset: 0, epoch: crypto.randomBytes(4).toString("hex") };
    channels.set(name, ch);
  }
  return ch;
}

function publish(name, data, info) {
  const ch = channel(name);
  ch.offset += 1;
  const pub = { push: "pub", channel: name, offset: ch.offset, data };
  if (info !== null) pub.info = info;
  pub.ts = Date.now();
  const frame = JSON.stringify(pub);
  for (const sub of ch.subscribers) {
    sub.send(frame);
    messagesOut += 1;
  }
  return { offset: ch.offset, epoch: ch.epoch };
}

function b64url(buf) {
  return buf.toString("base64").replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

function validToken(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return false;
  const mac = b64url(crypto.createHmac("sha256", tokenSecret).update(`${parts[0]}.${parts[1]}`).digest());
  if (mac.length !== parts[2].length || !crypto.timingSafeEqual(Buffer.from(mac), Buffer.from(parts[2]))) {
    return false;
  }
  try {
    const header = JSON.parse(Buffer.from(parts[0], "base64url").toString());
    const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
    return header.alg === "HS256" && typeof claims.sub === "string" && claims.exp > Date.now() / 1000;
  } catch {
    return false;
  }
}

function reply(ws, id, result, error) {
  const msg = error ? { id, error: { code: error[0], message: error[1] } } : { id, ok: true, result };
  ws.send(JSON.stringify(msg));
}

const server = http.createServer((req, res) => {
  const answer = (status, body) => {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (apiKey && req.headers.authorization !== `apikey ${apiKey}`) {
    answer(401, { error: { code: "unauthorized", message: "bad api key" } });
    return;
  }
  if (req.method === "GET" && req.url === "/api/stats") {
    const cpu = process.cpuUsage();
    const rss = process.memoryUsage().rss;
    const proc = {
      pid: process.pid,
      rss_bytes: rss,
      connections,
      cpu_s: Math.round((cpu.user + cpu.system) / 1000) / 1000,
      messages_in: messagesIn,
      messages_out: messagesOut,
    };
    answer(200, { connections, rss_bytes: rss, channels: channels.size, processes: [proc] });
    return;
  }
  if (req.method === "POST" && req.url === "/api/publish") {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      try {
        const cmd = JSON.parse(body);
        if (typeof cmd.channel !== "string") throw new Error("channel");
        answer(200, publish(cmd.channel, cmd.data, null));
      } catch {
        answer(400, { error: { code: "bad_request", message: "need channel and data" } });
      }
    });
    return;
  }
  answer(404, { error: { code: "not_found", message: "no such path" } });
});

const wss = new WebSocketServer({
  server,
  path: "/ws",
  verifyClient: tokenSecret
    ? (info) => {
        const token = new URL(info.req.url, "http://x").searchParams.get("token");
        return token === null || validToken(token);
      }
    : undefined,
});

wss.on("connection", (ws) => {
  connections += 1;
  const client = crypto.randomBytes(8).toString("hex");
  const subs = new Set();
  ws.send(
    JSON.stringify({ push: "hello", client, user: null, node: `node-${process.pid}`, ping_interval: 25, version: 1 })
  );
  ws.on("message", (raw) => {
    messagesIn += 1;
    let cmd;
    try {
      cmd = JSON.parse(raw);
    } catch {
      reply(ws, undefined, null, ["bad_request", "not a command"]);
      return;
    }
    const { id, op } = cmd;
    if (op === "ping") {
      reply(ws, id, {});
    } else if (op === "subscribe" && typeof cmd.channel === "string") {
      const ch = channel(cmd.channel);
      ch.subscribers.add(ws);
      subs.add(cmd.channel);
      reply(ws, id, { offset: ch.offset, epoch: ch.epoch, recovered: false, missed: [] });
    } else if (op === "unsubscribe" && typeof cmd.channel === "string") {
      channel(cmd.channel).subscribers.delete(ws);
      subs.delete(cmd.channel);
      reply(ws, id, {});
    } else if (op === "publish" && typeof cmd.channel === "string") {
      reply(ws, id, publish(cmd.channel, cmd.data, { user: null, client }));
    } else {
      reply(ws, id, null, ["unknown_op", `unsupported op ${op}`]);
    }
  });
  ws.on("close", () => {
    connections -= 1;
    for (const name of subs) channel(name).subscribers.delete(ws);
  });
  ws.on("error", () => {});
});

server.listen({ port, host, backlog: 4096 }, () => {
  console.log(`baseline node listening on ${host}:${port}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => process.exit(0));
}
