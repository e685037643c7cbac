// The console's only way to the server: the API, with the signed-in
// token. The token lives in this tab's sessionStorage (gone when the tab
// closes) and is sent as a bearer header, never in a URL.

const TOKEN_KEY = "sluice.token";
const ROLE_KEY = "sluice.role";

export function token() { return sessionStorage.getItem(TOKEN_KEY); }
export function role() { return sessionStorage.getItem(ROLE_KEY); }
export function signOut() { sessionStorage.removeItem(TOKEN_KEY); sessionStorage.removeItem(ROLE_KEY); }

/** An API error: its HTTP status, stable code and message. */
export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

function headers(extra = {}) {
  const h = { ...extra };
  const t = token();
  if (t) h.authorization = `Bearer ${t}`;
  return h;
}

async function failure(response) {
  let code = "http_" + response.status, message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) { code = body.error.code; message = body.error.message; }
  } catch (_) { /* not JSON: keep the status line */ }
  return new ApiError(response.status, code, message);
}

/** Calls the API; the JSON answer, or throws an ApiError. */
export async function call(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "content-type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);

/** Signs in with `candidate`: "operator" or "tenant", or throws. */
export async function signIn(candidate) {
  sessionStorage.setItem(TOKEN_KEY, candidate);
  try {
    const me = await get("/api/v1/console/whoami");
    sessionStorage.setItem(ROLE_KEY, me.role);
    return me.role;
  } catch (e) {
    signOut();
    throw e;
  }
}

/** Downloads `path` (with the token) as a file named `name`. */
export async function download(path, name) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw await failure(response);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url; a.download = name;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/**
 * Follows a server-sent event stream at `path` (fetch, so the token goes
 * in a header, which EventSource cannot send). Calls onEvent(name, data)
 * per event; resolves when the stream ends or `signal` aborts it.
 */
export async function stream(path, onEvent, signal) {
  const response = await fetch(path, { headers: headers({ accept: "text/event-stream" }), signal });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message"; const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}
