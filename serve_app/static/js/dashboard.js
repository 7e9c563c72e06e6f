// One dashboard: its widgets over one time range (the URL's, else the longest widget window),
// computed by the query API; live ranges re-query every REQUERY_MS and fold the live tail
// in between (drawn at most once a second); an absolute range is drawn once. Dragging on a
// chart zooms (the URL changes), a double-click or "Back to live" returns to live.

import { api } from "./api.js";
import { el } from "./dom.js";
import { lastLive, rangePicker, rememberLive } from "./picker.js";
import { bounds, durationS, isLive, rangeUrl, readRange } from "./range.js";
import { Tail } from "./tail.js";
import { chosenValues, filterFor, variableControls } from "./variables.js";
import { mountWidget } from "./widgets.js";
import { errorBox, liveState, link } from "./views.js";

const REQUERY_MS = 10000;
const DRAW_MS = 1000;
// Records stored this long after their event time are answered by the next query, not lost:
// the anchor lies this far behind now, and the tail covers what follows it.
const STORE_LAG_MS = 3000;

function defaultRange(widgets) {
  const longest = widgets.map((w) => w.window).filter(Boolean).sort((a, b) => durationS(b) - durationS(a))[0];
  return longest || "15m";
}

// The view's range and its helpers, shared by every widget (a `view` for widgets.js).
export function viewOf(range, session, extra = {}) {
  const frozen = isLive(range) ? null : bounds(range);
  return {
    range,
    bounds: () => frozen || bounds(range),
    onZoom: (fromMs, toMs) => session.go(rangeUrl({ fromMs, toMs })),
    onReset: () => session.go(rangeUrl({ relative: lastLive() })),
    ...extra,
  };
}

// Widgets on their pipelines' tails, kept current: returns {refresh, stop}.
export async function runWidgets(widgets, view, tails) {
  let paused = false;
  let timer = null;
  let drawTimer = null;
  const drawAll = () => { drawTimer = null; for (const w of widgets) w.draw(); };
  const scheduleDraw = () => { if (!paused && drawTimer === null) drawTimer = setTimeout(drawAll, DRAW_MS); };
  async function refresh() {
    const anchor = isLive(view.range) ? Date.now() - STORE_LAG_MS : view.bounds()[1];
    await Promise.all(widgets.map((w) => w.load(anchor)));
    for (const tail of tails) tail.trim(anchor - STORE_LAG_MS);
    drawAll();
  }
  for (const tail of tails) tail.subscribe((kind) => { if (kind === "records" || kind === "gap") scheduleDraw(); });
  // The tails connect while the widgets' first queries run: neither waits for the other.
  await Promise.all([...tails.map((tail) => tail.start(Date.now() - 2 * STORE_LAG_MS)), refresh()]);
  if (isLive(view.range)) timer = setInterval(() => { if (!paused) refresh(); }, REQUERY_MS);
  return {
    refresh,
    pause(value) { paused = value; if (!value) refresh(); },
    stop() { clearInterval(timer); clearTimeout(drawTimer); tails.forEach((t) => t.close()); widgets.forEach((w) => w.destroy()); },
  };
}

export async function dashboardView(root, [dashboardId], session) {
  let dashboard;
  try {
    dashboard = await api("GET", `/v1/dashboards/${encodeURIComponent(dashboardId)}`);
  } catch (err) {
    root.replaceChildren(errorBox(err));
    return () => {};
  }
  const range = readRange(location.search, defaultRange(dashboard.widgets));
  rememberLive(range);
  const grid = el("div", { class: "grid", id: "widgets" });
  const states = el("span", { class: "muted live-states" });
  const remove = el("button", { class: "danger admin-only", id: "delete-dashboard", onclick: async () => {
    if (!confirm(`Delete dashboard ${dashboard.id}?`)) return;
    try { await api("DELETE", `/v1/dashboards/${dashboard.id}`); session.go("/dashboards"); }
    catch (err) { root.prepend(errorBox(err)); }
  } }, "Delete");
  const view = viewOf(range, session);
  let running = null;
  const chosen = chosenValues(dashboard.variables || []);
  const variables = await variableControls(dashboard.variables || [], chosen, view.bounds, session.go);
  const picker = rangePicker(range, view.bounds, { go: session.go, onPause: (p) => running && running.pause(p) });
  const shareLink = el("input", { id: "share-link", readonly: true, hidden: true, "aria-label": "link to this view" });
  const share = el("button", { type: "button", id: "share", title: "a link to this dashboard with its range and variables",
                               onclick: () => {
    shareLink.value = location.href;  // the range and the variables are in it; never a token
    shareLink.hidden = false;
    shareLink.select();
    if (navigator.clipboard) navigator.clipboard.writeText(shareLink.value).catch(() => {});
  } }, "Share");
  root.replaceChildren(
    el("div", { class: "toolbar" }, el("h1", { id: "dashboard-title" }, dashboard.title), states, share, shareLink,
       link(`/dashboards/${dashboard.id}/edit`, "Edit", { class: "button admin-only", id: "edit-dashboard" }), remove),
    el("div", { class: "toolbar" }, picker, variables),
    dashboard.description ? el("p", { class: "muted" }, dashboard.description) : "", grid);
  if (!dashboard.widgets.length) {
    grid.replaceWith(el("p", { class: "card empty", id: "empty-dashboard" },
      "This dashboard has no widgets yet. Use Edit to add one: pick a pipeline, then a chart, a number or a table."));
  }
  const pipelines = new Map();
  await Promise.all([...new Set(dashboard.widgets.map((w) => w.pipeline))].map(async (id) => {
    try { pipelines.set(id, await api("GET", `/v1/pipelines/${id}`)); }
    catch (err) { pipelines.set(id, { error: err }); }
  }));
  const tails = new Map();
  if (isLive(range)) {
    for (const [id, p] of pipelines) if (!p.error) tails.set(id, new Tail(p));
  }
  const mounted = [];
  for (const widget of dashboard.widgets) {
    const pipeline = pipelines.get(widget.pipeline);
    if (pipeline.error) {
      grid.append(el("section", { class: "widget" }, el("h2", {}, widget.title || widget.pipeline), errorBox(pipeline.error)));
      continue;
    }
    const filter = filterFor(dashboard.variables || [], chosen, pipeline.spec);
    mounted.push(mountWidget(grid, widget, { spec: pipeline.spec, tail: tails.get(widget.pipeline) || null, view, filter }));
  }
  for (const tail of tails.values()) states.append(el("span", {}, ` ${tail.id}: `), liveState(tail));
  running = await runWidgets(mounted, view, [...tails.values()]);
  performance.mark("dash:drawn");  // every widget has drawn once (benchmarks/dashboard.py reads it)
  window.dashDebug = { tails: [...tails.values()], widgets: mounted };
  return () => running.stop();
}
