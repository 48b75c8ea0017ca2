// Admin · Nodes: every process's figures from the sys:stats feed, over the WebSocket, with
// charts of messages in/out per second, event-loop lag and memory over the last five minutes.
// The page connects with a short-lived token that grants the feed, asked afresh from
// /admin/token on every connect.
import { Switchboard } from "./switchboard.js";
import { lineChart } from "./chart.js";
import { el, errorLine, showState } from "./ui.js";

const WINDOW_MS = 5 * 60 * 1000;
const feed = document.querySelector(".admin").dataset.feed;
const board = document.getElementById("processes");
const totals = document.getElementById("totals");
const series = new Map(); // node -> { last, points: {in, out, lag, mem}, card, charts }

async function token() {
  const res = await fetch("/admin/token", { credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw new Error(`not allowed (${res.status})`);
  return (await res.json()).token;
}

const mb = (bytes) => bytes / (1024 * 1024);

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min` : `${Math.floor(s)} s`;
}

function card(node) {
  const box = el("article", "", "process", { node });
  const charts = {
    msgs: lineChart("Messages", "msg/s"),
    lag: lineChart("Event-loop lag", "ms"),
    mem: lineChart("Memory", "MB"),
  };
  const chartRow = el("div", "", "charts");
  chartRow.append(...Object.values(charts).map((c) => c.figure));
  box.append(el("h2", node), el("p", "", "where muted"), el("dl", "", "figures"), chartRow);
  board.querySelector(".empty")?.remove();
  board.append(box);
  return { card: box, charts };
}

function figures(list, pairs) {
  list.replaceChildren(...pairs.map(([label, value]) => {
    const item = el("div", "", "figure");
    item.append(el("dt", label), el("dd", String(value)));
    return item;
  }));
}

function update({ data }) {
  const now = Date.now();
  const seen = new Set();
  for (const p of data.processes) {
    seen.add(p.node);
    let s = series.get(p.node);
    if (!s) {
      s = { last: null, points: { in: [], out: [], lag: [], mem: [] }, ...card(p.node) };
      series.set(p.node, s);
    }
    const dt = s.last ? p.uptime_s - s.last.uptime_s : 0;
    if (s.last && dt < 0.5) continue; // about the same sample again (another process's feed)
    const rate = (key) => (dt > 0 ? Math.max(0, (p[key] - s.last[key]) / dt) : 0);
    const sample = { in: rate("messages_in"), out: rate("messages_out"), lag: p.loop_lag_ms ?? 0, mem: mb(p.rss_bytes) };
    for (const key of Object.keys(s.points)) {
      s.points[key] = [...s.points[key], { t: now, v: sample[key] }].filter((q) => q.t >= now - WINDOW_MS);
    }
    s.last = p;
    s.card.querySelector(".where").textContent =
      `host ${p.host ?? "?"} · pid ${p.pid} · version ${p.version ?? "?"} · up ${duration(p.uptime_s)}`;
    figures(s.card.querySelector("dl"), [
      ["connections", p.connections],
      ["subscriptions", p.subscriptions],
      ["in/s", sample.in.toFixed(1)],
      ["out/s", sample.out.toFixed(1)],
      ["loop lag", `${sample.lag.toFixed(1)} ms`],
      ["memory", `${sample.mem.toFixed(0)} MB`],
    ]);
    s.charts.msgs.draw([{ name: "in", cls: "in", points: s.points.in }, { name: "out", cls: "out", points: s.points.out }], WINDOW_MS);
    s.charts.lag.draw([{ name: "lag", cls: "lag", points: s.points.lag }], WINDOW_MS);
    s.charts.mem.draw([{ name: "RSS", cls: "mem", points: s.points.mem }], WINDOW_MS);
  }
  for (const [node, s] of series) {
    if (!seen.has(node)) { s.card.remove(); series.delete(node); }
  }
  const sum = (key) => data.processes.reduce((n, p) => n + (p[key] || 0), 0);
  figures(totals, [
    ["processes", data.processes.length],
    ["hosts", new Set(data.processes.map((p) => p.host)).size],
    ["connections", sum("connections")],
    ["subscriptions", sum("subscriptions")],
  ]);
}

const sb = new Switchboard("/ws", { token });
const fail = errorLine(document.getElementById("error"), sb);
showState(sb, document.getElementById("state"));
sb.on("error", fail);
sb.connect().catch(fail);
sb.subscribe(feed, update).catch(fail);
