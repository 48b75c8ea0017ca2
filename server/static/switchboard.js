// Switchboard browser client for protocol v1 (docs/protocol.md). A dependency-free ES module.
//
//   const sb = new Switchboard("/ws", { token });   // token: a string, or a function returning
//   sb.on("state", (s, info) => ...);                // one (or its promise), asked on each connect
//   await sb.connect();
//   const sub = await sb.subscribe("chat:lobby", (pub) => ..., { onJoin, onLeave, onRecovery });
//   await sb.publish("chat:lobby", { text: "hi" });
//
// It reconnects by itself (exponential backoff with full jitter, capped), except when the
// server said not to; it notices a dead connection by unanswered pings; and it resubscribes
// every channel with `since`, so each publication reaches the page once and in order.
//
// Transports: WebSocket first, then Server-Sent Events with POSTed commands where a proxy
// refuses the upgrade (`transports: ["websocket", "sse"]`, the default; `["sse"]` forces SSE).
// `encoding: "msgpack"` asks for MessagePack frames over WebSocket (SSE is always JSON).

import { SseTransport, WebSocketTransport } from "./transports.js";

/** An error reply or a local failure; `code` is one of the protocol's error codes. */
export class SwitchboardError extends Error {
  constructor(code, message, detail = {}) {
    super(message);
    this.name = "SwitchboardError";
    this.code = code;
    Object.assign(this, detail);
  }
}

// Closes after which reconnecting with the same credentials cannot help (unless the server's
// `disconnect` push said otherwise): unauthorized, forbidden, policy.
const FINAL_CLOSES = new Set([4001, 4003, 4008]);
const DEFAULTS = {
  token: null,
  minDelayMs: 500, // first backoff window; doubles per failed attempt
  maxDelayMs: 20000, // cap of the backoff window
  connectTimeoutMs: 10000, // no hello by then: give up on this attempt
  pingTimeoutMs: 5000, // a ping unanswered this long means the connection is dead
  stableAfterMs: 5000, // a connection that lived this long resets the backoff
  transports: ["websocket", "sse"], // tried in turn until one gets the server's hello
  encoding: "json", // or "msgpack": MessagePack frames over WebSocket
  sseUrl: null, // default: the URL with its last path segment "ws" replaced by "sse"
};

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  promise.catch(() => {}); // a rejection nobody awaits is not an unhandled error
  return { promise, resolve, reject };
}

/** One channel's subscription: survives reconnects until `unsubscribe()`. */
class Subscription {
  constructor(client, channel, onPublication, options) {
    this.client = client;
    this.channel = channel;
    this.onPublication = onPublication;
    this.options = options;
    this.offset = options.since?.offset ?? null; // last publication delivered
    this.epoch = options.since?.epoch ?? null;
    this.active = false; // the server confirmed it on the current connection
    this.attempt = 0; // subscribes refused `unavailable` in a row
    this.ready = deferred();
  }

  /** Deliver a publication unless it was delivered already (offsets only grow in an epoch). */
  deliver(pub) {
    if (this.offset !== null && pub.offset <= this.offset) return;
    this.offset = pub.offset;
    this.onPublication(pub);
  }

  unsubscribe() { return this.client._unsubscribe(this); }
}

