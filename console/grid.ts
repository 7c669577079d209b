/**
 * The result grid: a `<table>` with column headers that draws only the rows
 * in view, so that a result of millions of rows scrolls as lightly as one of
 * ten. The table stays pinned to the top of its scroll box (`position:
 * sticky`) and a spacer below it gives the box the full result's height;
 * scrolling picks which rows the table shows. Past a few million pixels
 * (browsers cap an element's height) the scroll position maps to rows
 * proportionally.
 *
 * Screen readers get the real extent: `aria-rowcount` on the table and
 * `aria-rowindex` on each row. The table is an ARIA grid: it takes the focus,
 * arrow keys, Page Up/Down and Home/End move the active cell
 * (`aria-activedescendant`), whose whole value the value panel shows.
 */
import { ColumnType, type Field } from "../client/src/fetch.js";
import { type Cell, type CellStyle, clipped, styleOfType } from "./cells.js";
import { h, replaceChildren } from "./dom.js";

/** The rows the grid keeps for scrolling; a longer result is counted, not kept (memory). */
export const keptRowsMax = 1_000_000;

/** The tallest spacer a browser lays out reliably (Chromium stops near 33.5 million px). */
const maxContentPx = 8_000_000;

/** The active cell, as the value panel shows it. */
export interface ActiveCell {
  readonly field: Field;
  readonly value: Cell;
  /** 0-based. */
  readonly row: number;
  readonly column: number;
}

export interface Grid {
  readonly element: HTMLElement;
  /** Starts a new result with these columns (none: an empty grid). */
  reset(fields: readonly Field[]): void;
  /** Adds a row; drawn at the next frame. */
  append(row: Cell[]): void;
  /** Rows received, kept or not. */
  readonly rowCount: number;
  /** Rows kept (and so scrollable to). */
  readonly keptCount: number;
  /** Draws now rather than at the next frame (the result is complete). */
  flush(): void;
}

/** "BIGINT UNSIGNED", "VARCHAR", ... as the header shows a column's type. */
export function typeLabel(field: Field): string {
  const name = ColumnType[field.type] ?? "UNKNOWN";
  return field.unsigned ? `${name} UNSIGNED` : name;
}

/** A column's metadata, one fact per line, for its header's tooltip. */
export function fieldDescription(field: Field): string {
  const source = [field.database, field.table, field.column].filter((p) => p !== "").join(".");
  return [
    `${field.name}: ${typeLabel(field)}${field.nullable ? "" : " NOT NULL"}`,
    source !== "" ? `from ${source}` : "an expression",
    `length ${field.length}${field.decimals > 0 ? `, decimals ${field.decimals}` : ""}`,
    field.charset !== "" ? `character set ${field.charset}` : undefined,
  ]
    .filter((line) => line !== undefined)
    .join("\n");
}

