// The API as the page uses it: the token kept in this browser's local storage (sign in once
// per browser, until "Sign out" or until the token is revoked: any 401 signs the page out),
// fetch with the bearer token (never in a URL), and errors as ApiError carrying the server's
// {"error": {...}} body.

const TOKEN_KEY = "dash.token";

export function token() { return localStorage.getItem(TOKEN_KEY); }
export function setToken(value) { localStorage.setItem(TOKEN_KEY, value); }
export function forgetToken() { localStorage.removeItem(TOKEN_KEY); sessionStorage.removeItem(TOKEN_KEY); }

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
  const headers = { ...(extra || {}), authorization: `Bearer ${token() || ""}` };
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
    response = await fetch(url, { method, headers, body: payload });
  } catch (exc) {
    throw new ApiError(0, { error: { message: `cannot reach Dash: ${exc.message}` } });
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (response.status === 401) window.dispatchEvent(new CustomEvent("dash:signed-out"));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// A single-use ticket for one live socket (30 s), so the token stays out of its URL.
export async function liveTicket() {
  return (await api("POST", "/v1/live-tickets")).ticket;
}

export async function whoami() {
  return (await api("GET", "/v1/whoami")).scope;
}

// What to tell a person about an error, in one sentence.
export function explain(err) {
  if (!(err instanceof ApiError)) return String(err && err.message || err);
  if (err.status === 403) return `This token cannot do that: ${err.message}. Ask for an admin token to make changes.`;
  if (err.status === 401) return "The token is unknown or revoked; sign in again.";
  if (err.status === 404) return err.message;
  if (err.status === 412) return err.message;
  if (err.type === "MalformedBodyError" && err.where === "body") {
    return `The definition could not be read: ${err.message.replace(/^body is not valid (YAML|JSON):\s*/, "")}. `
      + "Check the indentation and the punctuation there.";
  }
  if (err.status === 0) return err.message;
  return err.message;
}
