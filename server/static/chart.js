// Line charts for the admin pages: SVG with a y axis in the series' unit, a time axis, grid
// lines and a legend. Points are { t: ms since the epoch, v: number } per series.

const NS = "http://www.w3.org/2000/svg";
const W = 320, H = 132, LEFT = 56, RIGHT = 8, TOP = 8, BOTTOM = 22;

function svg(tag, attrs = {}, text = "") {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

/** A round top for the axis: 1, 2 or 5 times a power of ten, at least `max`. */
function niceTop(max) {
  if (!(max > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) if (m * step >= max) return m * step;
  return 10 * step;
}

function label(value, unit) {
  const n = value >= 100 || Number.isInteger(value) ? String(Math.round(value)) : value.toFixed(1);
  return `${n} ${unit}`;
}

const clock = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/** A new chart: an <svg class="chart"> with a caption; `draw(series, windowMs)` redraws it. */
export function lineChart(title, unit) {
  const figure = document.createElement("figure");
  figure.className = "chart-box";
  const caption = document.createElement("figcaption");
  caption.textContent = `${title} (${unit})`;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": `${title} in ${unit}` });
  const legend = document.createElement("p");
  legend.className = "legend";
  figure.append(caption, chart, legend);

  function draw(series, windowMs) {
    const now = Date.now();
    const from = now - windowMs;
    const top = niceTop(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.v))));
    const x = (t) => LEFT + ((t - from) / windowMs) * (W - LEFT - RIGHT);
    const y = (v) => TOP + (1 - v / top) * (H - TOP - BOTTOM);
    const parts = [];
    for (const frac of [0, 0.5, 1]) { // y grid and labels
      const v = top * frac;
      parts.push(svg("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid" }));
      parts.push(svg("text", { x: LEFT - 4, y: y(v) + 3, class: "tick y" }, label(v, unit)));
    }
    for (const frac of [0, 0.5, 1]) { // time axis
      const t = from + windowMs * frac;
      const anchor = frac === 0 ? "start" : frac === 1 ? "end" : "middle";
      parts.push(svg("text", { x: x(t), y: H - 6, class: "tick x", "text-anchor": anchor }, clock(t)));
    }
    parts.push(svg("line", { x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM, class: "axis" }));
    parts.push(svg("line", { x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM, y2: H - BOTTOM, class: "axis" }));
    for (const s of series) {
      const points = s.points.filter((p) => p.t >= from)
        .map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
      parts.push(svg("polyline", { class: s.cls, points }));
    }
    chart.replaceChildren(...parts);
    legend.replaceChildren(...series.map((s) => {
      const span = document.createElement("span");
      span.className = s.cls;
      const last = s.points.at(-1);
      span.textContent = `${s.name}${last ? `: ${label(last.v, unit)}` : ""}`;
      return span;
    }));
  }
  return { figure, draw };
}
