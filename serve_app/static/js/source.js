// A polling source's state on a pipeline's page: last poll, last success, last error, cursor
// and next poll (`source_state` of GET /v1/pipelines/{id}), refreshed every few seconds.

import { api } from "./api.js";
import { el } from "./dom.js";

const REFRESH_MS = 3000;
const ROWS = [["last poll", "last_poll_at"], ["last success", "last_ok_at"], ["last error", "last_error"],
              ["cursor", "cursor"], ["next poll", "next_poll_at"], ["polls", "polls"], ["records", "records"]];

function when(iso) {
  const t = Date.parse(iso || "");
  return Number.isNaN(t) ? "–" : new Date(t).toLocaleString();
}

function rows(state) {
  return ROWS.map(([label, key]) => {
    const value = state[key];
    const text = key.endsWith("_at") ? when(value)
      : value === null || value === undefined ? "–" : typeof value === "object" ? JSON.stringify(value) : String(value);
    return el("tr", { "data-key": key }, el("th", {}, label),
      el("td", { class: key === "last_error" && value ? "error" : "" }, text));
  });
}

// The box (empty when the pipeline's source keeps no state) and what stops its refresh.
export function sourceState(pipeline) {
  const body = el("tbody");
  const box = el("section", { class: "widget", id: "source-state", hidden: !pipeline.source_state },
    el("h2", {}, `Source: ${pipeline.spec.source.kind}`), el("table", {}, body));
  const draw = (p) => {
    box.hidden = !p.source_state;
    if (p.source_state) body.replaceChildren(...rows(p.source_state));
  };
  draw(pipeline);
  const timer = pipeline.source_state ? setInterval(async () => {
    try { draw(await api("GET", `/v1/pipelines/${encodeURIComponent(pipeline.id)}`)); } catch { /* next round */ }
  }, REFRESH_MS) : null;
  return { node: box, stop: () => { if (timer) clearInterval(timer); } };
}
