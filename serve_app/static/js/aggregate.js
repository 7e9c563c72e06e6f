// Aggregates over the records a page holds, as the query API computes them: `<fn>:<field>`
// with fn in avg min max sum count first last, or `count` alone (rows); buckets aligned to
// the UNIX epoch.

import { numberOr } from "./charts.js";

export const UNIT_S = { s: 1, m: 60, h: 3600, d: 86400 };
const BUCKETS_S = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 21600, 86400];

export function seconds(duration) {
  const match = /^([1-9][0-9]*)([smhd])$/.exec(duration || "");
  return match ? Number(match[1]) * UNIT_S[match[2]] : null;
}

// A bucket giving about 60 points over the window.
export function defaultBucket(windowS) {
  return BUCKETS_S.find((b) => b >= windowS / 60) || 86400;
}

// An event time (ISO 8601) in microseconds since the epoch: Date.parse keeps milliseconds, the
// digits after them are added (the query API orders first and last by the microsecond).
export function timeUs(text) {
  const ms = Date.parse(text);
  const fraction = /T[0-9:]+\.([0-9]+)/.exec(text || "");
  const extra = fraction ? Number(fraction[1].slice(3, 6).padEnd(3, "0")) : 0;
  return ms * 1000 + extra;
}

// The name of a group of `by` values: the value as text, "∅" for no value (null). A string
// that could read as another name (it is "∅", or starts with a quote) is named quoted, as
// JSON, so that no two groups share a name.
export function groupName(value) {
  if (value === null || value === undefined) return "∅";
  const text = String(value);
  return typeof value === "string" && (text === "∅" || text.startsWith('"')) ? JSON.stringify(text) : text;
}

export function parseAgg(agg) {
  if (agg === "count") return { fn: "count", field: null };
  const [fn, field] = agg.split(":");
  return { fn, field };
}

export function aggregate(agg, records) {
  const { fn, field } = parseAgg(agg);
  if (field === null) return records.length;
  const present = records.filter((r) => r.data[field] !== null && r.data[field] !== undefined);
  if (fn === "count") return present.length;
  if (fn === "first" || fn === "last") {
    if (!present.length) return null;
    const byTime = [...present].sort((a, b) => timeUs(a.time) - timeUs(b.time) || a.seq - b.seq);
    return (fn === "first" ? byTime[0] : byTime[byTime.length - 1]).data[field];
  }
  const values = present.map((r) => numberOr(r.data[field])).filter((v) => v !== null);
  if (!values.length) return null;
  if (fn === "sum") return values.reduce((a, b) => a + b, 0);
  if (fn === "avg") return values.reduce((a, b) => a + b, 0) / values.length;
  if (fn === "min") return Math.min(...values);
  if (fn === "max") return Math.max(...values);
  return null;
}

export function groupBy(records, field) {
  const groups = new Map();
  for (const r of records) {
    const key = groupName(r.data[field]);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(r);
  }
  return groups;
}

// {xs (bucket starts, epoch s), series [{label, values}]} of `agg` per bucket (and `by` value).
export function bucketSeries(records, agg, bucketS, by = null, maxSeries = 12) {
  const buckets = new Map();
  for (const r of records) {
    const t = Date.parse(r.time) / 1000;
    if (Number.isNaN(t)) continue;
    const start = Math.floor(t / bucketS) * bucketS;
    if (!buckets.has(start)) buckets.set(start, []);
    buckets.get(start).push(r);
  }
  const xs = [...buckets.keys()].sort((a, b) => a - b);
  if (!by) return { xs, series: [{ label: agg, values: xs.map((x) => numberOr(aggregate(agg, buckets.get(x)))) }] };
  const keys = [...groupBy(records, by).keys()].sort().slice(0, maxSeries);
  const series = keys.map((key) => ({
    label: key,
    values: xs.map((x) => {
      const inGroup = buckets.get(x).filter((r) => groupName(r.data[by]) === key);
      return inGroup.length ? numberOr(aggregate(agg, inGroup)) : null;
    }),
  }));
  return { xs, series };
}

export function formatNumber(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en");
  return value.toLocaleString("en", { maximumFractionDigits: Math.abs(value) < 10 ? 2 : 1 });
}

// Labels for a value axis's ticks (`incr`: the step between them): with as many decimals as
// the step needs, and more while two labels would read the same (25.62 and 25.64 are not both
// "25.6"); every label of an axis with the same number of decimals.
export function valueTicks(splits, incr) {
  const scaled = (d) => incr * 10 ** d;
  const whole = (d) => Math.abs(scaled(d) - Math.round(scaled(d))) <= 1e-6 * Math.max(1, scaled(d));
  let decimals = 0;
  while (decimals < 12 && !whole(decimals)) decimals += 1;
  const format = (d) => splits.map((v) => (v === null || v === undefined ? ""
    : v.toLocaleString("en", { minimumFractionDigits: d, maximumFractionDigits: d })));
  let labels = format(decimals);
  while (decimals < 12 && new Set(labels).size < labels.length) labels = format(++decimals);
  return labels;
}
