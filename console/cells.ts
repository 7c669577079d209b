/**
 * How a result value reads in the grid. The gateway sends every value in the
 * kind that matches its column (`sqlgate.v1.Value`), and the grid shows that
 * kind as text without ever passing it through a lossy type: 64-bit integers
 * and DECIMAL as their digits, bytes as hex, temporal values as MySQL wrote
 * them, JSON as the document's own text. SQL NULL is `null` here and is drawn
 * apart from '' and 0.
 */
import type { Field, Value } from "../client/src/fetch.js";

/** What the grid keeps of one value: its text, or null for SQL NULL. */
export type Cell = string | null;

/** How a column's values are drawn (alignment, colour). */
export type CellStyle = "number" | "text" | "bytes" | "temporal" | "json" | "bool";

const hexDigits = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** `0x` and two lowercase hex digits per byte, as MySQL's `HEX()` reads (but lowercase). */
export function hexFromBytes(bytes: Uint8Array): string {
  let out = "0x";
  for (const byte of bytes) out += hexDigits[byte];
  return out;
}

/**
 * The SDK's `cast` for the grid: each value as its exact text, so that rows
 * stay small (10 million of them may stream through) and nothing is rounded.
 */
export function cellFromValue(_field: Field, value: Value): Cell {
  const kind = value.kind;
  switch (kind.case) {
    case undefined:
    case "nullValue":
      return null;
    case "int64Value":
    case "uint64Value":
    case "boolValue":
      return String(kind.value);
    case "float64Value":
      // The shortest text that reads back as the same double (what MySQL prints).
      return String(kind.value);
    case "bytesValue":
      return hexFromBytes(kind.value);
    case "stringValue":
    case "decimalValue":
    case "temporalValue":
    case "jsonValue":
      return kind.value;
  }
}

/** How to draw a column, from its reported type name (`COLUMN_TYPE_...` without the prefix). */
export function styleOfType(typeName: string): CellStyle {
  if (/INT$|^FLOAT$|^DOUBLE$|^DECIMAL$|^YEAR$/.test(typeName)) return "number";
  if (/^(BINARY|VARBINARY|BLOB|BIT|GEOMETRY)$/.test(typeName)) return "bytes";
  if (/^(DATE|DATETIME|TIMESTAMP|TIME)$/.test(typeName)) return "temporal";
  if (typeName === "JSON") return "json";
  return "text";
}

/**
 * A JSON document re-indented from its text, not parsed: numbers keep every
 * digit (JSON.parse would round 2^53 + 1) and strings are copied verbatim.
 * Text that is not JSON comes back unchanged.
 */
export function prettyJson(text: string, indent = "  "): string {
  let out = "";
  let depth = 0;
  let i = 0;
  const newline = () => `\n${indent.repeat(depth)}`;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === '"') {
      let end = i + 1;
      while (end < text.length && text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      out += text.slice(i, end + 1);
      i = end + 1;
      continue;
    }
    if (c === "{" || c === "[") {
      // An empty object or array stays on one line.
      const close = c === "{" ? "}" : "]";
      let j = i + 1;
      while (/\s/.test(text[j] ?? "")) j++;
      if (text[j] === close) {
        out += c + close;
        i = j + 1;
        continue;
      }
      depth++;
      out += c + newline();
    } else if (c === "}" || c === "]") {
      depth = Math.max(0, depth - 1);
      out += newline() + c;
    } else if (c === ",") {
      out += `,${newline()}`;
    } else if (c === ":") {
      out += ": ";
    } else if (!/\s/.test(c)) {
      out += c;
    }
    i++;
  }
  return depth === 0 ? out : text;
}

/** The longest text a grid cell holds; the value panel shows all of it. */
export const cellTextMax = 2000;

/** `text` cut to what a cell shows, with how much was left out. */
export function clipped(text: string): string {
  if (text.length <= cellTextMax) return text;
  return `${text.slice(0, cellTextMax)}… (${text.length.toLocaleString("en")} characters)`;
}
