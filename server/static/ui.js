// What every live page shares: making elements from data (never HTML), the connection badge,
// error lines. Data goes in with textContent only, so nothing a user typed is ever markup.

/** A new element with `text` as its text and optional class and data attributes. */
export function el(tag, text = "", className = "", data = {}) {
  const node = document.createElement(tag);
  if (text) node.textContent = text;
  if (className) node.className = className;
  Object.assign(node.dataset, data);
  return node;
}

/** Keep the #state badge saying "connected", "reconnecting in N s" or "offline". */
export function showState(sb, badge) {
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
  });
}

/** Show errors in `line` (a hidden <p>): what the server said, code first. */
export function errorLine(line) {
  return (err) => {
    line.hidden = false;
    line.textContent = `${err.code ?? "error"}: ${err.message}`;
  };
}
