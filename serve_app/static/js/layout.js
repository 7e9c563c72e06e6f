// A widget's size on the dashboard's 12-column grid: `w` columns (default 4, a table 12) and
// `h` rows of ROW_PX (default: as tall as its content). Narrower screens: style.css.

export const COLUMNS = 12;
export const MAX_ROWS = 8;
export const ROW_PX = 100;
const CHART_PX = 220;  // a chart's height when its widget has no `h`
const CHART_CHROME_PX = 120;  // the widget's title, legend, note and padding around its chart

export function widthOf(widget) { return widget.w || (widget.kind === "table" ? COLUMNS : 4); }

export function chartHeight(widget) { return widget.h ? Math.max(60, widget.h * ROW_PX - CHART_CHROME_PX) : CHART_PX; }

// Size a widget's box as its definition says (its `--w` and `--h` in style.css).
// Without a `w` it takes style.css's default steps (data-w still says its width on a wide screen).
export function applySize(box, widget) {
  const w = widthOf(widget);
  box.dataset.w = String(w);
  if (widget.w) {
    box.style.setProperty("--w", String(w));
    box.dataset.sized = "";
  } else {
    box.style.removeProperty("--w");
    delete box.dataset.sized;
  }
  if (w > COLUMNS / 2) box.dataset.wide = ""; else delete box.dataset.wide;
  if (widget.h) {
    box.style.setProperty("--h", `${widget.h * ROW_PX}px`);
    box.dataset.h = String(widget.h);
  } else {
    box.style.removeProperty("--h");
    delete box.dataset.h;
  }
}

// A drag handle at a box's bottom right corner: dragging it sets the widget's `w` and `h` by
// the grid's column width and ROW_PX, calling `resized(w, h)` once the drag ends.
export function resizeHandle(box, widget, resized) {
  const handle = document.createElement("span");
  handle.className = "resize-handle";
  handle.title = "drag to resize";
  handle.setAttribute("aria-hidden", "true");
  handle.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    handle.setPointerCapture(event.pointerId);
    const grid = box.parentElement;
    const gap = parseFloat(getComputedStyle(grid).columnGap) || 0;
    const column = (grid.clientWidth - gap * (COLUMNS - 1)) / COLUMNS + gap;
    const start = { x: event.clientX, y: event.clientY, w: widthOf(widget), height: box.getBoundingClientRect().height };
    let size = { w: start.w, h: widget.h || null };
    const move = (e) => {
      const w = Math.min(COLUMNS, Math.max(1, Math.round(start.w + (e.clientX - start.x) / column)));
      const h = Math.min(MAX_ROWS, Math.max(1, Math.round((start.height + e.clientY - start.y) / ROW_PX)));
      size = { w, h: e.clientY === start.y ? size.h : h };
      applySize(box, { ...widget, ...size });
    };
    const up = () => {
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", up);
      if (size.w !== widthOf(widget) || size.h !== (widget.h || null)) resized(size.w, size.h);
    };
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", up);
  });
  box.append(handle);
}
