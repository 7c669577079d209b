/**
 * A failed call as the console shows it: in an element with role `alert`
 * (read out at once), with the Connect code, MySQL's errno and SQLSTATE when
 * MySQL refused the statement, its message, and for a syntax error the place
 * MySQL points at.
 */
import { DatabaseError } from "../client/src/fetch.js";
import { h } from "./dom.js";
import { ParamsError } from "./params.js";

/**
 * Where MySQL's "... near '<text>' at line <n>" points in `sql`, as an
 * offset, or undefined when the message names no place (or the place is the
 * end of the statement: `near '' at line 1`). MySQL quotes up to 80
 * characters of the statement from the failing token on, so the quoted text
 * is searched for from the start of its line.
 */
export function errorPosition(sql: string, message: string): number | undefined {
  const match = /near '([\s\S]*)' at line (\d+)\s*$/.exec(message);
  if (match === null) return undefined;
  const near = match[1] ?? "";
  const line = Number(match[2]);
  let lineStart = 0;
  for (let n = 1; n < line; n++) {
    const next = sql.indexOf("\n", lineStart);
    if (next < 0) return undefined;
    lineStart = next + 1;
  }
  if (near === "") return sql.trimEnd().length;
  const at = sql.indexOf(near, lineStart);
  return at < 0 ? undefined : at;
}

/** The line of `sql` holding `offset`, and a caret under the offset. */
export function caretExcerpt(
  sql: string,
  offset: number,
): { line: number; text: string; caret: string } {
  const start = sql.lastIndexOf("\n", offset - 1) + 1;
  const endAt = sql.indexOf("\n", offset);
  const text = sql.slice(start, endAt < 0 ? sql.length : endAt);
  const line = sql.slice(0, start).split("\n").length;
  return { line, text, caret: `${" ".repeat(offset - start)}^` };
}

/** What the results panel needs to show an error and mark the editor. */
export interface ShownError {
  readonly element: HTMLElement;
  /** The failing place in the statement text, when MySQL gave one. */
  readonly position: number | undefined;
}

/** An alert for `err`, raised by running `sql` (undefined for calls that are no statement). */
export function errorView(err: unknown, sql?: string): ShownError {
  if (err instanceof ParamsError) {
    return {
      element: h(
        "div",
        { class: "error", role: "alert" },
        h("p", { class: "error-message" }, err.message),
      ),
      position: undefined,
    };
  }
  const e = err instanceof DatabaseError ? err : undefined;
  const message = e?.sqlMessage ?? (err instanceof Error ? err.message : String(err));
  const position =
    sql !== undefined && e?.errno !== undefined ? errorPosition(sql, message) : undefined;
  const facts = h(
    "dl",
    { class: "error-facts" },
    ...fact("Code", e?.code ?? "unknown"),
    ...(e?.errno !== undefined ? fact("MySQL errno", String(e.errno)) : []),
    ...(e?.sqlState !== undefined ? fact("SQLSTATE", e.sqlState) : []),
    ...(e?.statementIndex !== undefined ? fact("Statement", String(e.statementIndex + 1)) : []),
    ...(e?.limitExceeded !== undefined ? fact("Setting", e.limitExceeded.setting) : []),
  );
  let excerpt: HTMLElement | undefined;
  if (sql !== undefined && position !== undefined) {
    const at = caretExcerpt(sql, position);
    excerpt = h(
      "pre",
      { class: "error-excerpt", "aria-label": `Line ${at.line}, column ${at.caret.length}` },
      `${at.text}\n${at.caret}`,
    );
  }
  const hint = e?.limitExceeded?.hint;
  return {
    element: h(
      "div",
      { class: "error", role: "alert" },
      facts,
      h("p", { class: "error-message" }, message),
      excerpt,
      hint ? h("p", { class: "error-hint" }, hint) : undefined,
    ),
    position,
  };
}

function fact(name: string, value: string): HTMLElement[] {
  return [h("dt", {}, name), h("dd", {}, value)];
}
