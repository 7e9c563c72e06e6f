// The dashboard editor: a form (form.js) and the same definition as JSON text (YAML may be
// pasted: it is saved as written), kept in step, with a live preview of the widgets over the
// last 15 minutes (each widget's size dragged there by its corner, or set in the form). "New dashboard" never overwrites one (`If-None-Match: *`: 412); Cancel and
// leaving the page ask before unsaved changes are lost; errors name the field in words.

import { api } from "./api.js";
import { runWidgets, viewOf } from "./dashboard.js";
import { el } from "./dom.js";
import { dashboardForm } from "./form.js";
import { resizeHandle } from "./layout.js";
import { readRange } from "./range.js";
import { errorBox } from "./views.js";
import { mountWidget } from "./widgets.js";

// The id rule of the API (spec.PIPELINE_ID_PATTERN), written for the `v` flag Chromium
// compiles a pattern attribute with (a bare `-` in a class is invalid there).
const ID_PATTERN = "[a-z][a-z0-9\\-]{0,62}";
const PREVIEW_MS = 700;

async function loadDefinition(dashboardId, specs) {
  if (dashboardId) {
    const { id, version, created_at, updated_at, ...definition } = await api("GET", `/v1/dashboards/${dashboardId}`);
    return definition;
  }
  const [id, spec] = [...specs][0] || ["my-pipeline", null];
  const fields = Object.entries((spec && spec.mapping.fields) || {});
  const number = (fields.find(([name, f]) => (f.type === "int" || f.type === "double") && name !== "time") || [])[0] || "value";
  return { title: "My dashboard", widgets: [
    { kind: "line", pipeline: id, fields: [number] },
    { kind: "stat", pipeline: id, agg: `avg:${number}` },
    { kind: "table", pipeline: id, limit: 10 },
  ] };
}

export async function dashboardEditor(root, [dashboardId], session) {
  if (session.scope !== "admin") {
    root.replaceChildren(el("div", { class: "card error", id: "read-only" },
      `This is a ${session.scope} token: it can view dashboards but not change them. Sign in with an admin token to edit.`));
    return () => {};
  }
  let definition;
  const specs = new Map();
  try {
    for (const p of (await api("GET", "/v1/pipelines")).pipelines) specs.set(p.id, p.spec);
    definition = await loadDefinition(dashboardId, specs);
  } catch (err) {
    root.replaceChildren(errorBox(err));
    return () => {};
  }
  let dirty = false;
  const idInput = el("input", { id: "dashboard-id", name: "id", value: dashboardId || "", required: true,
                                pattern: ID_PATTERN, readonly: Boolean(dashboardId), autocomplete: "off",
                                title: "lowercase letters, digits and -, starting with a letter",
                                placeholder: "ops (lowercase letters, digits, -)" });
  const area = el("textarea", { id: "dashboard-text", spellcheck: "false" });
  area.value = JSON.stringify(definition, null, 2);
  const textNote = el("p", { class: "muted", id: "text-note" });
  const result = el("div", { id: "save-result" });
  const previewGrid = el("div", { class: "grid", id: "preview" });
  let preview = null;
  let previewTimer = null;

  async function drawPreview() {
    if (preview) preview.stop();
    previewGrid.replaceChildren();
    const view = viewOf(readRange("?range=15m"), session);
    const widgets = (definition.widgets || []).filter((w) => specs.has(w.pipeline) && w.kind).map((w) => {
      const mounted = mountWidget(previewGrid, w, { spec: specs.get(w.pipeline), tail: null, view });
      resizeHandle(mounted.box, w, (width, height) => {
        w.w = width;
        if (height) w.h = height;
        changed();
        form.redraw();
      });
      return mounted;
    });
    preview = await runWidgets(widgets, view, []);
  }
  const schedulePreview = () => { clearTimeout(previewTimer); previewTimer = setTimeout(drawPreview, PREVIEW_MS); };
  const changed = () => {
    dirty = true;
    area.value = JSON.stringify(definition, null, 2);
    textNote.textContent = "";
    schedulePreview();
  };
  const form = dashboardForm(definition, specs, changed);
  area.addEventListener("input", () => {
    dirty = true;
    try {
      const parsed = JSON.parse(area.value);
      Object.keys(definition).forEach((k) => delete definition[k]);
      Object.assign(definition, parsed);
      form.redraw();
      textNote.textContent = "";
      schedulePreview();
    } catch (err) {
      textNote.textContent = `The form follows JSON text; this is not JSON (${err.message}). YAML is saved as written.`;
    }
  });

  const leave = () => !dirty || confirm("Leave without saving your changes to this dashboard?");
  const onUnload = (event) => { if (dirty) { event.preventDefault(); event.returnValue = ""; } };
  window.addEventListener("beforeunload", onUnload);
  session.leaving = leave;

  const editor = el("form", { class: "editor card", novalidate: false, onsubmit: async (event) => {
    event.preventDefault();
    const id = idInput.value.trim();
    result.replaceChildren();
    try {
      await api("PUT", `/v1/dashboards/${encodeURIComponent(id)}`,
                { body: area.value, headers: dashboardId ? {} : { "if-none-match": "*" } });
      dirty = false;
      session.go(`/dashboards/${id}`);
    } catch (err) {
      result.replaceChildren(errorBox(err));
    }
  } },
    el("label", {}, "Id", idInput),
    form.element,
    el("details", { open: true }, el("summary", {}, "Definition as text (JSON, or paste YAML)"),
       el("label", {}, area), textNote,
       el("p", { class: "muted" }, "Widgets: kind line|stat|table|bar, pipeline, fields, agg (avg:temp_c, count, …), by, unit, window (15m), limit, w (1–12 columns), h (1–8 rows).")),
    el("div", { class: "buttons" },
       el("button", { type: "submit", class: "primary", id: "save-dashboard" }, "Save"),
       el("button", { type: "button", id: "cancel-edit", onclick: () => {
         if (!leave()) return;
         dirty = false;
         session.go(dashboardId ? `/dashboards/${dashboardId}` : "/dashboards");
       } }, "Cancel")),
    result);
  root.replaceChildren(el("div", { class: "toolbar" }, el("h1", {}, dashboardId ? `Edit ${dashboardId}` : "New dashboard")),
                       el("div", { class: "editor-layout" }, editor,
                          el("section", { class: "preview" }, el("h2", {}, "Preview (last 15 minutes)"), previewGrid)));
  drawPreview();
  return () => {
    clearTimeout(previewTimer);
    if (preview) preview.stop();
    window.removeEventListener("beforeunload", onUnload);
    session.leaving = null;
  };
}
