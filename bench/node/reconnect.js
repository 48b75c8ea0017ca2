// bench/reconnect.py's clients in Node.js (`--client node`): the same steps as its Python
// workers, at a fraction of their CPU per reconnect, so that the server's part is what is
// measured. Each client subscribes to one channel and checks that offsets only increase; after
// the server is killed it reconnects (first try after up to 300 ms, then every 100-300 ms while
// refused) and resubscribes with `since` its last offset; it is live again at that reply.
//
//     node bench/node/reconnect.js --url ws://127.0.0.1:8000/ws --clients 5000 --index 0 \
//       --channels 100 --expect 8 --token-secret S [--sources 127.0.0.2-127.0.0.9]
//
// Talks to its parent by lines: prints "ready" once all are subscribed; on "go" (the server
// was killed) starts reconnecting and prints "waiting"; on "published" (and every client live)
// waits until every client has `--expect` publications (at most 15 s) and prints one line:
// {"live_at": [s since the epoch...], "recovered": n, "bad": n, "got": [n...]}.

"use strict";

const readline = require("node:readline");
const wire = require("./wire.js");

const target = new URL(wire.option("url", "ws://127.0.0.1:8000/ws"));
const count = Number(wire.option("clients", "1000"));
const index = Number(wire.option("index", "0"));
const channels = Number(wire.option("channels", "100"));
const secret = wire.option("token-secret", null);
const addresses = wire.sources(wire.option("sources", null));
const expect = Number(wire.option("expect", "0")); // publications each client should get

const jitter = (lo, hi) => lo + Math.random() * (hi - lo);

class Tracked {
  constructor(i) {
    this.i = i;
    this.channel = `bench:r${(index * count + i) % channels}`;
    this.request = wire.upgradeRequest(target, `?token=${wire.token(secret, `w${index}c${i}`)}`);
    this.offset = 0;
    this.epoch = "";
    this.liveAt = 0;
    this.recovered = false;
    this.got = 0; // publications received since the first subscribe
    this.bad = 0; // doubled or out of order
  }

  seen(offset) {
    if (offset <= this.offset) {
      this.bad++;
      return;
    }
    this.got++;
    this.offset = offset;
  }

  // Connect and subscribe (with `since` when coming back); `done(ok)` once, at the reply or the end.
  attach(since, done) {
    let stage = "hello";
    let settled = false;
    const settle = (ok) => {
      if (!settled) {
        settled = true;
        done(ok);
      }
    };
    const onMessage = (msg, send) => {
      if (stage === "hello" && msg.push === "hello") {
        stage = "subscribe";
        const args = { id: 1, op: "subscribe", channel: this.channel };
        if (since) args.since = { offset: this.offset, epoch: this.epoch };
        send(args);
      } else if (stage === "subscribe" && msg.id === 1) {
        if (!msg.ok) {
          sock.destroy(); // refused (the store still seeding, say): try again on a new one
          return settle(false);
        }
        stage = "live";
        for (const pub of msg.result.missed) this.seen(Number(pub.offset));
        this.offset = Math.max(this.offset, Number(msg.result.offset));
        this.epoch = String(msg.result.epoch);
        this.recovered = msg.result.recovered === true;
        settle(true);
      } else if (msg.push === "pub") {
        this.seen(Number(msg.offset));
      }
    };
    const onEnd = () => settle(false);
    const sock = wire.open(target, this.request, addresses[this.i % addresses.length], onMessage, onEnd);
  }
}

const tracked = [];
for (let i = 0; i < count; i++) tracked.push(new Tracked(i));

let comingBack = false;
let published = false;
let waitingLive = 0;

// Once every client is live and the parent has published: report when each has every
// publication, or after EXPECT_WAIT_MS (a loaded server delivers the last ones late; what is
// still missing then counts as lost).
const EXPECT_WAIT_MS = 15000;
function report() {
  const since = Date.now();
  const check = setInterval(() => {
    if (tracked.some((t) => t.got < expect) && Date.now() - since < EXPECT_WAIT_MS) return;
    clearInterval(check);
    const out = {
      live_at: tracked.map((t) => t.liveAt),
      recovered: tracked.filter((t) => t.recovered).length,
      bad: tracked.reduce((n, t) => n + t.bad, 0),
      got: tracked.map((t) => t.got),
    };
    process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
  }, 100);
}

function comeBack(t) {
  t.attach(true, (ok) => {
    if (!ok) {
      setTimeout(() => comeBack(t), jitter(100, 300));
      return;
    }
    t.liveAt = Date.now() / 1000;
    waitingLive--;
    if (waitingLive === 0 && published) report();
  });
}

// First connects: 200 at a time, as the Python workers do.
let started = 0;
let subscribed = 0;
function firstOne() {
  if (started >= count) return;
  const t = tracked[started++];
  t.attach(false, (ok) => {
    if (!ok) {
      process.stderr.write(`client ${t.i} could not subscribe\n`);
      process.exit(2);
    }
    subscribed++;
    if (subscribed === count) process.stdout.write("ready\n");
    firstOne();
  });
}
for (let k = 0; k < 200; k++) firstOne();

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "go" && !comingBack) {
    comingBack = true;
    waitingLive = count;
    for (const t of tracked) setTimeout(() => comeBack(t), jitter(0, 300));
    process.stdout.write("waiting\n");
  } else if (line === "published") {
    published = true;
    if (waitingLive === 0) report();
  }
});
