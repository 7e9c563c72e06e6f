// The page's views. Each is `async (root, params, session) => cleanup`: it draws into
// `root` and returns what stops its timers and streams when the view is left.

import { api, explain, ApiError } from "./api.js";
import { formatNumber, seconds } from "./aggregate.js";
import { TimeChart, recordSeries } from "./charts.js";
import { el, onceAFrame } from "./dom.js";
import { PipelineFeed } from "./feed.js";
import { sinksPanel } from "./sinks.js";
import { sourceState } from "./source.js";
import { Staleness, statusPill as status } from "./stale.js";
import { recordsTable } from "./widgets.js";
import { formatIso } from "./zone.js";

const NUMERIC = new Set(["int", "double"]);
const REFRESH_MS = 2000;

export function link(href, text, attributes = {}) { return el("a", { href, "data-link": true, ...attributes }, text); }
export function liveState(feed) {
  const node = el("span", { class: "live-state", "data-state": feed.state }, feed.state);
  feed.subscribe((kind, detail) => {
    if (kind !== "state") return;
    node.className = `live-state ${detail.state}`;
    node.dataset.state = detail.state;
    node.textContent = detail.detail ? `${detail.state}: ${detail.detail}` : detail.state;
  });
  return node;
}

export function errorBox(err) {
  const problems = err instanceof ApiError && err.problems.length
    ? el("ul", { class: "problems" }, ...err.problems.map((p) => el("li", {}, `${p.path}: ${p.message}`))) : null;
  const summary = problems ? `${err.problems.length === 1 ? "One problem" : `${err.problems.length} problems`}:` : explain(err);
  return el("div", { class: "card error", "data-status": err instanceof ApiError ? String(err.status) : "" },
            summary, problems);
}

// -- overview: every pipeline ---------------------------------------------------------------

// Totals since each pipeline was created (`counters.totals`, kept across restarts); records/s
// from their change between two polls.
const TOTALS_NOTE = "Records, stored and dead are totals since each pipeline was created; they go on across restarts.";
const HEADS = [["pipeline"], ["status"], ["records/s", "num"], ["last record"],
  ["records", "num", "every record taken since the pipeline was created (its last seq)"],
  ["stored", "num", "records stored in the lake (its stored seq)"],
  ["dead", "num", "records dead-lettered since the pipeline was created"], ["restarts", "num"], ["last error"]];

function totalsOf(p) {
  const counters = p.counters || {};
  return counters.totals || { records: counters.last_seq, stored: counters.stored_seq, dead: counters.dead, from_seq: 0 };
}

export async function overview(root) {
  const rows = el("tbody");
  const table = el("table", { id: "pipelines" }, el("thead", {}, el("tr", {},
    ...HEADS.map(([h, cls, title]) => el("th", { class: cls || null, title: title || null }, h)))), rows);
  const message = el("p", { class: "muted" }, "Loading…");
  const stale = new Staleness(root);
  root.replaceChildren(stale.banner, el("div", { class: "toolbar" }, el("h1", {}, "Pipelines")), message,
                       el("div", { class: "table-wrap" }, table), el("p", { class: "muted", id: "totals-note" }, TOTALS_NOTE));
  const previous = new Map();   // id -> {records, at, rate}
  const lastTimes = new Map();  // id -> {seq, time}

  async function refresh() {
    let pipelines;
    try {
      pipelines = (await api("GET", "/v1/pipelines")).pipelines;
    } catch (err) {
      if (!stale.failed(err)) message.replaceChildren(errorBox(err));
      return;
    }
    stale.answered();
    message.textContent = pipelines.length ? "" : "No pipelines yet: deploy one with dash-ray deploy spec.yaml.";
    await Promise.all(pipelines.map(async (p) => {
      const seq = (p.counters || {}).last_seq;
      const known = lastTimes.get(p.id);
      if (!seq || (known && known.seq === seq)) return;
      try {
        const [newest] = (await api("GET", `/v1/pipelines/${p.id}/records`, { params: { limit: 1 } })).records;
        lastTimes.set(p.id, { seq, time: newest ? newest.time : null });
      } catch { /* the pipeline may be restarting; try again next round */ }
    }));
    rows.replaceChildren(...pipelines.map((p) => {
      const totals = totalsOf(p);
      const at = Date.parse(p.counters_at || "") || Date.now();
      const before = previous.get(p.id);
      let rate = before ? before.rate : null;
      if (before && at > before.at && totals.records !== undefined) {
        rate = Math.max(0, (totals.records - before.records) / ((at - before.at) / 1000));
      }
      if (totals.records !== undefined && (!before || at > before.at)) previous.set(p.id, { records: totals.records, at, rate });
      const last = lastTimes.get(p.id);
      const partly = totals.from_seq ? `counted from seq ${totals.from_seq} (kept since then)` : null;
      return el("tr", { "data-pipeline": p.id },
        el("td", {}, link(`/pipelines/${p.id}`, p.id)), el("td", {}, status(p.status)),
        el("td", { class: "num rate" }, rate === null ? "–" : formatNumber(Math.round(rate * 10) / 10)),
        el("td", {}, last && last.time ? formatIso(last.time) : "–"),
        el("td", { class: "num records" }, formatNumber(totals.records ?? null)),
        el("td", { class: "num stored" }, formatNumber(totals.stored ?? null)),
        el("td", { class: "num dead", title: partly }, formatNumber(totals.dead ?? null)),
        el("td", { class: "num" }, String(p.restarts)),
        el("td", { class: "error" }, p.last_error || ""));
    }));
  }

  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => { clearInterval(timer); stale.answered(); };  // the next view starts unmarked
}

