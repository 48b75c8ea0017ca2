// What every live page shares: making elements from data (never HTML), the connection badge
// with its "Reconnect now" button, error lines, times. Data goes in with textContent only, so
// nothing a user typed is ever markup.

/** A new element with `text` as its text and optional class and data attributes. */
export function el(tag, text = "", className = "", data = {}) {
  const node = document.createElement(tag);
  if (text) node.textContent = text;
  if (className) node.className = className;
  Object.assign(node.dataset, data);
  return node;
}

/** Keep the #state badge saying "connected", "reconnecting in N s" or "offline", and offer
 *  `button` ("Reconnect now") whenever the page has lost its connection. */
export function showState(sb, badge, button = document.getElementById("reconnect")) {
  let countdown = null;
  const render = (state, until) => {
    badge.dataset.state = state;
    if (state === "disconnected") badge.textContent = "offline";
    else if (state !== "connected" && until > Date.now()) {
      badge.textContent = `${state} in ${Math.ceil((until - Date.now()) / 1000)} s`;
    } else badge.textContent = state === "connected" ? "connected" : `${state}…`;
  };
  sb.on("state", (state, info = {}) => {
    clearInterval(countdown);
    const until = Date.now() + (info.retryInMs || 0);
    render(state, until);
    if (info.retryInMs > 1000) countdown = setInterval(() => render(state, until), 250);
    // Hidden only while connected and during the first connect: once the connection is lost it
    // stays offered, also while an attempt is under way (a browser may hold one for seconds).
    if (button) button.hidden = state === "connected" || (state === "connecting" && !info.retryInMs);
  });
  button?.addEventListener("click", () => {
    button.hidden = true;
    // Waiting to retry: retry at once. Given up (e.g. signed out elsewhere): start again.
    if (sb.state === "disconnected") sb.connect().catch(() => {});
    else sb.check();
  });
}

/** Show errors in `line` (a hidden <p>): what the server said, code first. With `sb`, the
 *  line clears when the connection is back, so a stale error does not linger. */
export function errorLine(line, sb = null) {
  sb?.on("state", (state) => { if (state === "connected") { line.hidden = true; line.textContent = ""; } });
  return (err) => {
    line.hidden = false;
    line.textContent = `${err.code ?? "error"}: ${err.message}`;
  };
}

/** A publication's time as a <time>: "14:05" today, "3 Mar 14:05" otherwise. */
export function timeOf(ts) {
  const when = new Date(ts);
  const today = new Date().toDateString() === when.toDateString();
  const hm = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const node = el("time", today ? hm : `${when.toLocaleDateString([], { day: "numeric", month: "short" })} ${hm}`);
  node.dateTime = when.toISOString();
  node.title = when.toLocaleString();
  return node;
}

/** The name to show for a publication's author. */
export function authorOf(pub) {
  if (!pub.info) return "server";
  return pub.info.name || pub.info.user || "anonymous";
}
