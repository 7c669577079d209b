/**
 * Vitess bind variables (`:name`, and `::name` for lists) for clients that
 * send them (MySQL-protocol proxies such as psdbproxy): each placeholder is
 * replaced by a literal of its value, so the statement still runs as one text
 * query. Literals never depend on the session's escaping rules: numbers are
 * checked to be numbers, and every other value is written as hex
 * (`_utf8mb4 X'..'` for text, `X'..'` for bytes), which no value can break out of.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { type BindVariable, Type, type Value } from "../../../gen/vitess/query/v22/query_pb.js";
import { parseSqlText } from "../../sql/sql-text.js";

/** Vitess encodes a type's properties in its number (query.proto's Flag). */
const ISINTEGRAL = 256;
const ISFLOAT = 1024;
const ISBINARY = 8192;

const integer = /^[+-]?\d+$/;
const decimal = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

function literal(name: string, value: Pick<Value, "type" | "value">): string {
  const { type } = value;
  const bytes = Buffer.from(value.value);
  if (type === Type.NULL_TYPE) return "NULL";
  const text = bytes.toString("latin1");
  if (type & ISINTEGRAL || type === Type.YEAR) {
    if (!integer.test(text))
      throw invalid(`bind variable ${name}: ${JSON.stringify(text)} is not an integer`);
    return text;
  }
  if (type & ISFLOAT || type === Type.DECIMAL) {
    if (!decimal.test(text))
      throw invalid(`bind variable ${name}: ${JSON.stringify(text)} is not a number`);
    return text;
  }
  if (bytes.byteLength === 0) return type & ISBINARY ? "X''" : "''";
  return type & ISBINARY || type === Type.BIT
    ? `X'${bytes.toString("hex")}'`
    : `_utf8mb4 X'${bytes.toString("hex")}'`;
}

function render(name: string, variable: BindVariable): string {
  if (variable.type !== Type.TUPLE) return literal(name, variable);
  if (variable.values.length === 0) throw invalid(`bind variable ${name}: an empty list`);
  return `(${variable.values.map((v) => literal(name, v)).join(", ")})`;
}

/** `query` with each `:name` placeholder replaced by its variable's literal. */
export function interpolate(
  query: string,
  variables: { readonly [name: string]: BindVariable },
): string {
  const text = parseSqlText(query);
  if (text.names === undefined || text.spans === undefined) {
    if (text.placeholderCount > 0) throw invalid("bind variables need :name placeholders, not ?");
    return query;
  }
  let out = "";
  let copied = 0;
  for (const [index, name] of text.names.entries()) {
    const variable = variables[name];
    if (variable === undefined) throw invalid(`no bind variable for :${name}`);
    const [start, end] = text.spans[index] ?? [0, 0];
    out += `${query.slice(copied, start)}${render(name, variable)}`;
    copied = end;
  }
  return out + query.slice(copied);
}
