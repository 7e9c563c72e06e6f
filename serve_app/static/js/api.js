// The API as the page uses it. Signing in trades the token for a page session once per
// browser (POST /v1/session): an HttpOnly cookie the page's scripts never see, sent with every
// fetch and live socket of this origin, so no token is kept in local storage, in a URL or in
// the console. Any 401 (signed out in another tab, session expired, token revoked) signs the
// page out. Errors are ApiError carrying the server's {"error": {...}} body.

// Where earlier versions of the page kept the token: dropped on load, once.
const OLD_TOKEN_KEY = "dash.token";
localStorage.removeItem(OLD_TOKEN_KEY);
sessionStorage.removeItem(OLD_TOKEN_KEY);

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.type = error.type || null;
    this.where = error.where || null;
    this.problems = error.problems || [];
  }
}

// `body`: an object (sent as JSON) or a string (sent as YAML, which also reads JSON).
export async function api(method, path, { params, body, headers: extra } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null) url.searchParams.set(key, value);
  }
  const headers = { ...(extra || {}) };
  let payload;
  if (typeof body === "string") {
    headers["content-type"] = "application/yaml";
    payload = body;
  } else if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  } catch (exc) {
    throw new ApiError(0, { error: { message: `cannot reach Dash: ${exc.message}` } });
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (response.status === 401) window.dispatchEvent(new CustomEvent("dash:signed-out"));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Sign in: the token goes in this one request's body, never anywhere else; the answer sets
// the session cookie. Throws ApiError (401: the token is unknown or revoked).
export async function signIn(token) {
  await api("POST", "/v1/session", { body: { token } });
}

// Sign out: the session is forgotten by the platform and its cookie dropped.
export async function signOut() {
  await api("DELETE", "/v1/session");
}

// What the page may do: {"scope": "read"|"write"|"admin", "auth": "session"}; 401 when signed out.
export async function whoami() {
  return await api("GET", "/v1/whoami");
}

// A live socket needs no ticket: the session cookie goes with it (the stream opens it
// without `?ticket=` when this gives null). Asked before each connection, so a session that
// ended meanwhile (a 401) ends the stream and signs the page out instead of reconnecting.
export async function liveTicket() {
  await whoami();
  return null;
}

// What to tell a person about an error, in one sentence.
export function explain(err) {
  if (!(err instanceof ApiError)) return String(err && err.message || err);
  if (err.status === 403) return `This token cannot do that: ${err.message}. Ask for an admin token to make changes.`;
  if (err.status === 401) return "The session has ended (signed out, expired, or its token revoked); sign in again.";
  if (err.status === 404) return err.message;
  if (err.status === 412) return err.message;
  if (err.type === "MalformedBodyError" && err.where === "body") {
    return `The definition could not be read: ${err.message.replace(/^body is not valid (YAML|JSON):\s*/, "")}. `
      + "Check the indentation and the punctuation there.";
  }
  if (err.status === 0) return err.message;
  return err.message;
}
