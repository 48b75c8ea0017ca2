// Admin · one channel: history then live messages, who is present, and actions through the
// HTTP API under the admin's session: publish, unsubscribe a user, disconnect a user. Each
// action's outcome is confirmed on the page. The WebSocket connects with a token from
// /admin/token that grants this channel whatever its namespace's rules.
import { Switchboard } from "./switchboard.js";
import { api } from "./admin_api.js";
import { authorOf, el, errorLine, showState, timeOf } from "./ui.js";

const HISTORY = 50;
const section = document.querySelector(".admin-channel");
const { channel, xsrf } = section.dataset;
const withHistory = section.dataset.history === "yes";
const withPresence = section.dataset.presence === "yes";
const messages = document.getElementById("messages");
const people = document.getElementById("presence");
const done = document.getElementById("done");

async function token() {
  const res = await fetch(`/admin/token?channel=${encodeURIComponent(channel)}`, { credentials: "same-origin", cache: "no-store" });
  if (!res.ok) throw new Error(`not allowed (${res.status})`);
  return (await res.json()).token;
}

const sb = new Switchboard("/ws", { token });
const fail = errorLine(document.getElementById("error"), sb);
showState(sb, document.getElementById("state"));
sb.on("error", fail);

function confirm(text) {
  done.hidden = false;
  done.textContent = `✓ ${text} (${new Date().toLocaleTimeString()})`;
  document.getElementById("error").hidden = true;
}

function show(pub) {
  messages.querySelector("li.empty")?.remove();
  const li = el("li", "", "", { offset: pub.offset });
  const head = el("span", "", "meta");
  head.append(el("span", authorOf(pub), "who"), timeOf(pub.ts), el("span", `#${pub.offset}`, "muted"));
  const text = typeof pub.data?.text === "string" ? pub.data.text : JSON.stringify(pub.data);
  li.append(head, el("span", text, "text"));
  messages.append(li);
  messages.scrollTop = messages.scrollHeight;
}

// -- presence, with actions per user ------------------------------------------------------

function actionButton(label, cls, run) {
  const b = el("button", label, cls);
  b.type = "button";
  b.addEventListener("click", () => run().catch(fail));
  return b;
}

async function refreshPresence() {
  if (!withPresence) {
    people.replaceChildren(el("li", "Presence is off in this namespace.", "empty"));
    return;
  }
  const { clients } = await sb.presence(channel);
  const byUser = new Map();
  for (const [client, { user, name }] of Object.entries(clients)) {
    const key = user ?? `anonymous:${client}`;
    const entry = byUser.get(key) ?? { user, name: name ?? user ?? "anonymous", tabs: 0 };
    entry.tabs += 1;
    byUser.set(key, entry);
  }
  const me = sb.hello?.user;
  const rows = [...byUser.values()].sort((a, b) => a.name.localeCompare(b.name)).map(({ user, name, tabs }) => {
    const li = el("li", "", "", { user: user ?? "" });
    li.append(el("span", name, "name"));
    if (user) li.append(el("code", user, "muted"));
    if (tabs > 1) li.append(el("span", `${tabs} connections`, "muted"));
    if (user === me) li.append(el("span", "(you, watching)", "muted"));
    else if (user) {
      li.append(
        actionButton("Unsubscribe", "small", () => unsubscribe(user, name)),
        actionButton("Disconnect", "small danger", () => disconnect(user, name)),
      );
    }
    return li;
  });
  people.replaceChildren(...(rows.length ? rows : [el("li", "Nobody is present.", "empty")]));
}

async function unsubscribe(user, name) {
  const { unsubscribed } = await api("POST", "/api/unsubscribe", { user, channel }, xsrf);
  confirm(`Unsubscribed ${name} (${user}) from ${channel}: ${unsubscribed} here, every process told`);
  setTimeout(() => refreshPresence().catch(() => {}), 300);
}

async function disconnect(user, name = user) {
  const { disconnected } = await api("POST", "/api/disconnect", { user }, xsrf);
  confirm(`Disconnected ${name} (${user}): ${disconnected} connection(s) here, every process told`);
  setTimeout(() => refreshPresence().catch(() => {}), 300);
}

// -- forms --------------------------------------------------------------------------------

document.getElementById("publish").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const raw = document.getElementById("data").value.trim();
  let data;
  try { data = JSON.parse(raw); } catch { data = { text: raw }; }
  try {
    const { offset } = await api("POST", "/api/publish", { channel, data }, xsrf);
    document.getElementById("data").value = "";
    confirm(`Published to ${channel} at offset ${offset}`);
  } catch (err) { fail(err); }
});

document.getElementById("disconnect").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = document.getElementById("user");
  try {
    await disconnect(input.value.trim());
    input.value = "";
  } catch (err) { fail(err); }
});

// -- joining ------------------------------------------------------------------------------

let subscription = null;

async function join() {
  let since;
  if (withHistory) {
    const recent = await sb.history(channel, { limit: HISTORY, reverse: true });
    if (subscription) return;
    messages.replaceChildren();
    recent.publications.reverse().forEach(show);
    since = { offset: recent.offset, epoch: recent.epoch };
  }
  if (subscription) return;
  const changed = () => refreshPresence().catch(() => {});
  subscription = sb.subscribe(channel, show, { since, onJoin: changed, onLeave: changed });
  await subscription;
  if (!messages.children.length) messages.append(el("li", "No messages yet.", "empty"));
  await refreshPresence();
}

sb.on("state", (state) => { if (state === "connected" && !subscription) join().catch(fail); });
sb.connect().catch(fail);
