// A pipeline's sinks on its page: each sink's state, breaker, deliveries and last error,
// from GET /v1/pipelines/{id}/sinks, refreshed every few seconds.

import { api, explain } from "./api.js";
import { formatNumber } from "./aggregate.js";
import { el } from "./dom.js";

const REFRESH_MS = 3000;
const COLUMNS = ["sink", "kind", "state", "breaker", "delivered", "failed", "retrying", "dead", "last delivered seq",
                 "last error"];

function row(s) {
  const num = (v) => el("td", { class: "num" }, formatNumber(v ?? null));
  return el("tr", { "data-sink": s.name },
    el("td", {}, s.name), el("td", {}, s.kind),
    el("td", {}, el("span", { class: `status ${s.state === "running" ? "running" : "failed"}` }, s.state)),
    el("td", {}, s.breaker), num(s.delivered), num(s.failed), num(s.retrying), num(s.dead),
    num(s.last_delivered_seq), el("td", { class: "error" }, s.disabled || s.last_error || ""));
}

// The panel (a node to place) and `stop()` for when the view is left.
export function sinksPanel(pipelineId) {
  const body = el("tbody");
  const note = el("p", { class: "muted" });
  const node = el("section", { id: "sinks" }, el("h2", {}, "Sinks"),
    el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, ...COLUMNS.map((c) => el("th", {}, c)))),
      body)), note);
  const refresh = async () => {
    try {
      const { sinks } = await api("GET", `/v1/pipelines/${encodeURIComponent(pipelineId)}/sinks`);
      body.replaceChildren(...sinks.map(row));
      note.textContent = "";
    } catch (err) {
      note.textContent = explain(err);
    }
  };
  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return { node, stop: () => clearInterval(timer) };
}
