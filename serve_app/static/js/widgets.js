// The widgets of a dashboard (line, stat, table, bar), each drawn from its pipeline's feed
// and drawn again (at most once a frame) when the feed changes.

import { aggregate, bucketSeries, defaultBucket, formatNumber, groupBy, seconds } from "./aggregate.js";
import { TimeChart, recordSeries } from "./charts.js";
import { el } from "./dom.js";

export function recordsTable(records, columns, limit) {
  const newest = records.slice(-limit).reverse();
  const table = el("table", { class: "records" },
    el("thead", {}, el("tr", {}, el("th", {}, "seq"), el("th", {}, "time"), ...columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, ...newest.map((r) => el("tr", { "data-seq": String(r.seq) },
      el("td", { class: "num" }, String(r.seq)), el("td", {}, shortTime(r.time)),
      ...columns.map((c) => cell(r.data[c]))))));
  return table;
}

function cell(value) {
  if (typeof value === "number") return el("td", { class: "num" }, formatNumber(value));
  if (value === null || value === undefined) return el("td", { class: "muted" }, "–");
  return el("td", {}, typeof value === "object" ? JSON.stringify(value) : String(value));
}

export function shortTime(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso ?? "");
  return new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function titleOf(widget) {
  if (widget.title) return widget.title;
  const what = widget.agg || (widget.fields || []).join(", ") || "records";
  return `${what}${widget.by ? ` by ${widget.by}` : ""} · ${widget.pipeline}`;
}

export function mountWidget(container, widget, feed, pipelineSpec) {
  const windowS = seconds(widget.window) || 900;
  const body = el("div", { class: "widget-body" });
  const note = el("div", { class: "note" });
  const box = el("section", { class: `widget ${widget.kind}${widget.kind === "table" ? " wide" : ""}`,
                              "data-kind": widget.kind, "data-pipeline": widget.pipeline },
    el("h2", {}, titleOf(widget)), body, note);
  container.append(box);
  let chart = null;
  const fields = widget.fields && widget.fields.length ? widget.fields
    : Object.keys((pipelineSpec && pipelineSpec.mapping && pipelineSpec.mapping.fields) || {}).filter((f) => f !== "time");

  function draw() {
    const records = widget.kind === "table" ? feed.records : feed.inWindow(windowS);
    note.textContent = `${widget.kind === "table" ? `newest ${widget.limit || 20}` : `last ${widget.window}`}${feed.truncated ? ` · newest ${feed.maxRecords.toLocaleString("en")} records` : ""}`
      + (feed.notes.length ? ` · ${feed.notes.join("; ")}` : "");
    if (widget.kind === "table") {
      body.replaceChildren(el("div", { class: "table-wrap" }, recordsTable(records, fields, widget.limit || 20)));
      return;
    }
    if (widget.kind === "stat") {
      const value = aggregate(widget.agg, records);
      body.replaceChildren(el("div", { class: "stat-value", "data-value": String(value ?? "") }, formatNumber(value)));
      return;
    }
    if (widget.kind === "bar") {
      const groups = [...groupBy(records, widget.by).entries()].sort(([a], [b]) => (a < b ? -1 : 1));
      const values = groups.map(([key, rs]) => [key, aggregate(widget.agg, rs)]);
      const top = Math.max(1e-9, ...values.map(([, v]) => Math.abs(Number(v) || 0)));
      body.replaceChildren(el("div", { class: "bars" }, ...values.map(([key, v]) => el("div", { class: "bar-row", "data-key": key },
        el("span", {}, key),
        el("span", { class: "bar", style: `width: ${(100 * Math.abs(Number(v) || 0) / top).toFixed(1)}%` }),
        el("span", { class: "value" }, formatNumber(v))))));
      return;
    }
    if (!chart) {
      const target = el("div", { class: "chart" });
      body.replaceChildren(target);
      chart = new TimeChart(target, { windowS });
    }
    const { xs, series } = widget.agg
      ? bucketSeries(records, widget.agg, seconds(widget.bucket) || defaultBucket(windowS), widget.by)
      : recordSeries(records, widget.fields, widget.by);
    chart.set(xs, series.length ? series : [{ label: "(no data)", values: xs.map(() => null) }]);
  }

  return { draw, destroy() { if (chart) chart.destroy(); } };
}
