// The admin pages' calls to the HTTP API: the session cookie authenticates, and every POST
// carries the page's XSRF token in a header, so no other site can make an admin's browser act.

export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export async function api(method, path, body = undefined, xsrf = "") {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-XSRFToken"] = xsrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let answer = null;
  try { answer = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    throw new ApiError(answer?.error?.code ?? `http_${res.status}`, answer?.error?.message ?? res.statusText);
  }
  return answer;
}