export function createGrid(onActive: (cell: ActiveCell | undefined) => void): Grid {
  const table = h("table", {
    class: "grid",
    role: "grid",
    "aria-label": "Result rows",
    "aria-readonly": "true",
    "aria-rowcount": 1,
    tabindex: 0,
  });
  const colgroup = h("colgroup");
  const thead = h("thead");
  const tbody = h("tbody");
  table.append(colgroup, thead, tbody);
  const spacer = h("div", { class: "grid-spacer", "aria-hidden": "true" });
  const box = h("div", { class: "grid-box" }, table, spacer);

  let fields: readonly Field[] = [];
  let styles: CellStyle[] = [];
  let rows: Cell[][] = [];
  let total = 0;
  let sized = false;
  let active: { row: number; column: number } | undefined;
  let first = 0;
  let frame = 0;

  const rowHeight = () =>
    Number.parseFloat(getComputedStyle(box).getPropertyValue("--row-height")) || 26;
  const headerHeight = () => thead.getBoundingClientRect().height || rowHeight();
  const visibleRows = () =>
    Math.max(1, Math.floor((box.clientHeight - headerHeight()) / rowHeight()));

  const schedule = () => {
    if (frame === 0) frame = requestAnimationFrame(draw);
  };

  function sizeColumns(): void {
    // Widths from the header and the first rows, in characters; the grid is
    // table-layout: fixed, so later rows never reflow it.
    const sample = rows.slice(0, 200);
    replaceChildren(
      colgroup,
      ...fields.map((field, i) => {
        const widest = Math.max(
          field.name.length,
          typeLabel(field).length * 0.8,
          ...sample.map((r) => Math.min((r[i] ?? "NULL").length, 60)),
        );
        const col = h("col");
        col.style.width = `${Math.min(Math.max(widest, 4), 48) + 3}ch`;
        return col;
      }),
    );
  }

  function draw(): void {
    frame = 0;
    const kept = rows.length;
    const height = rowHeight();
    const contentHeight = Math.min(kept * height, maxContentPx);
    const view = visibleRows();
    const maxScroll = Math.max(1, headerHeight() + contentHeight - box.clientHeight);
    const lastFirst = Math.max(0, kept - view);
    first = Math.min(lastFirst, Math.round((box.scrollTop / maxScroll) * lastFirst));
    if (box.scrollTop >= maxScroll - 1) first = lastFirst;
    if (!sized && kept > 0) {
      sizeColumns();
      sized = true;
    }
    const shown: HTMLTableRowElement[] = [];
    for (let r = first; r < Math.min(kept, first + view + 1); r++) {
      shown.push(rowElement(r));
    }
    replaceChildren(tbody, ...shown);
    table.setAttribute("aria-rowcount", String(kept + 1));
    const shownActive = active !== undefined && active.row >= first && active.row <= first + view;
    if (shownActive) table.setAttribute("aria-activedescendant", "grid-active-cell");
    else table.removeAttribute("aria-activedescendant");
    spacer.style.height = `${Math.max(0, headerHeight() + contentHeight - table.offsetHeight)}px`;
  }

  function rowElement(r: number): HTMLTableRowElement {
    const row = rows[r] ?? [];
    const tr = h("tr", { "aria-rowindex": r + 2 });
    for (let c = 0; c < fields.length; c++) {
      const value = row[c] ?? null;
      const isActive = active?.row === r && active.column === c;
      const td = h(
        "td",
        {
          class: `${styles[c]}${value === null ? " null" : value === "" ? " empty" : ""}${isActive ? " active" : ""}`,
          id: isActive ? "grid-active-cell" : undefined,
          "data-row": r,
          "data-column": c,
          "aria-selected": isActive ? "true" : undefined,
        },
        value === null ? "NULL" : clipped(value),
      );
      tr.append(td);
    }
    return tr;
  }

  function activate(row: number, column: number): void {
    if (rows.length === 0 || fields.length === 0) return;
    const r = Math.min(Math.max(row, 0), rows.length - 1);
    const c = Math.min(Math.max(column, 0), fields.length - 1);
    active = { row: r, column: c };
    // Scroll just enough to bring the row into view.
    const view = visibleRows();
    const lastFirst = Math.max(1, rows.length - view);
    const maxScroll = Math.max(1, box.scrollHeight - box.clientHeight);
    if (r < first) box.scrollTop = (r / lastFirst) * maxScroll;
    else if (r >= first + view) box.scrollTop = ((r - view + 1) / lastFirst) * maxScroll;
    const field = fields[c];
    if (field !== undefined) onActive({ field, value: rows[r]?.[c] ?? null, row: r, column: c });
    draw();
  }

  box.addEventListener("scroll", schedule, { passive: true });
  new ResizeObserver(schedule).observe(box);
  box.addEventListener("click", (event) => {
    const td = (event.target as Element).closest("td");
    if (td === null) return;
    activate(Number(td.dataset.row), Number(td.dataset.column));
  });
  table.addEventListener("keydown", (event) => {
    const at = active ?? { row: first, column: 0 };
    const page = visibleRows();
    const moves: Record<string, [number, number]> = {
      ArrowDown: [at.row + 1, at.column],
      ArrowUp: [at.row - 1, at.column],
      ArrowRight: [at.row, at.column + 1],
      ArrowLeft: [at.row, at.column - 1],
      PageDown: [at.row + page, at.column],
      PageUp: [at.row - page, at.column],
      Home: event.ctrlKey || event.metaKey ? [0, 0] : [at.row, 0],
      End:
        event.ctrlKey || event.metaKey ? [rows.length - 1, at.column] : [at.row, fields.length - 1],
    };
    const to = moves[event.key];
    if (to === undefined) return;
    event.preventDefault();
    activate(to[0], to[1]);
  });

  return {
    element: box,
    reset(next) {
      fields = next;
      styles = next.map((f) => styleOfType(ColumnType[f.type] ?? ""));
      rows = [];
      total = 0;
      sized = false;
      active = undefined;
      onActive(undefined);
      box.scrollTop = 0;
      box.scrollLeft = 0;
      replaceChildren(colgroup);
      replaceChildren(
        thead,
        next.length === 0
          ? undefined
          : h(
              "tr",
              { "aria-rowindex": 1 },
              ...next.map((field) =>
                h(
                  "th",
                  { scope: "col", title: fieldDescription(field) },
                  h("span", { class: "column-name" }, field.name),
                  h("span", { class: "column-type" }, typeLabel(field)),
                ),
              ),
            ),
      );
      box.hidden = next.length === 0;
      schedule();
    },
    append(row) {
      total++;
      if (rows.length < keptRowsMax) rows.push(row);
      schedule();
    },
    get rowCount() {
      return total;
    },
    get keptCount() {
      return rows.length;
    },
    flush() {
      cancelAnimationFrame(frame);
      draw();
    },
  };
}
