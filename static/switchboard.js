// Switchboard browser client for protocol v1 (see docs/protocol.md). Dependency-free ES module.
// This is the core version: connect, commands with promised replies, subscriptions, events.

export class SwitchboardError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

export class Switchboard {
  constructor(url, options = {}) {
    this.url = url;
    this.options = options;
    this.state = "disconnected";
    this._listeners = new Map();
    this._pending = new Map();
    this._subs = new Map();
    this._nextId = 1;
    this._ws = null;
  }

  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event).delete(fn);
  }

  _emit(event, value) {
    for (const fn of this._listeners.get(event) || []) fn(value);
  }

  _setState(state) {
    if (state !== this.state) { this.state = state; this._emit("state", state); }
  }

  _wsUrl() {
    const u = new URL(this.url, location.href);
    if (u.protocol === "http:") u.protocol = "ws:";
    if (u.protocol === "https:") u.protocol = "wss:";
    if (this.options.token) u.searchParams.set("token", this.options.token);
    return u.toString();
  }

  connect() {
    this._setState("connecting");
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this._wsUrl());
      this._ws = ws;
      ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.push === "hello") { this.hello = msg; this._setState("connected"); resolve(msg); }
        else this._dispatch(msg);
      };
      ws.onclose = (ev) => {
        for (const { reject: rj } of this._pending.values()) rj(new SwitchboardError("unavailable", "connection closed"));
        this._pending.clear();
        this._setState("disconnected");
        reject(new SwitchboardError("unavailable", `closed with ${ev.code}`));
      };
    });
  }

  _dispatch(msg) {
    if (msg.id !== undefined && this._pending.has(msg.id)) {
      const { resolve, reject } = this._pending.get(msg.id);
      this._pending.delete(msg.id);
      if (msg.error) reject(new SwitchboardError(msg.error.code, msg.error.message));
      else resolve(msg.result);
      return;
    }
    if (msg.push === "pub") this._subs.get(msg.channel)?.onPublication(msg);
    else if (msg.push === "join") this._subs.get(msg.channel)?.onJoin?.(msg);
    else if (msg.push === "leave") this._subs.get(msg.channel)?.onLeave?.(msg);
    else if (msg.error) this._emit("error", new SwitchboardError(msg.error.code, msg.error.message));
  }

  _call(op, fields = {}) {
    return new Promise((resolve, reject) => {
      if (!this._ws || this._ws.readyState !== WebSocket.OPEN) {
        reject(new SwitchboardError("unavailable", "not connected"));
        return;
      }
      const id = this._nextId++;
      this._pending.set(id, { resolve, reject });
      this._ws.send(JSON.stringify({ id, op, ...fields }));
    });
  }

  async subscribe(channel, onPublication, { onJoin, onLeave } = {}) {
    const sub = { channel, onPublication, onJoin, onLeave };
    this._subs.set(channel, sub);
    try {
      const result = await this._call("subscribe", { channel });
      sub.offset = result.offset;
      sub.epoch = result.epoch;
    } catch (err) {
      this._subs.delete(channel);
      throw err;
    }
    sub.unsubscribe = async () => {
      this._subs.delete(channel);
      await this._call("unsubscribe", { channel });
    };
    return sub;
  }

  publish(channel, data) { return this._call("publish", { channel, data }); }
  history(channel, opts = {}) { return this._call("history", { channel, ...opts }); }
  presence(channel) { return this._call("presence", { channel }); }
  ping() { return this._call("ping"); }
  close() { this._ws?.close(1000); }
}
