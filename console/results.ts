/**
 * The results panel: a status line (rows, rows affected, last insert id,
 * warnings, where the time went), the error alert, the grid, and the value
 * panel showing the active cell whole (JSON pretty-printed, bytes counted).
 */
import { ColumnType } from "../client/src/fetch.js";
import { prettyJson } from "./cells.js";
import type { RunSummary } from "./connection.js";
import { h, replaceChildren } from "./dom.js";
import { errorView } from "./errors.js";
import { type ActiveCell, createGrid, type Grid, keptRowsMax, typeLabel } from "./grid.js";

export interface Results {
  readonly element: HTMLElement;
  readonly grid: Grid;
  /** A statement started: clears the panel and shows progress until `finish` or `fail`. */
  start(): void;
  finish(summary: RunSummary | undefined, elapsedMs: number, stopped: boolean): void;
  /** Shows `err` for `sql`; returns where MySQL points in `sql`, if it does. */
  fail(err: unknown, sql?: string): number | undefined;
}

const count = (n: number | bigint, one: string, many = `${one}s`) =>
  `${n.toLocaleString("en")} ${n === 1 || n === 1n ? one : many}`;

/** Microseconds as a person reads them. */
export function duration(us: number): string {
  if (us < 1000) return `${us} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

export function createResults(): Results {
  const status = h("p", { class: "status", role: "status" }, "Run a statement with Ctrl+Enter.");
  const alerts = h("div", { class: "alerts" });
  const valuePanel = h("section", { class: "value-panel", "aria-label": "Value", hidden: true });
  const grid = createGrid((cell) => showValue(cell));
  const element = h(
    "section",
    { class: "results", "aria-label": "Results", "aria-busy": "false" },
    status,
    alerts,
    h("div", { class: "results-body" }, grid.element, valuePanel),
  );
  grid.reset([]);

  let ticker: ReturnType<typeof setInterval> | undefined;
  let started = 0;

  function showValue(cell: ActiveCell | undefined): void {
    valuePanel.hidden = cell === undefined;
    if (cell === undefined) return;
    const { field, value } = cell;
    let text: string;
    let note: string;
    if (value === null) {
      text = "NULL";
      note = "SQL NULL";
    } else if (field.type === ColumnType.JSON) {
      text = prettyJson(value);
      note = count(value.length, "character");
    } else if (
      value.startsWith("0x") &&
      /^(BINARY|VARBINARY|BLOB|BIT|GEOMETRY)$/.test(ColumnType[field.type] ?? "")
    ) {
      text = value;
      note = count((value.length - 2) / 2, "byte");
    } else {
      text = value;
      note = value === "" ? "empty string" : count([...value].length, "character");
    }
    replaceChildren(
      valuePanel,
      h(
        "h2",
        {},
        field.name,
        " ",
        h(
          "span",
          { class: "column-type" },
          `${typeLabel(field)} · row ${(cell.row + 1).toLocaleString("en")} · ${note}`,
        ),
      ),
      h(
        "pre",
        {
          class: value === null ? "null" : undefined,
          tabindex: 0,
          "aria-label": `Value of ${field.name}`,
        },
        text,
      ),
    );
  }

  const progress = () => {
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    status.textContent = `Running… ${count(grid.rowCount, "row")} (${seconds} s)`;
  };

  return {
    element,
    grid,
    start() {
      replaceChildren(alerts);
      grid.reset([]);
      started = performance.now();
      status.textContent = "Running…";
      status.classList.add("running");
      element.setAttribute("aria-busy", "true");
      clearInterval(ticker);
      ticker = setInterval(progress, 250);
    },
    finish(summary, elapsedMs, stopped) {
      clearInterval(ticker);
      grid.flush();
      element.setAttribute("aria-busy", "false");
      status.classList.remove("running");
      const parts: string[] = [];
      const rows = grid.rowCount;
      if (stopped) parts.push(`Stopped after ${count(rows, "row")}`);
      else if (!grid.element.hidden) parts.push(count(rows, "row"));
      if (rows > keptRowsMax)
        parts.push(`the first ${count(keptRowsMax, "row")} kept for scrolling`);
      if (summary !== undefined) {
        if (summary.truncated)
          parts.push("truncated at the gateway's row limit: use a narrower query");
        if (!summary.streamed) parts.push(`${count(summary.rowsAffected, "row")} affected`);
        if (summary.lastInsertId !== 0n) parts.push(`last insert id ${summary.lastInsertId}`);
        parts.push(count(summary.warningCount, "warning"));
        if (summary.info !== "") parts.push(summary.info);
        if (summary.timing !== undefined) {
          parts.push(`server ${duration(summary.timing.serverUs)}`);
          if (summary.timing.mysqlUs > 0) parts.push(`MySQL ${duration(summary.timing.mysqlUs)}`);
        }
      }
      parts.push(`round trip ${duration(Math.round(elapsedMs * 1000))}`);
      status.textContent = parts.join(" · ");
    },
    fail(err, sql) {
      clearInterval(ticker);
      grid.flush();
      element.setAttribute("aria-busy", "false");
      status.classList.remove("running");
      const rows = grid.rowCount;
      status.textContent = rows > 0 ? `Failed after ${count(rows, "row")}` : "Failed";
      const shown = errorView(err, sql);
      replaceChildren(alerts, shown.element);
      return shown.position;
    },
  };
}
