// The widgets of a dashboard (line, stat, table, bar), each computed by the query API over the
// view's range: aggregates (per bucket sized to the chart's width for a line), or the newest
// raw rows for a table, never by loading rows to aggregate here. The live tail (tail.js)
// folds into them between two queries (fold.js). `load(anchorMs)` asks the API for what is
// before the anchor; `draw()` draws that and the tail after it.

import { formatNumber, parseAgg } from "./aggregate.js";
import { api } from "./api.js";
import { bucketFor, bucketGrid, bucketText } from "./buckets.js";
import { TimeChart, breakGaps, numberOr } from "./charts.js";
import { download, toCsv } from "./csv.js";
import { el } from "./dom.js";
import { byKey, combined, groupRecords, serverAggs } from "./fold.js";
import { applySize, chartHeight } from "./layout.js";
import { recordOf, timeMs } from "./feed.js";
import { durationS } from "./range.js";
import { formatIso } from "./zone.js";

const MAX_SERIES = 12;
const TABLE_FIRST_MS = 15 * 60 * 1000;

export function recordsTable(records, columns, limit) {
  const newest = records.slice(-limit).reverse();
  // A column of numbers has its header on the right, over them.
  const numeric = (c) => typeof (newest.find((r) => r.data[c] !== null && r.data[c] !== undefined) || { data: {} }).data[c] === "number";
  return el("table", { class: "records" },
    el("thead", {}, el("tr", {}, el("th", { class: "num" }, "seq"), el("th", {}, "time"),
                       ...columns.map((c) => el("th", { class: numeric(c) ? "num" : null }, c)))),
    el("tbody", {}, ...newest.map((r) => el("tr", { "data-seq": String(r.seq) },
      el("td", { class: "num" }, String(r.seq)), el("td", {}, formatIso(r.time)),
      ...columns.map((c) => cell(r.data[c]))))));
}

function cell(value) {
  if (typeof value === "number") return el("td", { class: "num" }, formatNumber(value));
  if (value === null || value === undefined) return el("td", { class: "muted" }, "–");
  return el("td", {}, typeof value === "object" ? JSON.stringify(value) : String(value));
}

function titleOf(widget) {
  if (widget.title) return widget.title;
  const what = widget.agg || (widget.fields || []).join(", ") || "records";
  return `${what}${widget.by ? ` by ${widget.by}` : ""} · ${widget.pipeline}`;
}

// The aggregates a widget draws: its `agg`, or the average of each of its `fields` per bucket.
function aggsOf(widget) {
  return widget.agg ? [widget.agg] : (widget.fields || []).map((f) => `avg:${f}`);
}

function withUnit(value, unit) {
  return `${formatNumber(value)}${unit && value !== null && value !== undefined ? ` ${unit}` : ""}`;
}

