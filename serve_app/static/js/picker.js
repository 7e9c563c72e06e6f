// The time range control of a view: relative ranges (5m … 90d, live), an absolute from/to
// in the page's time zone, pause/resume of live updates and "back to live". It changes the
// URL (`range.js`) through `go(url)`; pausing is `onPause(paused)`.

import { el } from "./dom.js";
import { RELATIVE, rangeUrl } from "./range.js";
import { formatTime, zone } from "./zone.js";

// A time (epoch ms) as a datetime-local value in the page's zone, and back.
function toInput(ms) { return formatTime(ms, "minute").replace(" ", "T"); }
function fromInput(value) {
  if (!value) return NaN;
  return zone() === "utc" ? Date.parse(`${value}:00Z`) : Date.parse(value);
}

// The relative range to go back to after a zoom: the last one this tab showed.
export function rememberLive(range) { if (range.relative) sessionStorage.setItem("dash.live", range.relative); }
export function lastLive() { return sessionStorage.getItem("dash.live") || "15m"; }

export function rangePicker(range, bounds, { go, onPause }) {
  const [fromMs, toMs] = bounds();
  const select = el("select", { id: "range", "aria-label": "time range", onchange: () => {
    if (select.value !== "custom") go(rangeUrl({ relative: select.value }));
    custom.hidden = select.value !== "custom";
  } }, ...RELATIVE.map((r) => el("option", { value: r, selected: r === range.relative }, `last ${r}`)),
    el("option", { value: "custom", selected: !range.relative }, "from … to"));
  const from = el("input", { type: "datetime-local", id: "range-from", value: toInput(fromMs), "aria-label": "from" });
  const to = el("input", { type: "datetime-local", id: "range-to", value: toInput(toMs), "aria-label": "to" });
  const error = el("span", { class: "error", id: "range-error" });
  const custom = el("form", { class: "range-custom", hidden: Boolean(range.relative), onsubmit: (event) => {
    event.preventDefault();
    const a = fromInput(from.value);
    const b = fromInput(to.value);
    if (Number.isNaN(a) || Number.isNaN(b) || b <= a) { error.textContent = "from must be before to"; return; }
    go(rangeUrl({ fromMs: a, toMs: b }));
  } }, from, "→", to, el("button", { type: "submit", id: "range-apply" }, "Apply"), error);
  let paused = false;
  const pause = el("button", { type: "button", id: "pause", hidden: !range.relative, onclick: () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    onPause(paused);
  } }, "Pause");
  const back = el("button", { type: "button", id: "back-to-live", hidden: Boolean(range.relative),
                              onclick: () => go(rangeUrl({ relative: lastLive() })) }, "Back to live");
  return el("div", { class: "range-picker" }, select, custom, pause, back);
}
