// The browser client's two ways to the server, behind one small interface (docs/protocol.md):
//
//   const t = new WebSocketTransport(url, { onMessage, onClose }, { encoding })
//   const t = new SseTransport(url, { onMessage, onClose })
//   t.send(command)          a protocol v1 command object
//   t.close(code, reason)    no handler is called after this
//
// onMessage(frame) gets each decoded frame; onClose({ code, reason }) is called once, when the
// transport ended without close() having been called.

import { decode, encode } from "./msgpack.js";

export const MSGPACK = "switchboard.msgpack";
export const JSON_PROTOCOL = "switchboard.json";

/** Protocol v1 over a WebSocket: JSON text frames, or MessagePack binary frames when the
 *  server accepted the `switchboard.msgpack` subprotocol. */
export class WebSocketTransport {
  constructor(url, handlers, { encoding = "json" } = {}) {
    this.name = "websocket";
    const protocols = encoding === "msgpack" ? [MSGPACK, JSON_PROTOCOL] : [];
    const ws = (this.ws = new WebSocket(url, protocols));
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => {
      let msg;
      try { msg = typeof ev.data === "string" ? JSON.parse(ev.data) : decode(ev.data); } catch { return; }
      handlers.onMessage(msg);
    };
    ws.onclose = (ev) => handlers.onClose({ code: ev.code, reason: ev.reason });
  }

  /** The encoding the server agreed to: "msgpack" or "json". */
  get encoding() { return this.ws.protocol === MSGPACK ? "msgpack" : "json"; }

  send(msg) { this.ws.send(this.encoding === "msgpack" ? encode(msg) : JSON.stringify(msg)); }

  close(code, reason) {
    const ws = this.ws;
    ws.onmessage = ws.onclose = null;
    if (ws.readyState <= WebSocket.OPEN) ws.close(code === 1000 ? 1000 : 4000, reason);
  }
}

/** Protocol v1 over Server-Sent Events (frames from the server) and POSTs (commands), for
 *  networks whose proxies refuse WebSocket upgrades. Always JSON. A dropped event stream is
 *  reconnected by the browser itself with Last-Event-ID, which the server resumes from. */
export class SseTransport {
  constructor(url, handlers) {
    this.name = "sse";
    this.encoding = "json";
    this.handlers = handlers;
    const u = new URL(url);
    this.crossOrigin = u.origin !== location.origin;
    u.search = "";
    this.postUrl = u.toString();
    this.session = null;
    this.queue = []; // commands waiting for the POST in flight to end
    this.posting = false;
    this.closed = false;
    const es = (this.es = new EventSource(url, { withCredentials: this.crossOrigin }));
    es.addEventListener("session", (ev) => {
      this.session = JSON.parse(ev.data).session;
      this._post();
    });
    es.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (!this.closed) handlers.onMessage(msg);
    };
    es.addEventListener("close", (ev) => {
      let info = {};
      try { info = JSON.parse(ev.data); } catch { /* ended all the same */ }
      this._end(info.code ?? 1006, info.reason ?? "");
    });
    // While the browser reconnects (readyState CONNECTING) the session waits on the server.
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) this._end(1006, "event stream failed"); };
  }

  send(msg) {
    this.queue.push(JSON.stringify(msg));
    this._post();
  }

  /** POST what is queued, one request at a time, so the server runs commands in order. */
  async _post() {
    if (this.posting || this.closed || !this.session || !this.queue.length) return;
    this.posting = true;
    const body = this.queue.splice(0).join("\n");
    let status = 0;
    try {
      const resp = await fetch(this.postUrl, this._request("POST", body));
      status = resp.status;
    } catch { /* status 0: the request did not get through */ }
    this.posting = false;
    if (status !== 202) {
      // Commands may be lost: end, as a broken socket would, and let the client reconnect.
      this._end(status === 429 ? 4009 : 1006, `commands not accepted (HTTP ${status})`);
      return;
    }
    this._post();
  }

  _request(method, body) {
    return {
      method,
      body,
      headers: { "Switchboard-Session": this.session, "Content-Type": "text/plain" },
      credentials: this.crossOrigin ? "include" : "same-origin",
      keepalive: method === "DELETE",
    };
  }

  _end(code, reason) {
    if (this.closed) return;
    this._shut();
    this.handlers.onClose({ code, reason });
  }

  _shut() {
    this.closed = true;
    this.es.close();
  }

  close() {
    if (this.closed) return;
    this._shut();
    // Tell the server now rather than after its grace period (best effort).
    if (this.session) fetch(this.postUrl, this._request("DELETE")).catch(() => {});
  }
}
