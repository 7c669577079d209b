/**
 * Where one SQL statement of the editor begins and ends. The gateway runs
 * exactly one statement per call (multi-statement strings are refused), so
 * Ctrl/Cmd+Enter sends the one under the cursor. Semicolons inside quotes
 * ('', "", ``) and comments (-- , #, /* *\/) do not end a statement, as in
 * MySQL's own lexer.
 */

/** A statement's text and its place in the document (`from` inclusive, `to` exclusive). */
export interface StatementRange {
  readonly from: number;
  readonly to: number;
  readonly text: string;
}

/** The offsets of the semicolons that end statements in `sql`. */
export function statementEnds(sql: string): number[] {
  const ends: number[] = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    const next = sql[i + 1];
    if (c === "'" || c === '"' || c === "`") {
      i = skipQuoted(sql, i, c);
    } else if ((c === "-" && next === "-" && /\s|$/.test(sql[i + 2] ?? "")) || c === "#") {
      const line = sql.indexOf("\n", i);
      i = line < 0 ? sql.length : line + 1;
    } else if (c === "/" && next === "*") {
      const close = sql.indexOf("*/", i + 2);
      i = close < 0 ? sql.length : close + 2;
    } else {
      if (c === ";") ends.push(i);
      i++;
    }
  }
  return ends;
}

/** Past a quoted string or name starting at `start`: a doubled quote or (in strings) a backslash escapes. */
function skipQuoted(sql: string, start: number, quote: string): number {
  let i = start + 1;
  while (i < sql.length) {
    const c = sql[i];
    if (c === "\\" && quote !== "`") {
      i += 2;
    } else if (c === quote) {
      if (sql[i + 1] !== quote) return i + 1;
      i += 2;
    } else {
      i++;
    }
  }
  return i;
}

/**
 * The statement around `cursor`: from after the previous semicolon to its own
 * (or the end), trimmed. A cursor right after a semicolon on the same line
 * belongs to the statement that semicolon ends (where typing stopped), and so
 * does a cursor in trailing whitespace. Undefined when there is no statement.
 */
export function statementAt(sql: string, cursor: number): StatementRange | undefined {
  const bounds = [-1, ...statementEnds(sql), sql.length];
  // Segment k runs from bounds[k] + 1 to bounds[k + 1].
  let k = bounds.findIndex((end, i) => i > 0 && end >= cursor) - 1;
  if (k < 0) k = bounds.length - 2;
  const start = (bounds[k] ?? -1) + 1;
  const before = sql.slice(start, cursor);
  const own = trimmed(sql, start, bounds[k + 1] ?? sql.length);
  if (k > 0 && (own === undefined || (before.trim() === "" && !before.includes("\n")))) {
    return trimmed(sql, (bounds[k - 1] ?? -1) + 1, bounds[k] ?? 0) ?? own;
  }
  return own;
}

/** `sql[from, to)` without surrounding whitespace and trailing semicolons; undefined if empty. */
export function trimmed(sql: string, from: number, to: number): StatementRange | undefined {
  let start = from;
  let end = to;
  while (start < end && /\s/.test(sql[start] ?? "")) start++;
  while (end > start && /[\s;]/.test(sql[end - 1] ?? "")) end--;
  if (start === end) return undefined;
  return { from: start, to: end, text: sql.slice(start, end) };
}
