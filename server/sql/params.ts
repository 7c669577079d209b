/**
 * Turns request parameters into mysql2 bind values for a server-side prepared
 * statement. Values are sent typed (COM_STMT_EXECUTE carries a type per
 * parameter), never interpolated into the SQL text, so no escaping rule and no
 * sql_mode such as NO_BACKSLASH_ESCAPES can turn a value into SQL.
 */
import { toJson } from "@bufbuild/protobuf";
import { type Value as JsonValueMessage, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import mysql from "mysql2";
import type { Value } from "../../gen/sqlgate/v1/value_pb.js";
import type { SqlText } from "./sql-text.js";

const { TypedParameter } = mysql;

/** The parameter fields shared by ExecuteRequest, StreamExecuteRequest and Statement. */
export interface StatementParams {
  readonly params: readonly JsonValueMessage[];
  readonly typedParams: readonly Value[];
  readonly namedParams: { readonly [name: string]: JsonValueMessage };
  readonly typedNamedParams: { readonly [name: string]: Value };
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** The bind values for `text`, in placeholder order. Throws `invalid_argument` on a mismatch. */
export function bindValues(text: SqlText, p: StatementParams): unknown[] {
  const namedJson = Object.keys(p.namedParams);
  const namedTyped = Object.keys(p.typedNamedParams);
  if (text.names === undefined) {
    if (namedJson.length > 0 || namedTyped.length > 0) {
      throw invalid("named parameters given, but the statement has no `:name` placeholders");
    }
    if (p.params.length > 0 && p.typedParams.length > 0) {
      throw invalid("give either `params` or `typedParams`, not both");
    }
    const given = p.params.length + p.typedParams.length;
    if (given !== text.placeholderCount) {
      throw invalid(
        `the statement has ${text.placeholderCount} placeholder(s) but ${given} parameter(s) were given`,
      );
    }
    return p.typedParams.length > 0
      ? p.typedParams.map((v, i) => fromTypedValue(v, `parameter ${i + 1}`))
      : p.params.map(fromJsonValue);
  }
  if (p.params.length > 0 || p.typedParams.length > 0) {
    throw invalid("positional parameters given, but the statement uses `:name` placeholders");
  }
  const used = new Set(text.names);
  for (const name of [...namedJson, ...namedTyped]) {
    if (!used.has(name)) throw invalid(`named parameter :${name} does not appear in the statement`);
  }
  return text.names.map((name) => {
    const typed = p.typedNamedParams[name];
    if (typed !== undefined) {
      if (p.namedParams[name] !== undefined) {
        throw invalid(`:${name} is given in both namedParams and typedNamedParams`);
      }
      return fromTypedValue(typed, `:${name}`);
    }
    const json = p.namedParams[name];
    if (json === undefined) throw invalid(`missing named parameter :${name}`);
    return fromJsonValue(json);
  });
}

/**
 * A plain JSON parameter. Integral numbers bind as BIGINT so that `? + 1`
 * stays an integer; other numbers as DOUBLE; objects and arrays as JSON text.
 */
function fromJsonValue(v: JsonValueMessage): unknown {
  const kind = v.kind;
  switch (kind.case) {
    case "numberValue":
      return Number.isSafeInteger(kind.value) ? TypedParameter.BIGINT(kind.value) : kind.value;
    case "stringValue":
      return wellFormed(kind.value, "a parameter");
    case "boolValue":
      return kind.value;
    case "structValue":
    case "listValue":
      try {
        return JSON.stringify(toJson(ValueSchema, v));
      } catch (err) {
        // A binary request can carry NaN or Infinity inside, which JSON cannot spell.
        throw invalid(
          `a parameter's JSON document: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
    default:
      return null;
  }
}

/**
 * `text`, if it is well-formed Unicode. JSON's `\ud800` escapes can spell a
 * lone surrogate, which has no UTF-8 form: mysql2 would send U+FFFD instead.
 */
function wellFormed(text: string, where: string): string {
  // In `u` mode a pair is one code point: only a lone surrogate matches.
  if (/\p{Cs}/u.test(text)) {
    throw invalid(`${where} holds a lone UTF-16 surrogate: not Unicode text`);
  }
  return text;
}

/** A lossless parameter, bound with the MySQL type its kind names. */
function fromTypedValue(v: Value, where: string): unknown {
  const kind = v.kind;
  switch (kind.case) {
    case "nullValue":
      return null;
    case "int64Value":
      return TypedParameter.BIGINT(kind.value);
    case "uint64Value":
      return TypedParameter.BIGINT.unsigned(kind.value);
    case "float64Value":
      return kind.value;
    case "stringValue":
    case "temporalValue":
    case "jsonValue":
      // MariaDB rejects the JSON bind type; MySQL converts text to DATE/TIME/JSON exactly.
      return wellFormed(kind.value, where);
    case "decimalValue":
      if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(kind.value)) {
        throw invalid(`${where}: ${JSON.stringify(kind.value)} is not a decimal number`);
      }
      return TypedParameter.DECIMAL(kind.value);
    case "bytesValue":
      return Buffer.from(kind.value.buffer, kind.value.byteOffset, kind.value.byteLength);
    case "boolValue":
      return kind.value;
    default:
      throw invalid(`${where} has no value set (use nullValue for NULL)`);
  }
}
