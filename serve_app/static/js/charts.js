// uPlot (vendored, global `uPlot`) line charts over time, rebuilt when their series change.
// Each chart's container carries `data-points` (points drawn), for people and tests alike.

const COLOURS = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0c8599", "#c2255c", "#5f3dc4",
                 "#868e96", "#364fc7", "#a61e4d", "#087f5b"];

export class TimeChart {
  // `windowS`: the x axis always spans the last `windowS` seconds (it slides with the clock).
  constructor(element, { height = 220, title = null, windowS = null } = {}) {
    this.element = element;
    this.windowS = windowS;
    this.height = height;
    this.title = title;
    this.plot = null;
    this.labels = "";
    this.onResize = () => { if (this.plot) this.plot.setSize({ width: this._width(), height: this.height }); };
    window.addEventListener("resize", this.onResize);
  }

  _width() { return Math.max(200, this.element.clientWidth || 400); }

  // `xs`: epoch seconds, ascending; `series`: [{label, values}] aligned with xs.
  set(xs, series) {
    const labels = series.map((s) => s.label).join("\u0000");
    const data = [xs, ...series.map((s) => s.values)];
    if (!this.plot || labels !== this.labels) {
      if (this.plot) this.plot.destroy();
      this.labels = labels;
      this.plot = new uPlot({
        width: this._width(), height: this.height, title: this.title || undefined,
        scales: { x: { time: true, range: (u, min, max) => this._range(min, max) } },
        legend: { live: true },
        series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length], width: 1.5,
                                                 spanGaps: true, points: { show: xs.length < 60 } }))],
      }, data, this.element);
    } else {
      this.plot.setData(data);
    }
    this.element.dataset.points = String(xs.length);
  }

  // uPlot widens a one-point x range to 1000 days; the window's own span is what we want.
  _range(min, max) {
    if (!this.windowS) return [min, max];
    const now = Date.now() / 1000;
    return [now - this.windowS, now];
  }

  destroy() {
    window.removeEventListener("resize", this.onResize);
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

// Aligned series from records: one x per record (its event time), one series per
// field and `by` value, null where a record belongs to another series.
export function recordSeries(records, fields, by = null, maxSeries = 12) {
  const rows = records.map((r) => [Date.parse(r.time) / 1000, r]).filter(([t]) => !Number.isNaN(t));
  rows.sort((a, b) => a[0] - b[0] || a[1].seq - b[1].seq);
  const xs = rows.map(([t]) => t);
  const series = [];
  for (const field of fields) {
    if (!by) {
      series.push({ label: field, values: rows.map(([, r]) => numberOr(r.data[field])) });
      continue;
    }
    const groups = new Map();
    rows.forEach(([, r], i) => {
      const key = String(r.data[by] ?? "∅");
      if (!groups.has(key)) {
        if (groups.size >= maxSeries) return;
        groups.set(key, new Array(rows.length).fill(null));
      }
      groups.get(key)[i] = numberOr(r.data[field]);
    });
    for (const key of [...groups.keys()].sort()) {
      series.push({ label: fields.length > 1 ? `${field} ${key}` : key, values: groups.get(key) });
    }
  }
  return { xs, series };
}

export function numberOr(value) {
  if (value === null || value === undefined || value === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}
