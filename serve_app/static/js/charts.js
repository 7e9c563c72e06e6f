// uPlot (vendored, global `uPlot`) line charts over time, rebuilt when their series change.
// The x axis spans the view's range (`bounds()`, epoch ms), in the page's time zone with ISO
// dates; the y axis and the legend carry the widget's unit. Charts of one view share their
// cursor (uPlot's cursor.sync), dragging across a chart zooms (`onZoom(fromMs, toMs)`) and a
// double-click goes back (`onReset`). A null value is a gap: lines never join across it.
// Each chart's container carries `data-points` (values drawn), `data-first` (epoch s of the
// first) and `data-series` (the legend's names), for people and tests alike.

import { formatNumber, groupName, valueTicks } from "./aggregate.js";
import { formatTime, tickLabels, zonedDate } from "./zone.js";

const COLOURS = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0c8599", "#c2255c", "#5f3dc4",
                 "#868e96", "#364fc7", "#a61e4d", "#087f5b"];
const SYNC_KEY = "dash";

// Dots where a series has few values (a lone value has no line to show it).
function fewPoints(u, seriesIdx) {
  let n = 0;
  for (const v of u.data[seriesIdx]) if (v !== null && v !== undefined && ++n >= 60) return false;
  return true;
}

export class TimeChart {
  constructor(element, { height = 220, title = null, unit = "", bounds = null, onZoom = null, onReset = null } = {}) {
    this.element = element;
    this.height = height;
    this.title = title;
    this.unit = unit || "";
    this.bounds = bounds;  // () => [fromMs, toMs], or null to fit the data
    this.onZoom = onZoom;
    this.onReset = onReset;
    this.plot = null;
    this.labels = "";
    this.onResize = () => { if (this.plot) this.plot.setSize({ width: this._width(), height: this.height }); };
    window.addEventListener("resize", this.onResize);
  }

  _width() { return Math.max(200, this.element.clientWidth || 400); }

  _value(v) { return v === null || v === undefined ? "–" : `${formatNumber(v)}${this.unit ? ` ${this.unit}` : ""}`; }

  _options(series) {
    const css = getComputedStyle(document.documentElement);
    const axisColour = css.getPropertyValue("--muted").trim() || "#6b7480";
    const grid = { stroke: css.getPropertyValue("--line").trim() || "#e3e6ea", width: 1 };
    return {
      width: this._width(), height: this.height, title: this.title || undefined, tzDate: zonedDate,
      scales: { x: { time: true, range: (u, min, max) => this._range(min, max) } },
      cursor: { sync: { key: SYNC_KEY }, drag: { x: true, y: false, setScale: false } },
      legend: { live: true },
      axes: [
        { stroke: axisColour, grid, size: 44, values: (u, splits, ax, space, incr) => tickLabels(splits, incr) },
        { stroke: axisColour, grid, label: this.unit || undefined, size: 60,
          values: (u, splits, ax, space, incr) => valueTicks(splits, incr) },
      ],
      series: [{ label: "time", value: (u, v) => (v === null || v === undefined ? "–" : formatTime(v * 1000)) },
        ...series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false,
                                   value: (u, v) => this._value(v), points: { show: fewPoints } }))],
      hooks: { setSelect: [(u) => this._selected(u)] },
    };
  }

  // `xs`: epoch seconds, ascending; `series`: [{label, values}] aligned with xs (null: a gap;
  // undefined: no value here, the line goes on).
  set(xs, series) {
    const labels = series.map((s) => s.label).join("\u0000");
    const data = [xs, ...series.map((s) => s.values)];
    if (!this.plot || labels !== this.labels) {
      if (this.plot) this.plot.destroy();
      this.labels = labels;
      this.plot = new uPlot(this._options(series), data, this.element);
      this.plot.over.addEventListener("dblclick", () => { if (this.onReset) this.onReset(); });
    } else {
      this.plot.setData(data);
    }
    let points = 0;
    let first = null;
    for (const s of series) {
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        points += 1;
        if (first === null || xs[i] < first) first = xs[i];
      });
    }
    this.element.dataset.points = String(points);
    this.element.dataset.first = first === null ? "" : String(first);
    this.element.dataset.series = series.map((s) => s.label).join(",");
    this.element.dataset.step = xs.length > 1 ? String(xs[1] - xs[0]) : "";
  }

  _selected(u) {
    const { left, width } = u.select;
    if (width > 3 && this.onZoom) {
      const a = u.posToVal(left, "x");
      const b = u.posToVal(left + width, "x");
      u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      this.onZoom(Math.round(a * 1000), Math.round(b * 1000));
    }
  }

  // The view's range, not the data's (uPlot widens a one-point range to 1000 days).
  _range(min, max) {
    if (!this.bounds) return [min, max];
    const [from, to] = this.bounds();
    return [from / 1000, to / 1000];
  }

  destroy() {
    window.removeEventListener("resize", this.onResize);
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

// Aligned series from raw records: one x per record (its event time), one series per field
// and `by` value. A series has no value (undefined) where a record belongs to another, and a
// gap (null) where its own records are further apart than `gapS`.
export function recordSeries(records, fields, by = null, maxSeries = 12, gapS = null) {
  const rows = records.map((r) => [Date.parse(r.time) / 1000, r]).filter(([t]) => !Number.isNaN(t));
  rows.sort((a, b) => a[0] - b[0] || a[1].seq - b[1].seq);
  const xs = rows.map(([t]) => t);
  const series = [];
  for (const field of fields) {
    const groups = new Map();
    rows.forEach(([, r], i) => {
      const key = by ? groupName(r.data[by]) : field;
      if (!groups.has(key)) {
        if (groups.size >= maxSeries) return;
        groups.set(key, new Array(rows.length).fill(undefined));
      }
      groups.get(key)[i] = numberOr(r.data[field]);
    });
    for (const key of [...groups.keys()].sort()) {
      const label = !by ? field : fields.length > 1 ? `${field} ${key}` : key;
      series.push({ label, values: breakGaps(xs, groups.get(key), gapS) });
    }
  }
  return { xs, series };
}

// A null just after each value that follows its predecessor by more than `gapS` (default:
// 3 times the series' median spacing, at least 5 s), so the line stops at an outage.
export function breakGaps(xs, values, gapS = null) {
  const at = [];
  values.forEach((v, i) => { if (v !== undefined && v !== null) at.push(i); });
  if (at.length < 2) return values;
  const steps = at.slice(1).map((i, k) => xs[i] - xs[at[k]]).sort((a, b) => a - b);
  const limit = gapS ?? Math.max(5, 3 * steps[Math.floor(steps.length / 2)]);
  const out = values.slice();
  for (let k = 1; k < at.length; k += 1) {
    const [prev, cur] = [at[k - 1], at[k]];
    if (xs[cur] - xs[prev] > limit) {
      // A gap between two values: the nearest slot between them with no value, or a null
      // placed on the earlier one's neighbour.
      let slot = prev + 1;
      while (slot < cur && out[slot] !== undefined) slot += 1;
      if (slot < cur) out[slot] = null;
    }
  }
  return out;
}

export function numberOr(value) {
  if (value === null || value === undefined || value === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}
