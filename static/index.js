// The minimal live page: one channel, its messages, a composer and the connection state.
import { Switchboard } from "./switchboard.js";

const section = document.querySelector(".channel");
const channel = section.dataset.channel;
const list = document.getElementById("messages");
const stateEl = document.getElementById("state");
const errorEl = document.getElementById("error");

function show(pub) {
  const li = document.createElement("li");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = pub.info?.user ?? pub.info?.client ?? "server";
  const text = document.createElement("span");
  text.textContent = typeof pub.data?.text === "string" ? pub.data.text : JSON.stringify(pub.data);
  li.dataset.offset = pub.offset;
  li.append(who, text);
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function fail(err) {
  errorEl.hidden = false;
  errorEl.textContent = `${err.code ?? "error"}: ${err.message}`;
}

const sb = new Switchboard("/ws");
sb.on("state", (s) => { stateEl.dataset.state = s; stateEl.textContent = s; });
sb.on("error", fail);

document.getElementById("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = document.getElementById("text");
  try {
    await sb.publish(channel, { text: input.value });
    input.value = "";
  } catch (err) { fail(err); }
});

try {
  await sb.connect();
  await sb.subscribe(channel, show);
} catch (err) { fail(err); }
