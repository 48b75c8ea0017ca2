// A page's use of the browser client, type-checked by tests/test_ts_types.py with `tsc --noEmit`.
// It imports the package by its npm name, so package.json's "exports" and "types" are checked
// too. Each `@ts-expect-error` line is a misuse the types must refuse: were the types loose
// (any), the directive itself would fail the check.
import {
  Switchboard,
  SwitchboardError,
  type HistoryResult,
  type Publication,
  type Recovery,
  type State,
  type Subscription,
} from "switchboard-client";

interface Chat {
  text: string;
}

const badge = { textContent: "" };
const lines: string[] = [];

const sb = new Switchboard("/ws", {
  token: async () => "jwt",
  minDelayMs: 250,
  maxDelayMs: 10_000,
});
new Switchboard(new URL("wss://example.com/ws"), { token: "jwt" });
new Switchboard("/ws", { token: () => null });
new Switchboard("/ws", { transports: ["sse"], encoding: "msgpack", sseUrl: "/events" });
// @ts-expect-error: only the transports there are
new Switchboard("/ws", { transports: ["long-polling"] });
// @ts-expect-error: only the encodings there are
new Switchboard("/ws", { encoding: "cbor" });
// @ts-expect-error: a token is a string or a function returning one
new Switchboard("/ws", { token: 42 });
// @ts-expect-error: options are checked
new Switchboard("/ws", { minDelay: 5 });

const stop: () => void = sb.on("state", (state: State, { retryInMs }) => {
  badge.textContent = retryInMs === undefined ? state : `${state} in ${retryInMs} ms`;
});
sb.on("error", (e) => lines.push(`${e.code}: ${e.message} ${e.closeCode ?? ""}`));
sb.on("recovery", ({ channel, recovered }: Recovery) => recovered || lines.push(channel));
// @ts-expect-error: no such event
sb.on("message", () => {});
stop();

async function main(): Promise<void> {
  const hello = await sb.connect();
  const via: "websocket" | "sse" | null = sb.transport;
  lines.push(via ?? "none");
  lines.push(hello.client, hello.user ?? "anonymous", String(hello.ping_interval));

  const page: HistoryResult<Chat> = await sb.history<Chat>("chat:lobby", { limit: 50 });
  for (const pub of page.publications) lines.push(pub.data.text);
  // @ts-expect-error: history options are checked
  await sb.history("chat:lobby", { limit: "50" });

  const sub: Subscription<Chat> = await sb.subscribe<Chat>(
    "chat:lobby",
    (pub: Publication<Chat>) => lines.push(`${pub.offset} ${pub.data.text} ${pub.info?.user}`),
    {
      since: { offset: page.offset, epoch: page.epoch },
      onJoin: (j) => lines.push(j.client),
      onLeave: (l) => lines.push(l.push),
      onRecovery: ({ recovered }) => recovered || lines.push("some messages were lost"),
    },
  );
  // @ts-expect-error: `since` needs an epoch too
  await sb.subscribe("x", () => {}, { since: { offset: 3 } });
  // @ts-expect-error: publication data is typed
  await sb.subscribe<Chat>("x", (pub) => pub.data.txt);

  const { offset, epoch } = await sb.publish("chat:lobby", { text: "hi" });
  lines.push(`${offset} ${epoch} ${sub.channel} ${sub.offset ?? 0} ${sub.active}`);
  // @ts-expect-error: offsets are numbers
  const wrong: string = (await sb.publish("chat:lobby", 1)).offset;
  lines.push(wrong);

  const { clients } = await sb.presence("chat:lobby");
  for (const [client, { user, name }] of Object.entries(clients)) {
    lines.push(client, user ?? "", name ?? "");
  }

  try {
    await sb.publish("feed:news", "not allowed");
  } catch (err) {
    if (err instanceof SwitchboardError && err.code === "forbidden") lines.push(err.message);
  }
  const local = new SwitchboardError("unavailable", "not connected", { channel: "x" });
  lines.push(local.name, local.channel ?? "");

  await sub.unsubscribe();
  sb.check();
  sb.close();
}

void main();
