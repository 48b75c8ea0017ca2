// Types for static/switchboard.js, the Switchboard browser client for protocol v1
// (docs/protocol.md). The module exports two values, `Switchboard` and `SwitchboardError`;
// everything else here is a type only.

/** The connection's state, as the "state" event reports it. */
export type State = "disconnected" | "connecting" | "connected" | "reconnecting";

/** Protocol v1's error codes; a `disconnect` or `unsubscribed` push may carry others. */
export type ErrorCode =
  | "bad_request"
  | "unknown_op"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "limit_exceeded"
  | "unavailable"
  | "disabled"
  | "internal"
  | (string & {});

/** A place in a channel's stream: the offset of a publication and the channel's epoch. */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

/** The server's greeting on every connect. */
export interface Hello {
  push: "hello";
  client: string;
  user: string | null;
  node: string;
  /** Seconds between the client's pings. */
  ping_interval: number;
  version: number;
}

/** A publication; `info` is absent for publications made through the HTTP API. Live ones
 *  still carry `push: "pub"`, recovered ones do not. */
export interface Publication<T = unknown> {
  push?: "pub";
  channel: string;
  offset: number;
  data: T;
  info?: { user: string | null; client: string };
  /** Milliseconds since the Unix epoch. */
  ts: number;
}

/** Someone subscribed to or left a channel (namespaces with `join_leave`). */
export interface JoinLeave {
  push: "join" | "leave";
  channel: string;
  client: string;
  user: string | null;
}

/** Told after each resubscribe with `since`: `recovered: false` means a gap was lost. */
export interface Recovery {
  channel: string;
  recovered: boolean;
}

/** With a "state" event: `retryInMs` when an attempt is scheduled (0: attempting now). */
export interface StateInfo {
  retryInMs?: number;
}

export interface PublishResult {
  offset: number;
  epoch: string;
}

export interface HistoryResult<T = unknown> {
  publications: Publication<T>[];
  offset: number;
  epoch: string;
}

export interface PresenceResult {
  clients: Record<string, { user: string | null; name: string | null }>;
}

/** A connection token, or a function returning one (or its promise), asked on every connect. */
export type TokenSource =
  | string
  | null
  | (() => string | null | undefined | PromiseLike<string | null | undefined>);

/** A way to the server: a WebSocket, or Server-Sent Events with POSTed commands. */
export type TransportName = "websocket" | "sse";

/** The encoding of frames over WebSocket (SSE is always JSON). */
export type Encoding = "json" | "msgpack";

export interface SwitchboardOptions {
  token?: TokenSource;
  /** Tried in turn until one gets the server's hello (default ["websocket", "sse"]);
   *  the one that worked is tried first on the next connect. */
  transports?: TransportName[];
  /** "msgpack": MessagePack binary frames over WebSocket (default "json"). */
  encoding?: Encoding;
  /** The SSE endpoint (default: the URL with its last path segment "ws" replaced by "sse"). */
  sseUrl?: string | URL | null;
  /** First backoff window (default 500); doubles per failed attempt. */
  minDelayMs?: number;
  /** Cap of the backoff window (default 20,000). */
  maxDelayMs?: number;
  /** No hello by then: give up on this attempt (default 10,000). */
  connectTimeoutMs?: number;
  /** A ping unanswered this long means the connection is dead (default 5,000). */
  pingTimeoutMs?: number;
  /** A connection that lived this long resets the backoff (default 5,000). */
  stableAfterMs?: number;
}

export interface SubscribeOptions {
  /** Start after this position (e.g. the end of a `history` call): what came after is
   *  delivered first. */
  since?: StreamPosition;
  onJoin?: (join: JoinLeave) => void;
  onLeave?: (leave: JoinLeave) => void;
  onRecovery?: (recovery: Recovery) => void;
}

export interface HistoryOptions {
  /** Publications after this offset. */
  since?: number;
  /** At most this many (default 100, max 1000). */
  limit?: number;
  /** Newest first. */
  reverse?: boolean;
}

/** An error reply or a local failure. */
export declare class SwitchboardError extends Error {
  constructor(code: ErrorCode, message: string, detail?: Record<string, unknown>);
  name: string;
  code: ErrorCode;
  /** Set when the connection ended for good with this WebSocket close code. */
  closeCode?: number;
  /** Set when the server ended a subscription to this channel. */
  channel?: string;
}

/** One channel's subscription: survives reconnects until `unsubscribe()`. */
export interface Subscription<T = unknown> {
  readonly client: Switchboard;
  readonly channel: string;
  readonly onPublication: (pub: Publication<T>) => void;
  readonly options: SubscribeOptions;
  /** The last publication delivered, or null before the first. */
  readonly offset: number | null;
  readonly epoch: string | null;
  /** The server confirmed it on the current connection. */
  readonly active: boolean;
  unsubscribe(): Promise<void>;
}

export declare class Switchboard {
  constructor(url: string | URL, options?: SwitchboardOptions);
  readonly url: string | URL;
  readonly options: Required<SwitchboardOptions>;
  readonly state: State;
  /** The server's hello on the current (or last) connection. */
  readonly hello: Hello | null;
  /** The transport that carried the last hello, or null before the first. */
  readonly transport: TransportName | null;

  /** Listen to an event; returns a function that stops listening. */
  on(event: "state", fn: (state: State, info: StateInfo) => void): () => void;
  on(event: "error", fn: (error: SwitchboardError) => void): () => void;
  on(event: "recovery", fn: (recovery: Recovery) => void): () => void;

  /** Resolves with the server's hello once connected; rejects only if the client gives up. */
  connect(): Promise<Hello>;
  /** Close for good: no reconnect; pending calls and subscriptions are rejected. */
  close(): void;
  /** Make sure the connection is alive now: ping it, or retry at once if waiting to. */
  check(): void;

  /** Subscribe now or, while reconnecting, as soon as connected; resolves once confirmed. */
  subscribe<T = unknown>(
    channel: string,
    onPublication: (pub: Publication<T>) => void,
    options?: SubscribeOptions,
  ): Promise<Subscription<T>>;
  /** Resolves once the server stored the publication and handed it on. */
  publish(channel: string, data: unknown): Promise<PublishResult>;
  history<T = unknown>(channel: string, options?: HistoryOptions): Promise<HistoryResult<T>>;
  presence(channel: string): Promise<PresenceResult>;
}
