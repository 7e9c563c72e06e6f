// The form half of the dashboard editor: title, description and each widget's kind,
// pipeline, fields, aggregate, `by`, unit, title and size (`w` columns of 12, `h` rows), with
// add, remove and reorder. It edits
// `definition` in place and calls `changed()` after each edit.

import { el } from "./dom.js";
import { COLUMNS, MAX_ROWS } from "./layout.js";

const KINDS = ["line", "stat", "bar", "table"];
const FNS = ["count", "avg", "min", "max", "sum", "first", "last"];
const upTo = (n) => Array.from({ length: n }, (_, i) => [String(i + 1), String(i + 1)]);

function input(value, attributes, onInput) {
  const node = el("input", { value: value ?? "", ...attributes });
  node.addEventListener("input", () => onInput(node.value));
  return node;
}

function select(options, value, attributes, onChange) {
  const node = el("select", attributes, ...options.map(([v, text]) => el("option", { value: v, selected: v === (value ?? "") }, text)));
  node.addEventListener("change", () => onChange(node.value));
  return node;
}

function set(widget, key, value) {
  if (value === "" || value === null || (Array.isArray(value) && !value.length)) delete widget[key];
  else widget[key] = value;
}

// `pipelines`: Map id -> spec.
export function dashboardForm(definition, pipelines, changed) {
  const root = el("div", { class: "form-editor", id: "form-editor" });

  function fieldsOf(id) {
    const spec = pipelines.get(id);
    return Object.entries((spec && spec.mapping && spec.mapping.fields) || {}).filter(([name]) => name !== "time");
  }

  function widgetRow(widget, index) {
    const fields = fieldsOf(widget.pipeline);
    const names = fields.map(([name]) => name);
    const strings = fields.filter(([, f]) => f.type === "string" || f.type === "int").map(([name]) => name);
    const update = (key) => (value) => { set(widget, key, value); changed(); };
    const [fn, aggField] = (widget.agg || "").split(":");
    const aggUpdate = (newFn, newField) => {
      set(widget, "agg", newFn ? (newFn === "count" && !newField ? "count" : `${newFn}:${newField || names[0] || ""}`) : "");
      changed();
      draw();
    };
    const move = (delta) => {
      const to = index + delta;
      if (to < 0 || to >= definition.widgets.length) return;
      [definition.widgets[index], definition.widgets[to]] = [definition.widgets[to], definition.widgets[index]];
      changed();
      draw();
    };
    return el("fieldset", { class: "widget-form", "data-index": String(index) },
      el("legend", {}, `Widget ${index + 1}`),
      el("label", {}, "kind ", select(KINDS.map((k) => [k, k]), widget.kind, { class: "w-kind" }, (v) => { update("kind")(v); draw(); })),
      el("label", {}, "pipeline ", select([...pipelines.keys()].map((p) => [p, p]), widget.pipeline, { class: "w-pipeline" },
                                          (v) => { update("pipeline")(v); draw(); })),
      el("label", {}, "title ", input(widget.title, { class: "w-title" }, update("title"))),
      el("label", {}, "fields ", input((widget.fields || []).join(","), { class: "w-fields", placeholder: names.join(",") },
                                       (v) => update("fields")(v.split(",").map((s) => s.trim()).filter(Boolean)))),
      el("label", {}, "aggregate ", select([["", "–"], ...FNS.map((f) => [f, f])], fn, { class: "w-fn" }, (v) => aggUpdate(v, aggField)),
         select([["", "rows"], ...names.map((n) => [n, n])], aggField, { class: "w-agg-field" }, (v) => aggUpdate(fn || "count", v))),
      el("label", {}, "by ", select([["", "–"], ...strings.map((n) => [n, n])], widget.by, { class: "w-by" }, update("by"))),
      el("label", {}, "unit ", input(widget.unit, { class: "w-unit", maxlength: 16, placeholder: "°C" }, update("unit"))),
      el("label", { title: `columns of ${COLUMNS}` }, "width ", select([["", "auto"], ...upTo(COLUMNS)], String(widget.w ?? ""),
                                                                   { class: "w-width" }, (v) => update("w")(v ? Number(v) : ""))),
      el("label", { title: "rows of 100 px" }, "height ", select([["", "auto"], ...upTo(MAX_ROWS)], String(widget.h ?? ""),
                                                                 { class: "w-height" }, (v) => update("h")(v ? Number(v) : ""))),
      el("div", { class: "widget-form-buttons" },
        el("button", { type: "button", class: "w-up", onclick: () => move(-1), "aria-label": "move up" }, "↑"),
        el("button", { type: "button", class: "w-down", onclick: () => move(1), "aria-label": "move down" }, "↓"),
        el("button", { type: "button", class: "danger w-remove", onclick: () => {
          definition.widgets.splice(index, 1); changed(); draw();
        } }, "Remove")));
  }

  function draw() {
    definition.widgets = definition.widgets || [];
    root.replaceChildren(
      el("label", {}, "Title ", input(definition.title, { id: "form-title" }, (v) => { definition.title = v; changed(); })),
      el("label", {}, "Description ", input(definition.description, { id: "form-description" },
                                            (v) => { set(definition, "description", v); changed(); })),
      ...definition.widgets.map(widgetRow),
      el("button", { type: "button", id: "add-widget", onclick: () => {
        const pipeline = [...pipelines.keys()][0] || "";
        definition.widgets.push({ kind: "stat", pipeline, agg: "count" });
        changed();
        draw();
      } }, "Add widget"));
  }

  draw();
  return { element: root, redraw: draw };
}