// `view`: {bounds() -> [fromMs, toMs], onZoom, onReset}; `filter`: {param (the query API's
// `filter` or null), keep(record)} of the dashboard's variables; `tail`: the pipeline's Tail or null.
export function mountWidget(container, widget, { spec, tail, view, filter = { param: null, keep: () => true } }) {
  const body = el("div", { class: "widget-body" });
  const note = el("div", { class: "note" });
  const box = el("section", { class: `widget ${widget.kind}${widget.kind === "table" ? " wide" : ""}`,
                              "data-kind": widget.kind, "data-pipeline": widget.pipeline },
    el("div", { class: "widget-head" }, el("h2", {}, titleOf(widget)),
       el("button", { type: "button", class: "small csv", title: "download this widget's data as CSV",
                      onclick: () => download(`${widget.pipeline}-${widget.kind}.csv`, toCsv(...exported.table())) }, "CSV")),
    body, note);
  const exported = { table: () => [["(nothing drawn yet)"], []] };
  applySize(box, widget);
  container.append(box);
  const columns = widget.fields && widget.fields.length ? widget.fields
    : Object.keys((spec && spec.mapping && spec.mapping.fields) || {}).filter((f) => f !== "time");
  const aggs = aggsOf(widget);
  const state = { rows: [], anchorMs: null, bucketS: null, error: null, stale: null };
  let chart = null;

  function chartTarget() {
    if (!chart) {
      const target = el("div", { class: "chart" });
      body.replaceChildren(target);
      chart = new TimeChart(target, { height: chartHeight(widget), unit: widget.unit, bounds: view.bounds, onZoom: view.onZoom, onReset: view.onReset });
    }
    return chart;
  }

  async function load(anchorMs) {
    const [fromMs] = view.bounds();
    const params = { from: new Date(fromMs).toISOString(), to: new Date(anchorMs).toISOString() };
    if (filter.param) params.filter = filter.param;
    if (widget.kind === "table") Object.assign(params, { order: "desc", limit: widget.limit || 20 });
    else params.agg = serverAggs(aggs).join(",");
    if (widget.by && (widget.kind === "line" || widget.kind === "bar")) params.by = widget.by;
    if (widget.kind === "line") {
      const [a, b] = view.bounds();
      // A widget's own `bucket` is the narrowest it draws (the chart's width sets the rest).
      state.bucketS = Math.max(durationS(widget.bucket) || 1,
                               bucketFor((b - a) / 1000, chartTarget().element.clientWidth || container.clientWidth / 2));
      params.bucket = bucketText(state.bucketS);
    }
    const ask = (extra = {}) => api("GET", `/v1/pipelines/${widget.pipeline}/query`, { params: { ...params, ...extra } });
    try {
      let answer = { rows: [] };
      if (fromMs < anchorMs && widget.kind === "table") {
        // The newest rows are most often in the last minutes: ask those first (a store reads
        // only the files of that span), the whole range only when they are too few.
        const recent = Math.max(fromMs, anchorMs - TABLE_FIRST_MS);
        answer = await ask({ from: new Date(recent).toISOString() });
        if (answer.rows.length < params.limit && recent > fromMs) answer = await ask();
      } else if (fromMs < anchorMs) {
        answer = await ask();
      }
      Object.assign(state, { rows: answer.rows, anchorMs, error: null, stale: answer.stale || null });
    } catch (err) {
      Object.assign(state, { rows: [], anchorMs, error: err });
    }
  }

  function tailRecords(toMs) {
    if (!tail || state.anchorMs === null) return [];
    return tail.between(state.anchorMs, toMs).filter(filter.keep);
  }

  function draw() {
    const [fromMs, toMs] = view.bounds();
    const live = tailRecords(toMs);
    note.textContent = [state.bucketS ? `per ${bucketText(state.bucketS)}` : "",
      state.error ? `query: ${state.error.message}` : "",
      state.stale ? `may miss stored records: ${state.stale.reason}` : ""].filter(Boolean).join(" · ");
    note.classList.toggle("error", Boolean(state.error));
    if (widget.kind === "table") return drawTable(live);
    if (widget.kind === "stat") {
      const value = combined(widget.agg, state.rows[0], live);
      exported.table = () => [[widget.agg, "unit"], [[value, widget.unit || ""]]];
      body.replaceChildren(el("div", { class: "stat-value", "data-value": String(value ?? "") }, withUnit(value, widget.unit)));
      return;
    }
    if (widget.kind === "bar") return drawBars(live);
    drawLine(fromMs, toMs, live);
  }

  function drawTable(live) {
    const seen = new Set(live.map((r) => r.seq));
    const records = [...state.rows.map(recordOf).filter((r) => !seen.has(r.seq)), ...live];
    records.sort((a, b) => timeMs(a) - timeMs(b) || a.seq - b.seq);
    const newest = records.slice(-(widget.limit || 20)).reverse();
    exported.table = () => [["seq", "time", ...columns], newest.map((r) => [r.seq, r.time, ...columns.map((c) => r.data[c])])];
    body.replaceChildren(el("div", { class: "table-wrap" }, recordsTable(records, columns, widget.limit || 20)));
  }

  function drawBars(live) {
    const stored = new Map(state.rows.map((row) => [byKey(row[widget.by]), row]));
    const tailGroups = groupRecords(live, (r) => byKey(r.data[widget.by]));
    const keys = [...new Set([...stored.keys(), ...tailGroups.keys()])].sort();
    const values = keys.map((key) => [key, combined(widget.agg, stored.get(key), tailGroups.get(key))]);
    exported.table = () => [[widget.by, widget.agg], values];
    const top = Math.max(1e-9, ...values.map(([, v]) => Math.abs(Number(v) || 0)));
    body.replaceChildren(el("div", { class: "bars" }, ...values.map(([key, v]) => el("div", { class: "bar-row", "data-key": key },
      el("span", { class: "key" }, key),
      el("span", { class: "bar", style: `width: ${(100 * Math.abs(Number(v) || 0) / top).toFixed(1)}%` }),
      el("span", { class: "value" }, withUnit(v, widget.unit))))));
  }

  function drawLine(fromMs, toMs, live) {
    const bucketS = state.bucketS || 60;
    const xs = bucketGrid(fromMs / 1000, toMs / 1000, bucketS);
    const keyOf = (value) => (widget.by ? byKey(value) : "");
    const stored = new Map();
    for (const row of state.rows) {
      const x = Date.parse(row.bucket) / 1000;
      if (!stored.has(x)) stored.set(x, new Map());
      stored.get(x).set(keyOf(row[widget.by]), row);
    }
    const tailBuckets = groupRecords(live, (r) => Math.floor(timeMs(r) / 1000 / bucketS) * bucketS);
    const tailGroups = new Map([...tailBuckets].map(([x, rs]) => [x, groupRecords(rs, (r) => keyOf(r.data[widget.by]))]));
    const keys = new Set();
    for (const m of [...stored.values(), ...tailGroups.values()]) for (const k of m.keys()) keys.add(k);
    const series = [];
    for (const agg of aggs) {
      for (const key of [...keys].sort().slice(0, MAX_SERIES)) {
        const values = xs.map((x) => {
          const row = stored.get(x)?.get(key);
          const records = tailGroups.get(x)?.get(key);
          return row || records ? numberOr(combined(agg, row, records)) : undefined;
        });
        const name = widget.agg ? agg : parseAgg(agg).field;
        series.push({ label: !widget.by ? name : aggs.length > 1 ? `${name} ${key}` : key,
                      values: breakGaps(xs, values) });
      }
    }
    chartTarget().set(xs, series.length ? series : [{ label: "(no data)", values: xs.map(() => undefined) }]);
    exported.table = () => [["bucket", ...series.map((s) => s.label)],
      xs.map((x, i) => [new Date(x * 1000).toISOString(), ...series.map((s) => s.values[i])])
        .filter((row) => row.slice(1).some((v) => v !== null && v !== undefined))];
  }

  return { box, load, draw, chart: () => chart && chart.plot, destroy() { if (chart) chart.destroy(); } };
}

