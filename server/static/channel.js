// A channel's live page: recent history, then live messages exactly once, who is here, a
// composer. History and the subscription meet without a gap: the subscription starts `since`
// the position the history ended at.
import { Switchboard } from "./switchboard.js";
import { el, errorLine, showState } from "./ui.js";

const HISTORY = 50;
const channel = document.querySelector(".channel").dataset.channel;
const messages = document.getElementById("messages");
const people = document.getElementById("presence");
const notice = document.getElementById("notice");
const input = document.getElementById("text");
const fail = errorLine(document.getElementById("error"));
const names = new Map(); // user id -> display name, from presence

function show(pub) {
  const who = pub.info ? names.get(pub.info.user) ?? pub.info.user ?? "anonymous" : "server";
  const text = typeof pub.data?.text === "string" ? pub.data.text : JSON.stringify(pub.data);
  const li = el("li", "", "", { offset: pub.offset });
  li.append(el("span", who, "who"), el("span", text, "text"));
  messages.append(li);
  messages.scrollTop = messages.scrollHeight;
}

function person(client, user, name) {
  return el("li", name ?? user ?? "anonymous", "", { client, user: user ?? "" });
}

async function refreshPresence() {
  const { clients } = await sb.presence(channel);
  const rows = Object.entries(clients).map(([client, { user, name }]) => {
    if (user && name) names.set(user, name);
    return person(client, user, name);
  });
  people.replaceChildren(...rows);
}

function someoneJoined({ client, user }) {
  if (!people.querySelector(`[data-client="${CSS.escape(client)}"]`)) {
    people.append(person(client, user, names.get(user)));
  }
  refreshPresence().catch(() => {}); // only for the display name
}

function someoneLeft({ client }) {
  people.querySelector(`[data-client="${CSS.escape(client)}"]`)?.remove();
}

function recovered({ recovered: complete }) {
  notice.hidden = complete;
  notice.textContent = complete ? "" : "Some messages sent while you were away could not be recovered.";
  refreshPresence().catch(() => {});
}

const sb = new Switchboard("/ws");
showState(sb, document.getElementById("state"));
sb.on("error", fail);

document.getElementById("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await sb.publish(channel, { text: input.value });
    input.value = "";
  } catch (err) { fail(err); }
});

let subscription = null; // the subscription, once asked for: it then survives reconnects by itself

/** History, then the subscription from where it ended. Runs on every connect until the
 *  subscription was asked for, so a connection lost half-way through just tries again. */
async function join() {
  let since;
  try {
    const recent = await sb.history(channel, { limit: HISTORY, reverse: true });
    if (subscription) return;
    messages.replaceChildren();
    recent.publications.reverse().forEach(show);
    since = { offset: recent.offset, epoch: recent.epoch };
  } catch (err) {
    if (err.code === "unavailable") return; // the next connect tries again
    if (err.code !== "disabled") throw err; // no history here: just go live
  }
  if (subscription) return;
  subscription = sb.subscribe(channel, show, { since, onJoin: someoneJoined, onLeave: someoneLeft, onRecovery: recovered });
  await subscription;
  await refreshPresence().catch((err) => { if (err.code !== "disabled") throw err; });
}

sb.on("state", (state) => { if (state === "connected" && !subscription) join().catch(fail); });
sb.connect().catch(fail);
