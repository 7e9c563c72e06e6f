// One time zone for the whole page, browser local or UTC, chosen in the header and kept in
// this browser; every date on the page is ISO-like (2026-05-01 12:00:05) in that zone.

const KEY = "dash.zone";

export function zone() { return localStorage.getItem(KEY) === "utc" ? "utc" : "local"; }
export function setZone(value) { localStorage.setItem(KEY, value === "utc" ? "utc" : "local"); }

// The zone's name as shown: "UTC" or "local (UTC+02:00)".
export function zoneLabel(at = new Date()) {
  if (zone() === "utc") return "UTC";
  const minutes = -at.getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  return `local (UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)})`;
}

function pad(n, width = 2) { return String(n).padStart(width, "0"); }

// The parts of a time (epoch ms) in the page's zone.
function parts(ms) {
  const d = new Date(ms);
  if (zone() === "utc") {
    return { y: d.getUTCFullYear(), mo: d.getUTCMonth() + 1, d: d.getUTCDate(), h: d.getUTCHours(),
             mi: d.getUTCMinutes(), s: d.getUTCSeconds() };
  }
  return { y: d.getFullYear(), mo: d.getMonth() + 1, d: d.getDate(), h: d.getHours(), mi: d.getMinutes(),
           s: d.getSeconds() };
}

// "2026-05-01 12:00:05" (or shorter with `precision`: "date", "minute").
export function formatTime(ms, precision = "second") {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  const p = parts(ms);
  const date = `${p.y}-${pad(p.mo)}-${pad(p.d)}`;
  if (precision === "date") return date;
  const minute = `${date} ${pad(p.h)}:${pad(p.mi)}`;
  return precision === "minute" ? minute : `${minute}:${pad(p.s)}`;
}

// An ISO text (a record's time) in the page's zone; the text itself when it is no time.
export function formatIso(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? String(iso ?? "") : formatTime(t);
}

// An axis tick (epoch s): the date where the ticks are days apart, else the time of day,
// with the date at the first tick and where the day changes.
export function tickLabels(splits, incrS) {
  let lastDate = null;
  return splits.map((s) => {
    const ms = s * 1000;
    const date = formatTime(ms, "date");
    if (incrS >= 86400) return date;
    const p = parts(ms);
    const time = incrS < 60 ? `${pad(p.h)}:${pad(p.mi)}:${pad(p.s)}` : `${pad(p.h)}:${pad(p.mi)}`;
    const label = date !== lastDate ? `${time}\n${date}` : time;
    lastDate = date;
    return label;
  });
}

// For uPlot's `tzDate`: a Date whose local fields show the page's zone.
export function zonedDate(epochS) {
  const d = new Date(epochS * 1000);
  return zone() === "utc" ? uPlot.tzDate(d, "Etc/UTC") : d;
}
