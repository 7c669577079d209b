/**
 * sqlgate's lossless `Value` messages to JavaScript values, and result rows
 * to objects or arrays.
 *
 * The gateway sends every value in the kind that matches its column (README,
 * "Lossless values"), so nothing here guesses from text: the only choices are
 * how a JavaScript program wants to hold what MySQL holds. The defaults keep
 * every value exact; each option that gives up exactness for convenience
 * says so, and refuses a value it would change rather than change it.
 *
 * | MySQL type                          | default            | option                     |
 * |-------------------------------------|--------------------|----------------------------|
 * | TINYINT, SMALLINT, MEDIUMINT, INT   | `number`           | (always exact)             |
 * | BIGINT, BIGINT UNSIGNED, other int64| `bigint`           | `int64: "number"/"string"` |
 * | FLOAT, DOUBLE                       | `number`           |                            |
 * | DECIMAL                             | `string` ("1.10")  | `cast`                     |
 * | CHAR, VARCHAR, TEXT, ENUM, SET      | `string`           |                            |
 * | BINARY, VARBINARY, BLOB, BIT, GEOMETRY | `Uint8Array`    |                            |
 * | DATE, DATETIME, TIMESTAMP           | `string`           | `temporal: "date"`         |
 * | TIME, YEAR                          | `string`           | (not instants: strings)    |
 * | JSON                                | parsed value       | `json: "text"`             |
 * | NULL                                | `null`             |                            |
 *
 * `cast(field, value, next)` overrides any of it per column, as
 * `@planetscale/database`'s `cast` does; `next()` is the default conversion.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { ColumnType, type Field, type Row, type Value } from "../../gen/sqlgate/v1/value_pb.js";
import { DatabaseError } from "./database-error.js";

/**
 * How 64-bit integers (BIGINT, BIGINT UNSIGNED, and integer expressions such
 * as `COUNT(*)` or `UNIX_TIMESTAMP()`, which MySQL types as BIGINT) arrive:
 * - `"bigint"` (default): exact, always.
 * - `"number"`: a `number`; a value beyond Number.MAX_SAFE_INTEGER (2^53-1)
 *   fails the call with `out_of_range` naming the column, rather than being
 *   rounded (or arriving as another type in some rows only).
 * - `"string"`: the decimal text, exact (what `@planetscale/database` gives).
 */
export type Int64Mode = "bigint" | "number" | "string";

/**
 * How DATE, DATETIME and TIMESTAMP arrive:
 * - `"string"` (default): MySQL's text, exact ("2024-02-29 12:34:56.000001").
 * - `"date"`: a `Date`, reading the text as UTC (the zone `valueFromJs`
 *   writes Dates in, so a Date round-trips); microseconds beyond the
 *   millisecond are cut. A TIMESTAMP's text is in the MySQL session's
 *   `time_zone`, so this is its instant only when that zone is UTC. A value
 *   that is no day (MySQL's zero date `0000-00-00`) fails the call with
 *   `out_of_range`. TIME and YEAR are not instants and stay strings.
 */
export type TemporalMode = "string" | "date";

/**
 * How JSON documents arrive: `"parse"` (default) as `JSON.parse` reads them
 * (so numbers past 2^53 in a document lose precision, as in any JSON.parse),
 * or `"text"`: the document as MySQL holds it.
 */
export type JsonMode = "parse" | "text";

/**
 * A per-column override of the conversion: `field` is the column, `value`
 * the lossless `Value` (`value.kind.case` says its kind), and `next()` the
 * SDK's default conversion of that value under the call's options.
 */
export type Cast = (field: Field, value: Value, next: () => unknown) => unknown;

/** How result values become JavaScript values; see the table on this module. */
export interface ValueOptions {
  readonly int64?: Int64Mode;
  readonly temporal?: TemporalMode;
  readonly json?: JsonMode;
  /** Runs for every value of every column; returns what the row holds. */
  readonly cast?: Cast;
}

/** The shape of rows: objects keyed by column name (default), or arrays in field order. */
export type RowShape = "object" | "array";

/** Integer column types that always fit a `number` exactly (INT UNSIGNED tops at 2^32-1). */
const smallIntegerTypes: ReadonlySet<ColumnType> = new Set([
  ColumnType.TINYINT,
  ColumnType.SMALLINT,
  ColumnType.MEDIUMINT,
  ColumnType.INT,
]);

/**
 * The SDK's default conversion of one value of `field` (without `cast`):
 * the table on this module. Exported so that a `cast` outside a call, or a
 * caller of the raw transport, converts exactly as the SDK does.
 */
export function castValue(field: Field, value: Value, options: ValueOptions = {}): unknown {
  const kind = value.kind;
  switch (kind.case) {
    case undefined:
    case "nullValue":
      return null;
    case "int64Value":
      if (smallIntegerTypes.has(field.type)) return Number(kind.value);
      return int64(field, kind.value, options.int64);
    case "uint64Value":
      return int64(field, kind.value, options.int64);
    case "float64Value":
    case "stringValue":
    case "decimalValue":
    case "boolValue":
      return kind.value;
    case "bytesValue":
      return ownBytes(kind.value);
    case "temporalValue":
      return options.temporal === "date" ? dateFromTemporal(field, kind.value) : kind.value;
    case "jsonValue":
      if (options.json === "text") return kind.value;
      try {
        return JSON.parse(kind.value);
      } catch (err) {
        throw fieldError(field, `not a JSON document (${String(err)})`, Code.DataLoss);
      }
  }
}

