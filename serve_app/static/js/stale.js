// What the page shows of the platform's state, marked stale while the platform does not answer:
// a poll that fails to reach it (network error) or gets a 5xx shows a banner "Stale since
// HH:MM:SS — reconnecting", greys every status pill in the view and says what it last was
// ("last seen running"); the next answer clears it. Other errors (403, 404, 422) are answers.

import { ApiError } from "./api.js";
import { el } from "./dom.js";
import { formatTime } from "./zone.js";

export function unreachable(err) {
  return err instanceof ApiError ? err.status === 0 || err.status >= 500 : err instanceof TypeError;
}

export function statusPill(value) {
  return el("span", { class: `status ${value}`, "data-status": value }, value);
}

export class Staleness {
  // `scope`: the element whose status pills go grey while stale.
  constructor(scope) {
    this.scope = scope;
    this.since = null;
    this.banner = el("div", { class: "stale-banner", id: "stale", role: "status", hidden: true });
  }

  // A poll failed: whether it was the platform not answering (then the view is marked stale).
  failed(err) {
    if (!unreachable(err)) return false;
    if (this.since === null) this.since = Date.now();
    this.banner.textContent = `Stale since ${formatTime(this.since).slice(11)} — reconnecting (${err.message})`;
    this.banner.hidden = false;
    this.scope.classList.add("stale");
    for (const pill of this.scope.querySelectorAll(".status[data-status]")) {
      pill.textContent = `last seen ${pill.dataset.status}`;
      pill.title = `as of ${formatTime(this.since)}; the platform does not answer`;
    }
    return true;
  }

  // The platform answered: the view shows its state again.
  answered() {
    if (this.since === null) return;
    this.since = null;
    this.banner.hidden = true;
    this.scope.classList.remove("stale");
    for (const pill of this.scope.querySelectorAll(".status[data-status]")) {
      pill.textContent = pill.dataset.status;
      pill.removeAttribute("title");
    }
  }
}
