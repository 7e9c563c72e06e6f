// The page's entry: sign in once per browser (a page session: an HttpOnly cookie this script
// never sees), then route by path.

import { ApiError, signIn as openSession, signOut as endSession, whoami } from "./api.js";
import { dashboardView } from "./dashboard.js";
import { dashboardEditor } from "./editor.js";
import { dashboardList, overview, pipelineView, errorBox } from "./views.js";
import { setZone, zone, zoneLabel } from "./zone.js";

const ROUTES = [
  [/^\/$/, overview],
  [/^\/pipelines\/([a-z][a-z0-9-]*)$/, pipelineView],
  [/^\/dashboards$/, dashboardList],
  [/^\/new\/dashboard$/, dashboardEditor],
  [/^\/dashboards\/([a-z][a-z0-9-]*)\/edit$/, dashboardEditor],
  [/^\/dashboards\/([a-z][a-z0-9-]*)$/, dashboardView],
];

const view = document.getElementById("view");
// `leaving`: a view's question before it is left (unsaved changes), or null.
const session = { scope: null, go, cleanup: () => {}, leaving: null };

function go(path) {
  if (session.leaving && !session.leaving()) return;
  history.pushState(null, "", path);
  render();
}

async function render() {
  delete document.body.dataset.ready;  // set again once this view has drawn
  session.cleanup();
  session.cleanup = () => {};
  if (!session.scope) {
    showLogin();
    return;
  }
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.getAttribute("href") === "/" ? location.pathname === "/" || location.pathname.startsWith("/pipelines")
                                                                  : location.pathname.startsWith("/dashboards"));
  }
  const route = ROUTES.find(([pattern]) => pattern.test(location.pathname));
  if (!route) {
    view.replaceChildren(errorBox(new Error(`nothing at ${location.pathname}`)));
    return;
  }
  const params = route[0].exec(location.pathname).slice(1);
  const path = location.pathname;
  session.path = location.pathname + location.search;
  try {
    const cleanup = await route[1](view, params, session);
    if (location.pathname === path) session.cleanup = cleanup; else cleanup();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { signOut(); return; }
    view.replaceChildren(errorBox(err));
  }
  document.body.dataset.ready = path;
}

function showSignedIn() {
  document.body.classList.toggle("scope-read", session.scope !== "admin");
  document.body.classList.toggle("scope-admin", session.scope === "admin");
  const who = document.getElementById("who");
  who.textContent = `${session.scope} token`;
  who.hidden = false;
  document.getElementById("forget").hidden = false;
}

async function signOut() {
  try { await endSession(); } catch { /* signed out already, or unreachable: the page asks again anyway */ }
  session.scope = null;
  document.getElementById("who").hidden = true;
  document.getElementById("forget").hidden = true;
  render();
}

function showLogin(message) {
  const form = document.getElementById("login-template").content.cloneNode(true);
  view.replaceChildren(form);
  const error = document.getElementById("login-error");
  if (message) { error.textContent = message; error.hidden = false; }
  document.getElementById("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    const value = input.value.trim();
    input.value = "";  // the token is in this page's memory no longer than the request
    try {
      await openSession(value);
    } catch (err) {
      showLogin(err instanceof ApiError && err.status === 401 ? "That token is unknown or revoked." : err.message);
      return;
    }
    if (await signIn()) render();
  });
  document.body.dataset.ready = "login";
}

// Whether this browser is signed in (its session cookie is good); shows the sign-in form,
// with `message` (or why not), when it is not.
async function signIn(message) {
  try {
    session.scope = (await whoami()).scope;
  } catch (err) {
    session.scope = null;
    showLogin(err instanceof ApiError && err.status === 401 ? message : err.message);
    return false;
  }
  showSignedIn();
  return true;
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-link]");
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey || a.target) return;
  event.preventDefault();
  go(a.getAttribute("href"));
});
window.addEventListener("popstate", () => {
  if (session.leaving && !session.leaving()) { history.pushState(null, "", session.path); return; }
  render();
});
document.getElementById("forget").addEventListener("click", signOut);
// A 401 from any call (signed out in another tab, the session expired, its token revoked):
// sign in again, saying why.
window.addEventListener("dash:signed-out", () => {
  if (!session.scope) return;
  session.scope = null;
  document.getElementById("who").hidden = true;
  document.getElementById("forget").hidden = true;
  session.cleanup();
  session.cleanup = () => {};
  showLogin("The session has ended (signed out, expired, or its token revoked): sign in again.");
});

// The page's one time zone, shown and switched in the header.
const zoneButton = document.getElementById("zone");
function showZone() {
  zoneButton.textContent = `Times: ${zoneLabel()}`;
  zoneButton.dataset.zone = zone();
}
zoneButton.addEventListener("click", () => { setZone(zone() === "utc" ? "local" : "utc"); showZone(); render(); });
showZone();

// The theme: auto (the system's) -> dark -> light -> auto; charts are drawn again in its colours.
const themeButton = document.getElementById("theme");
const THEMES = ["auto", "dark", "light"];
function showTheme() {
  const theme = localStorage.getItem("dash.theme") || "auto";
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  themeButton.textContent = `Theme: ${theme}`;
  themeButton.dataset.theme = theme;
}
themeButton.addEventListener("click", () => {
  const now = localStorage.getItem("dash.theme") || "auto";
  localStorage.setItem("dash.theme", THEMES[(THEMES.indexOf(now) + 1) % THEMES.length]);
  showTheme();
  render();
});
showTheme();

(async () => {
  if (await signIn()) render();
})();