function int64(field: Field, value: bigint, mode: Int64Mode | undefined): unknown {
  switch (mode) {
    case undefined:
    case "bigint":
      return value;
    case "string":
      return value.toString();
    case "number": {
      const n = Number(value);
      if (!Number.isSafeInteger(n)) {
        throw fieldError(
          field,
          `${value} is beyond Number.MAX_SAFE_INTEGER; read it with int64: "bigint" or "string"`,
          Code.OutOfRange,
        );
      }
      return n;
    }
    default:
      throw new TypeError(`int64: expected "bigint", "number" or "string", got ${String(mode)}`);
  }
}

/**
 * Bytes the caller owns, as a plain `Uint8Array`. A binary response decodes
 * `bytes` fields as views into the whole response buffer (and connect-node's
 * buffers are Node `Buffer`s); handing such a view out would keep a whole
 * chunk of a stream alive for one small value, and give Node callers a
 * different type than everyone else.
 */
function ownBytes(bytes: Uint8Array): Uint8Array {
  if (
    bytes.constructor === Uint8Array &&
    bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength
  ) {
    return bytes;
  }
  return new Uint8Array(bytes);
}

const dateText = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?)?$/;

/** DATE/DATETIME/TIMESTAMP text as a UTC `Date`; TIME and YEAR text unchanged. */
function dateFromTemporal(field: Field, text: string): unknown {
  const m = dateText.exec(text);
  if (m === null) return text;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map((p) => Number(p ?? 0)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const ms = Number((m[7] ?? "").padEnd(3, "0").slice(0, 3));
  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not read years 0..99 as 1900..1999.
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, ms);
  if (
    date.getUTCFullYear() !== year ||
    date.getUTCMonth() !== month - 1 ||
    date.getUTCDate() !== day
  ) {
    throw fieldError(
      field,
      `${text} is no calendar day, so it has no Date; read it with temporal: "string"`,
      Code.OutOfRange,
    );
  }
  return date;
}

function fieldError(field: Field, message: string, code: Code): DatabaseError {
  return new DatabaseError(new ConnectError(`column ${field.name}: ${message}`, code));
}

/** A function from one wire row to the row the caller gets. */
export type RowDecoder = (row: Row) => unknown;

/**
 * The decoder for rows of `fields`: each column's conversion is chosen once,
 * not per value. In object mode, two columns with one name (`SELECT a.id,
 * b.id ...`) fail the call with `invalid_argument` naming them, before any
 * row is decoded: an object can hold only one of them, and keeping either
 * silently (as `@planetscale/database` and mysql2 keep the last) loses data.
 * Give the columns aliases, or read with `as: "array"`.
 */
export function createRowDecoder(
  fields: readonly Field[],
  shape: RowShape,
  options: ValueOptions,
): RowDecoder {
  const convert = fields.map((field) => converterFor(field, options));
  if (shape === "array") {
    return (row) => {
      const values = row.values;
      const out = new Array<unknown>(values.length);
      for (let i = 0; i < values.length; i++) out[i] = convertAt(convert, i, values[i]);
      return out;
    };
  }
  if (shape !== "object") {
    throw new TypeError(`as: expected "object" or "array", got ${String(shape)}`);
  }
  const names = fields.map((f) => f.name);
  const duplicates = names.filter((name, i) => names.indexOf(name) !== i);
  if (duplicates.length > 0) {
    throw new DatabaseError(
      new ConnectError(
        `the result has more than one column named ${[...new Set(duplicates)].join(", ")}: ` +
          `give them aliases (AS), or read the rows with as: "array"`,
        Code.InvalidArgument,
      ),
    );
  }
  // A column named __proto__ must become a property, not the row's prototype.
  const hasProtoKey = names.includes("__proto__");
  return (row) => {
    const values = row.values;
    const out: Record<string, unknown> = {};
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      const value = convertAt(convert, i, values[i]);
      if (hasProtoKey && name === "__proto__") {
        Object.defineProperty(out, name, { value, enumerable: true, writable: true });
      } else {
        out[name] = value;
      }
    }
    return out;
  };
}

function convertAt(
  convert: readonly ((v: Value) => unknown)[],
  i: number,
  value: Value | undefined,
): unknown {
  const f = convert[i];
  if (f === undefined || value === undefined) {
    throw new DatabaseError(
      new ConnectError("a row's values do not match the result's fields", Code.Internal),
    );
  }
  return f(value);
}

function converterFor(field: Field, options: ValueOptions): (value: Value) => unknown {
  const cast = options.cast;
  if (cast === undefined) return (value) => castValue(field, value, options);
  return (value) => cast(field, value, () => castValue(field, value, options));
}

/**
 * The value options set in `options` (a client's or a call's option bag),
 * without the keys left undefined, so that spreading a call's options over
 * a client's defaults overrides only what the call sets.
 */
export function pickValueOptions(options: ValueOptions): ValueOptions {
  return {
    ...(options.int64 !== undefined ? { int64: options.int64 } : {}),
    ...(options.temporal !== undefined ? { temporal: options.temporal } : {}),
    ...(options.json !== undefined ? { json: options.json } : {}),
    ...(options.cast !== undefined ? { cast: options.cast } : {}),
  };
}
