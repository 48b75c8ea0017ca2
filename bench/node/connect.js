// A connect-rate client in Node.js: opens connections at a rate, each with its own HS256 token,
// waits for the hello push, subscribes, and counts it done at the subscribe's reply.
//
// Why: the Python load tester spends about 350 µs of its own CPU per connect (four processes on
// one core reach 2,500-3,000 connects/s), and Node's `ws` client about 250 µs, so neither can
// show whether a server takes 5,000/s on a two-core machine. This client (bench/node/wire.js,
// raw sockets) costs about 120-150 µs and reports its own CPU. The protocol steps are the Python
// tester's `hold --subscribe`.
//
//     node bench/node/connect.js --url ws://127.0.0.1:8000/ws --connections 10000 --rate 8000 \
//       --token-secret S [--channels 100] [--prefix bench:] [--sources 127.0.0.2-127.0.0.9]
//
// Prints one JSON line: {"asked", "done", "failed", "seconds", "connects_per_s", "cpu_s"}.

"use strict";

const wire = require("./wire.js");

const target = new URL(wire.option("url", "ws://127.0.0.1:8000/ws"));
const count = Number(wire.option("connections", "10000"));
const rate = Number(wire.option("rate", "8000"));
const channels = Number(wire.option("channels", "100"));
const prefix = wire.option("prefix", "bench:");
const secret = wire.option("token-secret", null);
const pendingMax = Number(wire.option("pending", "1024"));
const timeoutMs = Number(wire.option("timeout", "30")) * 1000;
const addresses = wire.sources(wire.option("sources", null));

// Tokens and requests are made before the clock starts, as the Python tester's are.
const requests = [];
for (let n = 0; n < count; n++) {
  const query = secret ? `?token=${wire.token(secret, `bench-${n}`)}` : "";
  requests.push(wire.upgradeRequest(target, query));
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

function connectOne(n) {
  pending++;
  let stage = "hello";
  let over = false;
  const end = (ok) => {
    if (over) return;
    over = true;
    clearTimeout(timer);
    settled(ok);
  };
  const timer = setTimeout(() => end(false), timeoutMs);
  const onMessage = (msg, send) => {
    if (stage === "hello" && msg.push === "hello") {
      stage = "subscribe";
      send({ id: 1, op: "subscribe", channel: `${prefix}c${n % channels}` });
    } else if (stage === "subscribe" && msg.id === 1) {
      stage = "live";
      end(msg.ok === true);
    }
  };
  open.push(wire.open(target, requests[n], addresses[n % addresses.length], onMessage, () => end(false)));
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
