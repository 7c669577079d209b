/**
 * JavaScript values to sqlgate's lossless `Value` message, for parameters and
 * ingested rows.
 *
 * Every choice below keeps the value exact on its way to MySQL: the gateway
 * binds each kind as the matching MySQL parameter type, and MySQL converts it
 * to the column's type exactly as it would convert a literal in an INSERT.
 * What cannot be sent exactly is refused with `invalid_argument` here, before
 * anything leaves the process, rather than rounded on the way.
 */
import { create, isMessage } from "@bufbuild/protobuf";
import { NullValue } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Row, RowSchema, type Value, ValueSchema } from "../../gen/sqlgate/v1/value_pb.js";

const int64Min = -(2n ** 63n);
const int64Max = 2n ** 63n - 1n;
const uint64Max = 2n ** 64n - 1n;

/**
 * The `Value` for one JavaScript value:
 *
 * - `null` and `undefined`: SQL NULL (`null_value`), never `''` or `0`.
 * - `bigint`: `int64_value` from -2^63 to 2^63-1, `uint64_value` above that up
 *   to 2^64-1 (BIGINT UNSIGNED); anything wider does not fit any MySQL integer
 *   and is refused.
 * - `number`: an integer within the int64 range is sent as `int64_value`, so
 *   that `42` reaches an INT or BIGINT column without passing through a double;
 *   every other number (fractions, integers beyond 2^63, `NaN`, `Infinity`) as
 *   `float64_value`. A JavaScript number is already a double, so an unsafe
 *   integer such as `2 ** 60` is sent as exactly the double it holds; use a
 *   `bigint` for 64-bit ids.
 * - `string`: `string_value`. MySQL converts text into any column type, so a
 *   string is also the exact way to write DECIMAL (`"12.500"`), dates in
 *   MySQL's own form and ENUM/SET values.
 * - `Uint8Array` (and so Node's `Buffer`) or `ArrayBuffer`: `bytes_value`,
 *   byte for byte, never decoded as text.
 * - `boolean`: `bool_value` (MySQL stores 1 or 0).
 * - `Date`: `temporal_value` in MySQL's text form `YYYY-MM-DD HH:MM:SS.ffffff`
 *   in UTC. A Date is an instant and MySQL's DATETIME has no time zone, so UTC
 *   is the one choice that does not depend on the machine's zone; the six
 *   digits keep the Date's milliseconds whatever the column's precision
 *   (MySQL rounds or truncates to the column, as for any literal).
 * - a plain object (`{...}` or `Object.create(null)`) or an array:
 *   `json_value`, as `JSON.stringify` writes it. A `bigint` inside is refused
 *   (JSON.stringify cannot write one exactly); pass the JSON text through
 *   {@link json} to control the text yourself.
 * - a `Value` message (for example from {@link decimal}, {@link temporal} or
 *   {@link json}): sent unchanged, for when the kind must be explicit.
 *
 * Anything else (functions, symbols, `Map`, class instances, invalid Dates)
 * fails with a `ConnectError` of code `invalid_argument`.
 */
export function valueFromJs(value: unknown): Value {
  switch (typeof value) {
    case "undefined":
      return create(ValueSchema, { kind: { case: "nullValue", value: NullValue.NULL_VALUE } });
    case "bigint":
      if (value >= int64Min && value <= int64Max) {
        return create(ValueSchema, { kind: { case: "int64Value", value } });
      }
      if (value > int64Max && value <= uint64Max) {
        return create(ValueSchema, { kind: { case: "uint64Value", value } });
      }
      throw invalid(`${value} does not fit in a 64-bit integer`);
    case "number":
      if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) {
        return create(ValueSchema, { kind: { case: "int64Value", value: BigInt(value) } });
      }
      return create(ValueSchema, { kind: { case: "float64Value", value } });
    case "string":
      return create(ValueSchema, { kind: { case: "stringValue", value } });
    case "boolean":
      return create(ValueSchema, { kind: { case: "boolValue", value } });
    case "object":
      return valueFromObject(value);
    default:
      throw invalid(`a ${typeof value} has no SQL value`);
  }
}

