/**
 * The files `sqlgate import` reads, as streams of records: CSV through
 * `csv-parse`, NDJSON line by line. Both read the file in 64 KiB pieces and
 * stop reading while the consumer is busy (the stream's backpressure), so
 * memory stays flat however large the file is.
 */
import { createReadStream, type ReadStream } from "node:fs";
import { parse as parseCsv } from "csv-parse";
import { parse as parseLosslessJson } from "lossless-json";

/** One record and the line of the file it ends on (where it starts, unless a quoted field spans lines), for error messages. */
export interface SourceRecord<T> {
  readonly value: T;
  readonly line: number;
}

export interface RowSource<T> {
  readonly records: AsyncIterable<SourceRecord<T>>;
  /** Bytes of the file read so far (a piece ahead of the records handed out). */
  bytesRead(): number;
}

export interface CsvOptions {
  /** The field separator (default `,`). */
  readonly delimiter?: string;
}

/**
 * A CSV file (RFC 4180: quotes, doubled quotes, line breaks inside quotes; a
 * leading BOM and blank lines are skipped) as arrays of fields. A field's
 * text is kept as it is, for MySQL to convert to the column's type, except
 * for NULL, which CSV has no spelling for. The conventions used:
 *
 * - `\N` is NULL, as MySQL's `LOAD DATA` and `SELECT ... INTO OUTFILE`
 *   write it;
 * - an empty unquoted field (`a,,b`) is NULL too, while a quoted empty field
 *   (`a,"",b`) is the empty string, as PostgreSQL's CSV COPY reads them (a
 *   spreadsheet's blank cell means "no value", and `''` would not even
 *   convert to a number or date in MySQL's strict mode).
 *
 * Records are not checked for their number of fields: the caller compares
 * them with the columns.
 *
 * csv-parse tells a quoted field from an unquoted one only through its
 * `cast` callback, which builds a context object per field and runs ten
 * times slower than parsing itself; so records come with their raw text
 * (`raw: true`, nearly free), and only a record with an empty field has its
 * raw text scanned for which empty fields were quoted. The raw text also
 * gives each record's line, counted across quoted line breaks and skipped
 * blank lines.
 */
export function readCsv(path: string, options: CsvOptions = {}): RowSource<(string | null)[]> {
  const delimiter = options.delimiter ?? ",";
  const file = createReadStream(path);
  // Field counts are checked by the caller against the columns, so that the
  // records before a short or long one still go in (an error inside
  // csv-parse drops the records it had parsed but not yet handed out).
  const parser = parseCsv({
    bom: true,
    delimiter,
    raw: true,
    skip_empty_lines: true,
    relax_column_count: true,
  });
  file.on("error", (err) => parser.destroy(err));
  file.pipe(parser);
  async function* records(): AsyncGenerator<SourceRecord<(string | null)[]>> {
    try {
      let linesBefore = 0;
      for await (const item of parser as AsyncIterable<{ record: string[]; raw: string }>) {
        const { record, raw } = item;
        let quoted: boolean[] | undefined;
        const value: (string | null)[] = record;
        for (let i = 0; i < record.length; i++) {
          const field = record[i];
          if (field === "\\N") value[i] = null;
          else if (field === "") {
            quoted ??= quotedFields(raw, delimiter);
            if (quoted[i] !== true) value[i] = null;
          }
        }
        const newlines = countNewlines(raw);
        const endsWithNewline = raw.endsWith("\n") || raw.endsWith("\r");
        yield { value, line: linesBefore + newlines + (endsWithNewline ? 0 : 1) };
        linesBefore += newlines;
      }
    } finally {
      file.destroy();
    }
  }
  return { records: records(), bytesRead: () => file.bytesRead };
}

/**
 * Line breaks in a record's raw text: `\n`, and a `\r` not followed by `\n`
 * (csv-parse's raw text of a CRLF file keeps the `\r` of a record's own
 * line ending but not its `\n`).
 */
function countNewlines(raw: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 10 || (c === 13 && raw.charCodeAt(i + 1) !== 10)) n++;
  }
  return n;
}

/** For each field of a record's raw text, whether it was quoted (`"`). */
function quotedFields(raw: string, delimiter: string): boolean[] {
  const quoted: boolean[] = [];
  let i = 0;
  // The raw text may start with the BOM or with the blank lines skipped before the record.
  while (raw[i] === "\uFEFF" || raw[i] === "\n" || raw[i] === "\r") i++;
  for (;;) {
    if (raw[i] === '"') {
      quoted.push(true);
      // To the closing quote; a doubled quote is a quote inside the field.
      for (i++; i < raw.length; i++) {
        if (raw[i] === '"') {
          if (raw[i + 1] === '"') i++;
          else break;
        }
      }
      i++;
    } else {
      quoted.push(false);
    }
    while (i < raw.length && raw[i] !== delimiter && raw[i] !== "\n" && raw[i] !== "\r") i++;
    if (raw[i] !== delimiter) return quoted;
    i++;
  }
}

/**
 * An NDJSON file (one JSON value per line; blank lines skipped) as parsed
 * values. JSON numbers that are integers (no fraction, no exponent) are read
 * exactly: within ±(2^53-1) as numbers, beyond as `bigint`, so that a BIGINT
 * id such as 9007199254740993 reaches MySQL with every digit. Other numbers
 * are doubles, as `JSON.parse` reads them; write a DECIMAL as a JSON string
 * (`"12.345678901234567890"`) to keep it exact.
 *
 * Node 20's `JSON.parse` cannot show a number's source text, so a line that
 * holds a run of 16 or more digits (the only way to write an integer of
 * 2^53 or more) is parsed with lossless-json instead; every other line takes
 * the native parser, which is exact for its integers.
 */
export function readNdjson(path: string): RowSource<unknown> {
  const file = createReadStream(path, { encoding: "utf8" });
  async function* records(): AsyncGenerator<SourceRecord<unknown>> {
    try {
      let rest = "";
      let line = 0;
      for await (const piece of file as ReadStream & AsyncIterable<string>) {
        const text = rest + piece;
        let start = 0;
        for (let end = text.indexOf("\n"); end !== -1; end = text.indexOf("\n", start)) {
          line++;
          const record = parseLine(text.slice(start, end), line);
          if (record !== undefined) yield record;
          start = end + 1;
        }
        rest = text.slice(start);
      }
      const last = parseLine(rest, line + 1);
      if (last !== undefined) yield last;
    } finally {
      file.destroy();
    }
  }
  return { records: records(), bytesRead: () => file.bytesRead };
}

const longDigitRun = /\d{16}/;
const integerLiteral = /^-?\d+$/;

function parseLine(text: string, line: number): SourceRecord<unknown> | undefined {
  if (text.trim() === "") return undefined;
  try {
    const value = longDigitRun.test(text)
      ? parseLosslessJson(text, null, numberFromLiteral)
      : JSON.parse(text);
    return { value, line };
  } catch (err) {
    throw new Error(`line ${line}: not JSON: ${(err as Error).message}`);
  }
}

function numberFromLiteral(literal: string): number | bigint {
  if (!integerLiteral.test(literal)) return Number(literal);
  const n = Number(literal);
  return Number.isSafeInteger(n) ? n : BigInt(literal);
}
