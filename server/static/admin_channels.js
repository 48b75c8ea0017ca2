// Admin · Channels: every channel with subscribers on any process (GET /api/channels, under
// the admin's session), searchable, refreshed every two seconds.
import { api } from "./admin_api.js";
import { el, errorLine } from "./ui.js";

const REFRESH_MS = 2000;
const rows = document.getElementById("channels");
const empty = document.getElementById("empty");
const summary = document.getElementById("summary");
const q = document.getElementById("q");
const fail = errorLine(document.getElementById("error"));
const channelUrl = (name) => `/admin/channels/${encodeURIComponent(name)}`;

let timer = null;

async function refresh() {
  clearTimeout(timer);
  try {
    const query = q.value.trim();
    const { channels } = await api("GET", `/api/channels?q=${encodeURIComponent(query)}`);
    rows.replaceChildren(...channels.map(({ channel, subscribers, processes }) => {
      const tr = el("tr", "", "", { channel });
      const name = el("td");
      const link = el("a", channel);
      link.href = channelUrl(channel);
      name.append(link);
      tr.append(name, el("td", String(subscribers), "num subscribers"), el("td", String(processes), "num"));
      return tr;
    }));
    empty.hidden = channels.length > 0;
    empty.textContent = query ? `No channel with subscribers matches “${query}”.` : "No channel has subscribers right now.";
    const total = channels.reduce((n, c) => n + c.subscribers, 0);
    summary.textContent = `${channels.length} channel${channels.length === 1 ? "" : "s"}, ${total} subscriber${total === 1 ? "" : "s"} · updated ${new Date().toLocaleTimeString()}`;
    document.getElementById("error").hidden = true;
  } catch (err) {
    fail(err);
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

let typing = null;
q.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refresh, 200); });
document.getElementById("search").addEventListener("submit", (ev) => { ev.preventDefault(); refresh(); });
document.getElementById("open").addEventListener("submit", (ev) => {
  ev.preventDefault();
  location.assign(channelUrl(document.getElementById("name").value.trim()));
});
refresh();
