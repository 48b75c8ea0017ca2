// A channel's live page: recent history, then live messages exactly once, who is here, a
// composer. History and the subscription meet without a gap: the subscription starts `since`
// the position the history ended at. Messages typed while disconnected wait, shown as pending,
// and go out in order once connected again.
import { Switchboard } from "./switchboard.js";
import { authorOf, el, errorLine, showState, timeOf } from "./ui.js";

const HISTORY = 50;
const section = document.querySelector(".channel");
const channel = section.dataset.channel;
const withPresence = section.dataset.presence === "yes";
const messages = document.getElementById("messages");
const people = document.getElementById("presence");
const notice = document.getElementById("notice");
const composer = document.getElementById("composer");
const input = document.getElementById("text");
const clients = new Map(); // client id -> { user, name }, from presence and join/leave
const pending = []; // { data, row } typed while not connected, oldest first

const sb = new Switchboard("/ws");
const fail = errorLine(document.getElementById("error"), sb);
showState(sb, document.getElementById("state"));
sb.on("error", fail);

function emptyState() {
  if (!messages.querySelector("li:not(.empty)")) {
    messages.replaceChildren(el("li", "No messages yet. Say hello!", "empty"));
  }
}

function row(who, text, ts, extra = {}) {
  const li = el("li", "", "", extra);
  const head = el("span", "", "meta");
  head.append(el("span", who, "who"), ts ? timeOf(ts) : el("span", "pending…", "when"));
  li.append(head, el("span", text, "text"));
  return li;
}

function textOf(data) {
  return typeof data?.text === "string" ? data.text : JSON.stringify(data);
}

function show(pub) {
  messages.querySelector("li.empty")?.remove();
  const li = row(authorOf(pub), textOf(pub.data), pub.ts, { offset: pub.offset });
  messages.insertBefore(li, messages.querySelector("li.pending")); // pending ones stay last
  messages.scrollTop = messages.scrollHeight;
}

// -- presence: one line per person, however many tabs they have open --------------------------

function renderPresence() {
  if (!withPresence) return;
  const people_ = new Map(); // user (or client id for anonymous ones) -> { name, tabs }
  for (const [client, { user, name }] of clients) {
    const key = user ? `u:${user}` : `c:${client}`;
    const entry = people_.get(key) ?? { user, name: name ?? user ?? "anonymous", tabs: 0 };
    entry.tabs += 1;
    people_.set(key, entry);
  }
  const rows = [...people_.values()]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map(({ user, name, tabs }) => {
      const li = el("li", name, "", { user: user ?? "" });
      if (tabs > 1) li.append(el("span", ` · ${tabs} tabs`, "muted"));
      return li;
    });
  people.replaceChildren(...(rows.length ? rows : [el("li", "Nobody here yet.", "empty")]));
}

async function refreshPresence() {
  if (!withPresence) return;
  const { clients: found } = await sb.presence(channel);
  clients.clear();
  for (const [client, info] of Object.entries(found)) clients.set(client, info);
  renderPresence();
}

function someoneJoined({ client, user }) {
  if (!clients.has(client)) clients.set(client, { user, name: null });
  renderPresence();
  refreshPresence().catch(() => {}); // for the display name
}

function someoneLeft({ client }) {
  clients.delete(client);
  renderPresence();
}

function recovered({ recovered: complete }) {
  notice.hidden = complete;
  notice.textContent = complete ? "" : "Some messages sent while you were away could not be recovered.";
  refreshPresence().catch(() => {});
}

// -- sending, and keeping what was typed while disconnected --------------------------------

async function send(data, row_) {
  try {
    await sb.publish(channel, data);
    row_?.remove();
    return true;
  } catch (err) {
    if (err.code === "unavailable") return false; // not connected after all: keep it pending
    row_?.remove();
    fail(err);
    return true;
  }
}

async function flushPending() {
  while (pending.length && sb.state === "connected") {
    const next = pending[0];
    if (!(await send(next.data, next.row))) return;
    pending.shift();
  }
  emptyState();
}

composer?.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const data = { text: input.value };
  input.value = "";
  if (sb.state === "connected" && !pending.length && (await send(data, null))) return;
  messages.querySelector("li.empty")?.remove();
  const waiting = row("you", data.text, null, { pending: "yes" });
  waiting.classList.add("pending");
  waiting.title = "Sent when the connection is back";
  messages.append(waiting);
  pending.push({ data, row: waiting });
  messages.scrollTop = messages.scrollHeight;
  flushPending();
});

// -- joining ------------------------------------------------------------------------------

let subscription = null; // the subscription, once asked for: it then survives reconnects by itself

/** History, then the subscription from where it ended. Runs on every connect until the
 *  subscription was asked for, so a connection lost half-way through just tries again. */
async function join() {
  let since;
  try {
    const recent = await sb.history(channel, { limit: HISTORY, reverse: true });
    if (subscription) return;
    messages.querySelectorAll("li:not(.pending)").forEach((li) => li.remove());
    recent.publications.reverse().forEach(show);
    since = { offset: recent.offset, epoch: recent.epoch };
  } catch (err) {
    if (err.code === "unavailable") return; // the next connect tries again
    if (err.code !== "disabled") throw err; // no history here: just go live
  }
  if (subscription) return;
  subscription = sb.subscribe(channel, show, { since, onJoin: someoneJoined, onLeave: someoneLeft, onRecovery: recovered });
  await subscription;
  emptyState();
  await refreshPresence().catch((err) => { if (err.code !== "disabled") throw err; });
}

sb.on("state", (state) => {
  if (state !== "connected") return;
  if (!subscription) join().catch(fail);
  setTimeout(flushPending, 0); // after the library's resubscribe, which is sent first

});
sb.connect().catch(fail);