// -- one pipeline, live -----------------------------------------------------------------------

export async function pipelineView(root, [pipelineId], session) {
  const windowS = seconds(new URLSearchParams(location.search).get("window") || "15m") || 900;
  let pipeline;
  try {
    pipeline = await api("GET", `/v1/pipelines/${encodeURIComponent(pipelineId)}`);
  } catch (err) {
    root.replaceChildren(errorBox(err));
    return () => {};
  }
  const fields = Object.entries(pipeline.spec.mapping.fields || {});
  const numeric = fields.filter(([name, f]) => NUMERIC.has(f.type) && name !== "time").map(([name]) => name);
  const strings = fields.filter(([, f]) => f.type === "string").map(([name]) => name);
  const columns = fields.map(([name]) => name).filter((name) => name !== "time");
  const query = new URLSearchParams(location.search);
  const by = strings.includes(query.get("by")) ? query.get("by") : null;
  const feed = new PipelineFeed(pipeline, { windowS });
  const source = sourceState(pipeline);
  const charts = el("div", { class: "grid" });
  const tableBox = el("div", { class: "table-wrap", id: "records" });
  const reload = (key, value) => {
    const url = new URL(location.href);
    if (value) url.searchParams.set(key, value); else url.searchParams.delete(key);
    session.go(url.pathname + url.search);
  };
  const windows = el("select", { id: "window", onchange: (e) => reload("window", e.target.value) },
    ...["5m", "15m", "1h", "6h", "1d"].map((w) => el("option", { value: w, selected: seconds(w) === windowS }, w)));
  const split = el("select", { id: "split", onchange: (e) => reload("by", e.target.value) },
    el("option", { value: "" }, "one series"), ...strings.map((f) => el("option", { value: f, selected: f === by }, `by ${f}`)));
  const stale = new Staleness(root);
  const pill = el("span", { id: "pipeline-status" }, status(pipeline.status));
  root.replaceChildren(stale.banner,
    el("div", { class: "toolbar" }, el("h1", {}, pipeline.spec.name || pipeline.id), pill,
       liveState(feed), el("label", {}, "window ", windows), strings.length ? el("label", {}, "split ", split) : ""),
    pipeline.spec.description ? el("p", { class: "muted" }, pipeline.spec.description) : "",
    source.node, charts, el("h2", {}, "Newest records"), tableBox);
  const sinks = (pipeline.spec.sinks || []).length ? sinksPanel(pipeline.id) : null;
  if (sinks) root.append(sinks.node);
  const bounds = () => [Date.now() - windowS * 1000, Date.now()];
  const plots = numeric.map((name) => {
    const target = el("div", { class: "chart", "data-field": name });
    charts.append(el("section", { class: "widget" }, el("h2", {}, name), target));
    return [name, new TimeChart(target, { bounds })];
  });
  if (!numeric.length) charts.append(el("p", { class: "muted" }, "No numeric fields to chart."));
  const draw = onceAFrame(() => {
    const recent = feed.inWindow(windowS);
    for (const [name, chart] of plots) {
      const { xs, series } = recordSeries(recent, [name], by);
      chart.set(xs, series.length ? series : [{ label: name, values: xs.map(() => undefined) }]);
    }
    tableBox.replaceChildren(recordsTable(feed.records, columns, 30));
  });
  feed.subscribe((kind) => { if (kind === "records" || kind === "gap") draw(); });
  await feed.start();
  window.dashDebug = { feed, stream: feed.stream };
  const tick = setInterval(draw, 5000);  // the window slides even when nothing arrives
  const poll = setInterval(async () => {  // its status, and whether the platform answers at all
    try {
      const now = await api("GET", `/v1/pipelines/${encodeURIComponent(pipelineId)}`);
      stale.answered();
      pill.replaceChildren(status(now.status));
    } catch (err) { stale.failed(err); }
  }, REFRESH_MS);
  return () => {
    clearInterval(tick); clearInterval(poll); stale.answered(); source.stop(); feed.close(); sinks?.stop();
    for (const [, chart] of plots) chart.destroy();
  };
}

// -- dashboards -------------------------------------------------------------------------------

export async function dashboardList(root) {
  let dashboards;
  try {
    dashboards = (await api("GET", "/v1/dashboards")).dashboards;
  } catch (err) {
    root.replaceChildren(errorBox(err));
    return () => {};
  }
  const list = el("ul", { id: "dashboards" }, ...dashboards.map((d) => el("li", { "data-dashboard": d.id },
    link(`/dashboards/${d.id}`, d.title), " ", el("span", { class: "muted" }, `${d.id} · ${d.widgets.length} widgets`))));
  root.replaceChildren(
    el("div", { class: "toolbar" }, el("h1", {}, "Dashboards"),
       link("/new/dashboard", "New dashboard", { class: "button primary admin-only", id: "new-dashboard" })),
    dashboards.length ? list : el("p", { class: "muted" }, "No dashboards yet. Create one here, or deploy a YAML file with dash-ray deploy."));
  return () => {};
}
