/**
 * sqlgate's lossless `Value`s as text for people (table cells) and as JSON
 * (`--json` lines), and command-line parameters as `Value`s.
 *
 * Nothing here passes a value through a double that MySQL did not send as
 * one: 64-bit integers are printed from their `bigint` digit by digit,
 * DECIMAL from MySQL's own text, and bytes are encoded rather than decoded
 * as text (value.proto says which MySQL types map to which kind).
 */
import type { Value } from "../../gen/sqlgate/v1/value_pb.js";
import { decimal, valueFromJs } from "../src/index.js";

/**
 * A table cell: SQL NULL as `NULL` (as the mysql client prints it), integers
 * and DECIMAL with every digit, doubles in JavaScript's shortest round-trip
 * form (which reads back as the same double), bytes as `0x` and lowercase hex
 * (MySQL's hexadecimal literal, as `mysql --binary-as-hex` shows them), and
 * text, dates and JSON as the text MySQL sent.
 */
export function textFromValue(value: Value): string {
  const kind = value.kind;
  switch (kind.case) {
    case undefined:
    case "nullValue":
      return "NULL";
    case "int64Value":
    case "uint64Value":
    case "float64Value":
      return String(kind.value);
    case "boolValue":
      return kind.value ? "1" : "0";
    case "bytesValue":
      return `0x${Buffer.from(kind.value.buffer, kind.value.byteOffset, kind.value.byteLength).toString("hex")}`;
    default:
      return kind.value;
  }
}

/**
 * One value as JSON text:
 *
 * - NULL: `null`.
 * - 64-bit integers: a JSON number with every digit (`9007199254740993`), as
 *   JSON's grammar allows; `import --format ndjson` reads such numbers back
 *   exactly. (A reader that parses numbers as doubles, like `JSON.parse`,
 *   rounds those beyond 2^53; Python's `json` and `jq` 1.7 keep them.)
 * - DOUBLE and FLOAT: a JSON number (MySQL has no NaN or infinity to print).
 * - DECIMAL: a JSON string of MySQL's text (`"12.500"`), so that no reader
 *   turns it into a double.
 * - bytes: a base64 string, as the Protobuf JSON mapping (and so `buf curl`)
 *   writes bytes.
 * - a JSON column: the document itself, embedded, so tools like `jq` can walk
 *   into it; text that is not valid JSON is written as a string.
 * - text, dates and times: JSON strings of MySQL's text.
 */
export function jsonFromValue(value: Value): string {
  const kind = value.kind;
  switch (kind.case) {
    case undefined:
    case "nullValue":
      return "null";
    case "int64Value":
    case "uint64Value":
      return kind.value.toString();
    case "float64Value":
      return JSON.stringify(kind.value);
    case "boolValue":
      return kind.value ? "true" : "false";
    case "bytesValue":
      return JSON.stringify(
        Buffer.from(kind.value.buffer, kind.value.byteOffset, kind.value.byteLength).toString(
          "base64",
        ),
      );
    case "jsonValue":
      return isJson(kind.value) ? kind.value : JSON.stringify(kind.value);
    default:
      return JSON.stringify(kind.value);
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

const integerText = /^-?(0|[1-9]\d*)$/;
const decimalText = /^-?(0|[1-9]\d*)\.\d+$/;
const int64Min = -(2n ** 63n);
const uint64Max = 2n ** 64n - 1n;

/**
 * A `--param` as a `Value`. A shell gives only text, and MySQL compares a
 * string with an integer column as doubles (so `id = '9007199254740993'`
 * also matches ...992), hence:
 *
 * - `\N`: NULL, as in MySQL's LOAD DATA and `import`'s CSV.
 * - an integer written canonically (`42`, `-7`, no leading zeros) that fits
 *   in 64 bits: a BIGINT (signed, or unsigned above 2^63-1), exact.
 * - a number with a fraction (`12.50`), or an integer too wide for 64 bits:
 *   a DECIMAL, exact.
 * - anything else, including `007` and `1e3`: a string, which MySQL
 *   converts to the type the statement needs.
 */
export function valueFromParam(text: string): Value {
  if (text === "\\N") return valueFromJs(null);
  if (integerText.test(text)) {
    const n = BigInt(text);
    return n >= int64Min && n <= uint64Max ? valueFromJs(n) : decimal(text);
  }
  if (decimalText.test(text)) return decimal(text);
  return valueFromJs(text);
}