export class Switchboard {
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.state = "disconnected";
    this.hello = null;
    this.transport = null; // "websocket" or "sse": what carries the current connection
    this._listeners = new Map();
    this._pending = new Map(); // command id -> deferred
    this._subs = new Map(); // channel -> Subscription
    this._nextId = 1;
    this._ws = null; // the transport in use (server/static/transports.js)
    this._helloOn = null; // the transport that got the last hello
    this._next = 0; // index in options.transports of the transport to try first
    this._tried = 0; // transports tried in this attempt
    this._token = null; // this attempt's token
    this._wanted = false; // connect() called and close() not since
    this._attempt = 0;
    this._timers = {};
    this._connected = deferred();
    this._onVisible = () => { if (document.visibilityState === "visible") this.check(); };
    this._onOnline = () => this.check();
  }

  // -- events -------------------------------------------------------------------------------

  /** Listen to "state" (state, info), "error" (SwitchboardError) or "recovery" ({channel,
   *  recovered}); returns a function that stops listening. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event).delete(fn);
  }

  _emit(event, ...args) {
    for (const fn of this._listeners.get(event) || []) {
      try { fn(...args); } catch (err) { reportError(err); }
    }
  }

  _setState(state, info = {}) {
    const changed = state !== this.state;
    this.state = state;
    if (changed || info.retryInMs !== undefined) this._emit("state", state, info);
  }

  // -- connection ---------------------------------------------------------------------------

  /** Resolves with the server's hello once connected; rejects only if the client gives up. */
  connect() {
    if (!this._wanted) {
      this._wanted = true;
      document.addEventListener("visibilitychange", this._onVisible);
      window.addEventListener("online", this._onOnline);
      this._open();
    }
    return this._connected.promise;
  }

  /** Close for good: no reconnect; pending calls and subscriptions are rejected. */
  close() {
    this._wanted = false;
    document.removeEventListener("visibilitychange", this._onVisible);
    window.removeEventListener("online", this._onOnline);
    this._dropSocket(1000, "client closed");
    const err = new SwitchboardError("unavailable", "client closed");
    for (const sub of this._subs.values()) sub.ready.reject(err);
    this._subs.clear();
    this._connected.reject(err);
    this._setState("disconnected");
  }

  /** Make sure the connection is alive now: ping it, or retry at once if waiting to. */
  check() {
    if (!this._wanted) return;
    if (this.state === "connected") this._ping();
    else if (this._timers.retry) { this._clear("retry"); this._open(); }
  }

  async _open() {
    this._setState(this.hello ? "reconnecting" : "connecting", { retryInMs: 0 });
    try {
      const { token } = this.options;
      this._token = typeof token === "function" ? await token() : token;
    } catch (err) {
      this._emit("error", new SwitchboardError("unauthorized", `no token: ${err.message}`));
      this._retry();
      return;
    }
    if (!this._wanted) return;
    this._tried = 0;
    this._start();
  }

  /** Open the transport `_next` names; `_lost` moves on to the next one if it gets no hello. */
  _start() {
    const names = this.options.transports;
    const name = names[this._next % names.length];
    const handlers = {
      onMessage: (msg) => this._receive(transport, msg),
      onClose: (ev) => this._lost(transport, ev),
    };
    const url = this._urlFor(name);
    const transport = name === "sse" ? new SseTransport(url, handlers)
      : new WebSocketTransport(url, handlers, { encoding: this.options.encoding });
    this._ws = transport;
    this._tried += 1;
    this._lastPush = null;
    this._timer("connect", this.options.connectTimeoutMs,
      () => this._lost(transport, { code: 4000, reason: "no hello in time" }));
  }

  _urlFor(name) {
    let u;
    if (name === "sse" && this.options.sseUrl) {
      u = new URL(this.options.sseUrl, location.href);
    } else {
      u = new URL(this.url, location.href);
      if (name === "sse") u.pathname = u.pathname.replace(/\/ws\/?$/, "/sse");
    }
    const secure = u.protocol === "https:" || u.protocol === "wss:";
    if (name === "sse") u.protocol = secure ? "https:" : "http:";
    else u.protocol = secure ? "wss:" : "ws:";
    if (this._token) u.searchParams.set("token", this._token);
    return u.toString();
  }

  _hello(msg) {
    this._clear("connect");
    this._helloOn = this._ws;
    this.transport = this._ws.name;
    this.hello = msg;
    this._helloAt = Date.now();
    this._setState("connected");
    const every = Math.max(1, msg.ping_interval || 25) * 1000;
    this._clear("ping");
    this._timers.ping = setInterval(() => this._ping(), every);
    for (const sub of this._subs.values()) this._sendSubscribe(sub);
    this._connected.resolve(msg);
  }

  async _ping() {
    const ws = this._ws;
    if (!ws || this._timers.pong) return; // one ping in flight; its deadline must not move
    const timeout = new Promise((_, reject) => {
      this._timer("pong", this.options.pingTimeoutMs,
        () => reject(new SwitchboardError("unavailable", "ping unanswered")));
    });
    try {
      await Promise.race([this._call("ping"), timeout]);
      this._clear("pong");
    } catch {
      this._lost(ws, { code: 4000, reason: "ping unanswered" });
    }
  }

  /** The socket closed or is presumed dead: fail what waited on it, then retry or stop. */
  _lost(ws, { code, reason }) {
    if (!ws || ws !== this._ws) return; // an old socket's late news
    const push = this._lastPush;
    this._dropSocket(4000, "connection lost");
    if (!this._wanted) return;
    if (ws !== this._helloOn && !push && this._tried < this.options.transports.length) {
      this._next += 1; // it never got a hello (a proxy refused it?): try the next one now
      this._start();
      return;
    }
    const renewable = code === 4001 && typeof this.options.token === "function";
    const retry = push ? push.reconnect || renewable : !FINAL_CLOSES.has(code) || renewable;
    if (retry) {
      if (this._helloAt && Date.now() - this._helloAt > this.options.stableAfterMs) this._attempt = 0;
      this._helloAt = 0;
      const asked = push?.reconnect ? push.reconnect_delay_ms : undefined;
      if (typeof asked === "number" && asked >= 0) {
        // A draining server spreads its clients out: its delay plus up to half again.
        this._attempt = 0;
        this._retry(Math.round(asked * (1 + Math.random() / 2)));
      } else {
        this._retry();
      }
      return;
    }
    const err = new SwitchboardError(push ? closeCode(push.code) : closeCode(code),
      push?.reason || reason || `closed with ${code}`, { closeCode: push?.code ?? code });
    this._wanted = false;
    for (const sub of this._subs.values()) sub.ready.reject(err);
    this._connected.reject(err);
    this._emit("error", err);
    this._setState("disconnected");
  }

  _retry(delay = this._backoff(this._attempt++)) {
    this._setState(this.hello ? "reconnecting" : "connecting", { retryInMs: delay });
    this._timer("retry", delay, () => this._open());
  }

  /** Exponential backoff with full jitter, capped: the wait before retry number `attempt`. */
  _backoff(attempt) {
    const windowMs = Math.min(this.options.maxDelayMs, this.options.minDelayMs * 2 ** attempt);
    return Math.round(Math.random() * windowMs);
  }

  _dropSocket(code, reason) {
    const ws = this._ws;
    this._ws = null;
    for (const name of Object.keys(this._timers)) this._clear(name);
    for (const sub of this._subs.values()) sub.active = false;
    const err = new SwitchboardError("unavailable", "connection closed");
    for (const pending of this._pending.values()) pending.reject(err);
    this._pending.clear();
    if (ws) ws.close(code, reason);
  }

  _timer(name, ms, fn) {
    this._clear(name);
    this._timers[name] = setTimeout(() => { delete this._timers[name]; fn(); }, ms);
  }

  _clear(name) {
    clearTimeout(this._timers[name]); // also clears intervals
    clearInterval(this._timers[name]);
    delete this._timers[name];
  }

  // -- frames -------------------------------------------------------------------------------

  _receive(ws, msg) {
    if (ws !== this._ws || msg === null || typeof msg !== "object") return;
    if (msg.id !== undefined) {
      const pending = this._pending.get(msg.id);
      if (!pending) return;
      this._pending.delete(msg.id);
      if (msg.error) pending.reject(new SwitchboardError(msg.error.code, msg.error.message));
      else pending.resolve(msg.result);
      return;
    }
    const sub = this._subs.get(msg.channel);
    switch (msg.push) {
      case "hello": this._hello(msg); break;
      case "pub": if (sub?.active) sub.deliver(msg); break;
      case "join": sub?.options.onJoin?.(msg); break;
      case "leave": sub?.options.onLeave?.(msg); break;
      case "unsubscribed": if (sub) this._ended(sub, msg.reason); break;
      case "disconnect": this._lastPush = msg; break;
      default:
        if (msg.error) this._emit("error", new SwitchboardError(msg.error.code, msg.error.message));
    }
  }

  /** The server ended a subscription; one it could not keep gapless is taken up again. */
  _ended(sub, reason) {
    sub.active = false;
    if (reason === "insufficient_state") { this._sendSubscribe(sub); return; }
    this._subs.delete(sub.channel);
    this._emit("error", new SwitchboardError(reason, `unsubscribed from ${sub.channel}`,
      { channel: sub.channel }));
  }

  _call(op, fields = {}) {
    if (!this._ws || this.state !== "connected") {
      return Promise.reject(new SwitchboardError("unavailable", "not connected"));
    }
    const id = this._nextId++;
    const pending = deferred();
    this._pending.set(id, pending);
    this._ws.send({ id, op, ...fields });
    return pending.promise;
  }

  // -- commands -----------------------------------------------------------------------------

  /** Subscribe now or, while reconnecting, as soon as connected; `since` ({offset, epoch})
   *  first delivers what was published after it. Resolves once the server confirmed. */
  subscribe(channel, onPublication, options = {}) {
    if (this._subs.has(channel)) {
      return Promise.reject(new SwitchboardError("bad_request", `already subscribed to ${channel}`));
    }
    const sub = new Subscription(this, channel, onPublication, options);
    this._subs.set(channel, sub);
    if (this.state === "connected") this._sendSubscribe(sub);
    return sub.ready.promise;
  }

  async _sendSubscribe(sub) {
    const resuming = sub.epoch !== null && sub.offset !== null;
    const since = resuming ? { since: { offset: sub.offset, epoch: sub.epoch } } : {};
    let result;
    try {
      result = await this._call("subscribe", { channel: sub.channel, ...since });
    } catch (err) {
      if (err.code === "unavailable" && this._wanted && this._subs.get(sub.channel) === sub) {
        // Refused while connected (a backing service is down): try again with backoff.
        // Otherwise the connection dropped, and the next hello subscribes again.
        if (this.state === "connected") this._resubscribeLater(sub);
        return;
      }
      if (this._subs.get(sub.channel) === sub) this._subs.delete(sub.channel);
      sub.ready.reject(err);
      if (resuming) this._emit("error", err);
      return;
    }
    if (this._subs.get(sub.channel) !== sub) return; // unsubscribed meanwhile
    sub.attempt = 0;
    if (result.epoch !== sub.epoch) sub.offset = resuming ? 0 : result.offset;
    sub.epoch = result.epoch;
    sub.active = true;
    for (const pub of result.missed || []) sub.deliver({ ...pub, channel: sub.channel });
    if (resuming) {
      const info = { channel: sub.channel, recovered: result.recovered };
      sub.options.onRecovery?.(info);
      this._emit("recovery", info);
    }
    sub.ready.resolve(sub);
  }

  _resubscribeLater(sub) {
    const ws = this._ws;
    const delay = this._backoff(sub.attempt++);
    this._timer(`sub:${sub.channel}`, delay, () => {
      if (ws === this._ws && this._subs.get(sub.channel) === sub && !sub.active) this._sendSubscribe(sub);
    });
  }

  async _unsubscribe(sub) {
    if (this._subs.get(sub.channel) !== sub) return;
    this._subs.delete(sub.channel);
    const wasActive = sub.active;
    sub.active = false;
    if (wasActive && this.state === "connected") {
      await this._call("unsubscribe", { channel: sub.channel });
    }
  }

  publish(channel, data) { return this._call("publish", { channel, data }); }

  /** `options`: since (offset), limit, reverse, as the protocol's `history`. */
  history(channel, options = {}) { return this._call("history", { channel, ...options }); }

  presence(channel) { return this._call("presence", { channel }); }
}

/** The error code a close code stands for. */
function closeCode(code) {
  return { 4001: "unauthorized", 4003: "forbidden", 4008: "limit_exceeded" }[code] || "unavailable";
}
