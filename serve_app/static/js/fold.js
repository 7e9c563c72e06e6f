// The query API's aggregates of stored rows, with the live tail folded in: the API answers
// for event times before the anchor, the tail (records seen live, event time at or after
// the anchor) is aggregated here the same way (aggregate.js) and combined, so a bucket or a
// stat goes on counting between two queries without ever counting a record twice.

import { aggregate, groupName, parseAgg } from "./aggregate.js";

// The answer's column of an aggregate: `avg:temp_c` -> `avg_temp_c`, `count` -> `count`.
export function column(agg) { return agg.replace(":", "_"); }

// What to ask the API so each of `aggs` can be combined with the tail: an average also needs
// the count it is over.
export function serverAggs(aggs) {
  const asked = [];
  for (const agg of aggs) {
    const { fn, field } = parseAgg(agg);
    for (const a of fn === "avg" ? [agg, `count:${field}`] : [agg]) if (!asked.includes(a)) asked.push(a);
  }
  return asked;
}

function less(a, b) { return typeof a === "number" && typeof b === "number" ? a < b : String(a) < String(b); }

// `agg` of the stored `row` (an answer row, or undefined) and the `tail` records together.
export function combined(agg, row, tail) {
  const { fn, field } = parseAgg(agg);
  const stored = row ? row[column(agg)] ?? null : null;
  const live = tail && tail.length ? aggregate(agg, tail) : null;
  if (live === null || (fn === "count" && live === 0)) return stored ?? (fn === "count" ? 0 : null);
  if (stored === null) return live;
  if (fn === "count" || fn === "sum") return stored + live;
  if (fn === "min") return less(live, stored) ? live : stored;
  if (fn === "max") return less(stored, live) ? live : stored;
  if (fn === "first") return stored;
  if (fn === "last") return live;
  const n = row[column(`count:${field}`)] || 0;
  const m = aggregate(`count:${field}`, tail);
  return n + m ? (stored * n + live * m) / (n + m) : null;
}

// Records grouped by a key function, in a Map of arrays.
export function groupRecords(records, keyOf) {
  const groups = new Map();
  for (const r of records) {
    const key = keyOf(r);
    if (key === null) continue;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(r);
  }
  return groups;
}

export function byKey(value) { return groupName(value); }
