// Dashboard variables: each picks values of one field (listed from the data in the view's
// range by the query API's `by`), kept in the URL as `?var-<name>=a,b`, and filters every
// widget over a pipeline that has the field: the query API's `filter` for stored rows, the
// same test here for the live tail.

import { api } from "./api.js";
import { el } from "./dom.js";

const MAX_VALUES = 200;

export function chosenValues(variables, search = location.search) {
  const params = new URLSearchParams(search);
  const chosen = new Map();
  for (const v of variables) {
    const values = (params.get(`var-${v.name}`) || "").split(",").filter(Boolean);
    if (values.length) chosen.set(v.name, values);
  }
  return chosen;
}

function variableUrl(name, values, href = location.href) {
  const url = new URL(href);
  if (values.length) url.searchParams.set(`var-${name}`, values.join(","));
  else url.searchParams.delete(`var-${name}`);
  return url.pathname + url.search;
}

// The filter of the chosen values for a pipeline of `spec`: {param (the API's text or null), keep(record)}.
export function filterFor(variables, chosen, spec) {
  const fields = (spec && spec.mapping && spec.mapping.fields) || {};
  const active = variables.filter((v) => chosen.has(v.name) && v.field in fields)
    .map((v) => [v.field, chosen.get(v.name)]);
  return {
    param: active.length ? active.map(([f, values]) => `${f}:${values.join(",")}`).join(";") : null,
    keep: (record) => active.every(([f, values]) => values.includes(String(record.data[f]))),
  };
}

async function valuesOf(variable, [fromMs, toMs]) {
  const answer = await api("GET", `/v1/pipelines/${variable.pipeline}/query`, { params: {
    agg: "count", by: variable.field, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(),
    limit: MAX_VALUES } });
  return answer.rows.map((r) => r[variable.field]).filter((v) => v !== null && v !== undefined).map(String);
}

// One select per variable ("all", then the values in the range); a choice changes the URL.
export async function variableControls(variables, chosen, bounds, go) {
  const box = el("div", { class: "variables", id: "variables" });
  for (const variable of variables) {
    let values = [];
    try { values = await valuesOf(variable, bounds()); } catch { /* the select still offers what the URL says */ }
    const picked = chosen.get(variable.name) || [];
    for (const v of picked) if (!values.includes(v)) values.push(v);
    const select = el("select", { id: `var-${variable.name}`, "data-variable": variable.name,
                                  onchange: () => go(variableUrl(variable.name, select.value ? select.value.split(",") : [])) },
      el("option", { value: "" }, "all"),
      picked.length > 1 ? el("option", { value: picked.join(","), selected: true }, picked.join(", ")) : "",
      ...values.map((v) => el("option", { value: v, selected: picked.length === 1 && picked[0] === v }, v)));
    box.append(el("label", {}, `${variable.label || variable.name} `, select));
  }
  return box;
}
