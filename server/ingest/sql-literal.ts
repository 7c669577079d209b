/**
 * Rows as SQL text: `(1,'a',X'00ff'),(2,NULL,X'')`, ready to follow
 * `INSERT ... VALUES`. Ingest renders a call's rows once, when it arrives;
 * group commit then joins the text of many calls into one statement, and the
 * write-ahead log stores the same text, so a replay needs no decoding.
 *
 * Literals instead of placeholders: a prepared statement binds at most 65,535
 * parameters and every batch size would be a statement of its own to prepare,
 * while one text statement of many rows is a single round trip. The escaping
 * is safe because ingest connections run without `NO_BACKSLASH_ESCAPES` (see
 * mysql/database.ts): inside single quotes, MySQL then gives meaning only to
 * the quote and the backslash, which are both escaped here; the connection's
 * character set is utf8mb4, so no multi-byte sequence can swallow an escape.
 * Bytes travel as hex literals and never pass through a character set.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Row, Value } from "../../gen/sqlgate/v1/value_pb.js";

/**
 * Rows rendered as `(..),(..)` lists, cut into chunks of at most
 * `maxChunkBytes` (UTF-8) so that statements can be packed under MySQL's
 * `max_allowed_packet` without splitting a row.
 */
export interface RenderedRows {
  /** Comma-separated tuples; a chunk exceeds the limit only if one row alone does. */
  readonly chunks: readonly string[];
  /** The UTF-8 size of each chunk. */
  readonly chunkBytes: readonly number[];
  readonly rowCount: number;
  /** The sum of `chunkBytes`. */
  readonly bytes: number;
  /** The largest single row, in bytes. */
  readonly longestRowBytes: number;
  /** Rows in each chunk, when rendered here (not kept in log records). */
  readonly chunkRows?: readonly number[];
}

const needsEscape = /[\\']/;
const escapeChars = /[\\']/g;
const escapes: { readonly [c: string]: string } = { "'": "''", "\\": "\\\\" };

/**
 * A MySQL string literal for `s`. Quotes are doubled, which means a quote
 * under every sql_mode, so even a connection that somehow had
 * NO_BACKSLASH_ESCAPES could only misread a backslash, never end the string.
 */
export function stringLiteral(s: string): string {
  return needsEscape.test(s)
    ? `'${s.replace(escapeChars, (c) => escapes[c] as string)}'`
    : `'${s}'`;
}

const decimalPattern = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** The SQL literal for one value; throws `invalid_argument` naming `where`. */
export function valueLiteral(v: Value, where: () => string): string {
  const kind = v.kind;
  switch (kind.case) {
    case "nullValue":
      return "NULL";
    case "int64Value":
    case "uint64Value":
      return kind.value.toString();
    case "float64Value":
      if (!Number.isFinite(kind.value)) {
        throw invalid(`${where()}: ${kind.value} cannot be stored in MySQL`);
      }
      return String(kind.value);
    case "boolValue":
      return kind.value ? "TRUE" : "FALSE";
    case "bytesValue":
      return `X'${Buffer.from(kind.value.buffer, kind.value.byteOffset, kind.value.byteLength).toString("hex")}'`;
    case "decimalValue":
      // Quoted: an unquoted literal with an exponent would be a DOUBLE and lose digits.
      if (!decimalPattern.test(kind.value)) {
        throw invalid(`${where()}: ${JSON.stringify(kind.value)} is not a decimal number`);
      }
      return `'${kind.value}'`;
    case "stringValue":
    case "temporalValue":
    case "jsonValue":
      return stringLiteral(kind.value);
    default:
      throw invalid(`${where()} has no value set (use nullValue for NULL)`);
  }
}

/**
 * Renders `rows`, each of which must hold exactly one value per column.
 * Throws `invalid_argument` naming the first bad row and column.
 */
export function renderRows(
  rows: readonly Row[],
  columns: readonly string[],
  maxChunkBytes: number,
): RenderedRows {
  if (rows.length === 0) throw invalid("no rows given");
  const chunks: string[] = [];
  const chunkBytes: number[] = [];
  const chunkRows: number[] = [];
  let chunk = "";
  let size = 0;
  let count = 0;
  let longestRowBytes = 0;
  for (let r = 0; r < rows.length; r++) {
    const values = (rows[r] as Row).values;
    if (values.length !== columns.length) {
      throw invalid(
        `row ${r} has ${values.length} value(s) but ${columns.length} column(s) were named`,
      );
    }
    let tuple = "(";
    for (let c = 0; c < values.length; c++) {
      if (c > 0) tuple += ",";
      tuple += valueLiteral(values[c] as Value, () => `row ${r}, column ${columns[c]}`);
    }
    tuple += ")";
    const bytes = Buffer.byteLength(tuple);
    if (bytes > longestRowBytes) longestRowBytes = bytes;
    if (size > 0 && size + 1 + bytes > maxChunkBytes) {
      chunks.push(chunk);
      chunkBytes.push(size);
      chunkRows.push(count);
      chunk = "";
      size = 0;
      count = 0;
    }
    if (size === 0) {
      chunk = tuple;
      size = bytes;
    } else {
      chunk += `,${tuple}`;
      size += 1 + bytes;
    }
    count++;
  }
  chunks.push(chunk);
  chunkBytes.push(size);
  chunkRows.push(count);
  let bytes = 0;
  for (const n of chunkBytes) bytes += n;
  return { chunks, chunkBytes, chunkRows, rowCount: rows.length, bytes, longestRowBytes };
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}
