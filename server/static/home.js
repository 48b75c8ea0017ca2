// Home: the channels this server knows of with live subscriber counts, from the sys:channels
// feed (counted with presence_stats on the server), and a box to open any channel.
import { Switchboard } from "./switchboard.js";
import { el, errorLine, showState } from "./ui.js";

const feed = document.querySelector(".home").dataset.feed;
const list = document.getElementById("channels");

const channelUrl = (name) => `/channels/${encodeURIComponent(name)}`;

function render({ data }) {
  const items = data.channels.map(({ channel, subscribers }) => {
    const li = el("li", "", "", { channel });
    const link = el("a", channel);
    link.href = channelUrl(channel);
    li.append(link, el("span", `${subscribers} here`, "count"));
    return li;
  });
  list.replaceChildren(...(items.length ? items : [el("li", "No channels yet: open one below.", "empty")]));
}

document.getElementById("open").addEventListener("submit", (ev) => {
  ev.preventDefault();
  location.assign(channelUrl(document.getElementById("name").value.trim()));
});

const sb = new Switchboard("/ws");
const fail = errorLine(document.getElementById("error"), sb);
showState(sb, document.getElementById("state"));
sb.on("error", fail);
sb.connect().catch(fail);
sb.subscribe(feed, render).catch(fail);
