// Admin dashboard: every process's figures from the sys:stats feed, over the WebSocket, with
// messages in/out per second drawn as a small chart per process. The page connects with a
// short-lived token that grants the feed, asked afresh from /admin/token on every connect.
import { Switchboard } from "./switchboard.js";
import { el, errorLine, showState } from "./ui.js";

const POINTS = 60; // a minute of samples
const SVG = "http://www.w3.org/2000/svg";
const feed = document.querySelector(".admin").dataset.feed;
const board = document.getElementById("processes");
const fail = errorLine(document.getElementById("error"));
const series = new Map(); // node -> { last, rates: [{in, out}], card }

async function token() {
  const res = await fetch("/admin/token", { credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw new Error(`not allowed (${res.status})`);
  return (await res.json()).token;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function card(node) {
  const figures = el("dl", "", "figures");
  const chart = svg("svg", { viewBox: `0 0 ${POINTS} 40`, preserveAspectRatio: "none", class: "chart" });
  chart.append(svg("polyline", { class: "in" }), svg("polyline", { class: "out" }));
  const legend = el("p", "", "legend");
  legend.append(el("span", "in/s", "in"), el("span", "out/s", "out"));
  const box = el("article", "", "process", { node });
  box.append(el("h2", node), figures, chart, legend);
  board.append(box);
  return box;
}

function figure(list, label, value) {
  list.append(el("dt", label), el("dd", String(value)));
}

function draw(box, rates) {
  const top = Math.max(1, ...rates.flatMap((r) => [r.in, r.out]));
  const line = (key) => rates.map((r, i) => `${i},${(40 - (r[key] / top) * 38).toFixed(1)}`).join(" ");
  box.querySelector("polyline.in").setAttribute("points", line("in"));
  box.querySelector("polyline.out").setAttribute("points", line("out"));
}

function update({ data }) {
  const seen = new Set();
  for (const p of data.processes) {
    seen.add(p.node);
    const s = series.get(p.node) ?? { last: null, rates: [], card: card(p.node) };
    series.set(p.node, s);
    const dt = s.last ? p.uptime_s - s.last.uptime_s : 0;
    if (s.last && dt < 0.5) continue; // about the same sample again (another process's feed)
    const rate = (key) => (dt > 0 ? Math.max(0, (p[key] - s.last[key]) / dt) : 0);
    const now = { in: rate("messages_in"), out: rate("messages_out") };
    s.rates = [...s.rates, now].slice(-POINTS);
    s.last = p;
    const list = s.card.querySelector("dl");
    list.replaceChildren();
    figure(list, "connections", p.connections);
    figure(list, "subscriptions", p.subscriptions);
    figure(list, "in/s", now.in.toFixed(1));
    figure(list, "out/s", now.out.toFixed(1));
    draw(s.card, s.rates);
  }
  for (const [node, s] of series) {
    if (!seen.has(node)) { s.card.remove(); series.delete(node); }
  }
}

const sb = new Switchboard("/ws", { token });
showState(sb, document.getElementById("state"));
sb.on("error", fail);
sb.connect().catch(fail);
sb.subscribe(feed, update).catch(fail);