function valueFromObject(value: object | null): Value {
  if (value === null) {
    return create(ValueSchema, { kind: { case: "nullValue", value: NullValue.NULL_VALUE } });
  }
  if (isMessage(value, ValueSchema)) return value;
  if (value instanceof Uint8Array) {
    return create(ValueSchema, { kind: { case: "bytesValue", value } });
  }
  if (value instanceof ArrayBuffer) {
    return create(ValueSchema, { kind: { case: "bytesValue", value: new Uint8Array(value) } });
  }
  if (value instanceof Date) {
    return create(ValueSchema, { kind: { case: "temporalValue", value: temporalFromDate(value) } });
  }
  const proto = Object.getPrototypeOf(value);
  if (Array.isArray(value) || proto === Object.prototype || proto === null) {
    let text: string;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      throw invalid(`cannot write as JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    return create(ValueSchema, { kind: { case: "jsonValue", value: text } });
  }
  const name = (proto as { constructor?: { name?: string } }).constructor?.name ?? "object";
  throw invalid(`a ${name} has no SQL value; convert it to a string, number or Uint8Array`);
}

/** `date` as MySQL's DATETIME text `YYYY-MM-DD HH:MM:SS.ffffff`, in UTC. */
export function temporalFromDate(date: Date): string {
  const ms = date.getTime();
  if (Number.isNaN(ms)) throw invalid("an invalid Date has no SQL value");
  const year = date.getUTCFullYear();
  // MySQL's text form has a four-digit year; DATETIME's supported range is
  // 1000 to 9999 and MySQL decides what it does with years before that.
  if (year < 0 || year > 9999) throw invalid(`year ${year} has no DATETIME form`);
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return (
    `${pad(year, 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} ` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.` +
    `${pad(date.getUTCMilliseconds(), 3)}000`
  );
}

/** A DECIMAL given as exact text (`"-12.500"`), sent as `decimal_value`. */
export function decimal(text: string): Value {
  return create(ValueSchema, { kind: { case: "decimalValue", value: text } });
}

/** A date or time in MySQL's text form (`"2024-02-29 23:59:59.000001"`, `"-838:59:59"`). */
export function temporal(text: string): Value {
  return create(ValueSchema, { kind: { case: "temporalValue", value: text } });
}

/** A JSON document given as its text, sent as `json_value` without reparsing. */
export function json(text: string): Value {
  return create(ValueSchema, { kind: { case: "jsonValue", value: text } });
}

/**
 * One row for `columns`: each value through {@link valueFromJs}. A wrong
 * length or a value without a SQL form fails with `invalid_argument` naming
 * the column, so that the bad row is found without reading the gateway's logs.
 */
export function rowFromJs(values: readonly unknown[], columns: readonly string[]): Row {
  if (!Array.isArray(values)) throw invalid("a row is an array of values, one per column");
  if (values.length !== columns.length) {
    throw invalid(`a row has ${values.length} values for ${columns.length} columns`);
  }
  return create(RowSchema, {
    values: values.map((v, i) => {
      try {
        return valueFromJs(v);
      } catch (err) {
        if (err instanceof ConnectError) {
          throw new ConnectError(`column ${columns[i]}: ${err.rawMessage}`, err.code);
        }
        throw err;
      }
    }),
  });
}

/**
 * About how many bytes `row` takes on the wire: enough to cut chunks near a
 * size without encoding every row twice. Text is counted in UTF-16 units,
 * which is the UTF-8 size for ASCII and within a factor of three otherwise.
 */
export function approxRowBytes(row: Row): number {
  let bytes = 2;
  for (const v of row.values) {
    switch (v.kind.case) {
      case "stringValue":
      case "decimalValue":
      case "temporalValue":
      case "jsonValue":
      case "bytesValue":
        bytes += v.kind.value.length + 4;
        break;
      default:
        bytes += 11;
    }
  }
  return bytes;
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}
