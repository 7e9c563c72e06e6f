// The time range a view shows, kept in its URL so a reload or a shared link shows the same:
// `?range=6h` (relative: the last 6 hours, live) or `?from=<ISO>&to=<ISO>` (absolute, still).
// A range is {relative: "6h", seconds} or {fromMs, toMs}; `bounds` gives [fromMs, toMs].

import { UNIT_S } from "./aggregate.js";

export const RELATIVE = ["5m", "15m", "30m", "1h", "3h", "6h", "12h", "1d", "2d", "7d", "30d", "90d"];
const MAX_S = 90 * 86400;

export function durationS(text) {
  const match = /^([1-9][0-9]{0,5})([smhd])$/.exec(text || "");
  return match ? Number(match[1]) * UNIT_S[match[2]] : null;
}

export function readRange(search = location.search, fallback = "15m") {
  const params = new URLSearchParams(search);
  const fromMs = Date.parse(params.get("from") || "");
  const toMs = Date.parse(params.get("to") || "");
  if (!Number.isNaN(fromMs) && !Number.isNaN(toMs) && toMs > fromMs) return { fromMs, toMs };
  const relative = params.get("range");
  const s = durationS(relative);
  if (s && s <= MAX_S) return { relative, seconds: s };
  return { relative: fallback, seconds: durationS(fallback) || 900 };
}

export function isLive(range) { return Boolean(range.relative); }

export function bounds(range, nowMs = Date.now()) {
  return range.relative ? [nowMs - range.seconds * 1000, nowMs] : [range.fromMs, range.toMs];
}

// The URL of this page with `range` (and the other parameters kept).
export function rangeUrl(range, href = location.href) {
  const url = new URL(href);
  for (const key of ["range", "from", "to"]) url.searchParams.delete(key);
  if (range.relative) url.searchParams.set("range", range.relative);
  else {
    url.searchParams.set("from", new Date(range.fromMs).toISOString());
    url.searchParams.set("to", new Date(range.toMs).toISOString());
  }
  return url.pathname + url.search;
}
