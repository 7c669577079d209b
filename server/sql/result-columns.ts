/**
 * Column metadata and lossless value conversion for results read with mysql2's
 * binary protocol (prepared statements) and these connection options:
 * `supportBigNumbers` without `bigNumberStrings` (a BIGINT as a number when
 * it is a safe integer, else as decimal text: lossless either way, and
 * mysql2 skips its 64-bit arithmetic library for the common case),
 * `dateStrings` (temporal values as text), `jsonStrings`, `decimalNumbers:
 * false` (DECIMAL as text) and `rowsAsArray`. GEOMETRY arrives as raw bytes
 * through a type cast (see execute-statement.ts).
 *
 * For each result, `describeColumns` builds the proto `Field`s and one
 * converter per column once, so that converting a row is one call per cell
 * with no type dispatch.
 */
import { NullValue } from "@bufbuild/protobuf/wkt";
import mysql from "mysql2";
import { ColumnType, type Field, type Row, type Value } from "../../gen/sqlgate/v1/value_pb.js";

/** MySQL protocol column types (include/mysql_com.h, enum_field_types). */
const T = {
  DECIMAL: 0,
  TINY: 1,
  SHORT: 2,
  LONG: 3,
  FLOAT: 4,
  DOUBLE: 5,
  NULL: 6,
  TIMESTAMP: 7,
  LONGLONG: 8,
  INT24: 9,
  DATE: 10,
  TIME: 11,
  DATETIME: 12,
  YEAR: 13,
  NEWDATE: 14,
  VARCHAR: 15,
  BIT: 16,
  JSON: 245,
  NEWDECIMAL: 246,
  ENUM: 247,
  SET: 248,
  TINY_BLOB: 249,
  MEDIUM_BLOB: 250,
  LONG_BLOB: 251,
  BLOB: 252,
  VAR_STRING: 253,
  STRING: 254,
  GEOMETRY: 255,
} as const;

/** Column flags (include/mysql_com.h). */
const NOT_NULL_FLAG = 1;
const UNSIGNED_FLAG = 32;
const ENUM_FLAG = 256;
const SET_FLAG = 2048;
/** Character set number of the binary pseudo-charset. */
const BINARY_CHARSET = 63;
/** The `decimals` that MySQL (31) and MariaDB (39) report for "not fixed". */
const NOT_FIXED_DEC = 31;

/** The subset of mysql2's ColumnDefinition this module reads. */
export interface MysqlField {
  readonly name: string;
  readonly orgName: string;
  readonly table: string;
  readonly orgTable: string;
  readonly schema: string;
  readonly columnType: number;
  readonly flags: number;
  readonly characterSet: number;
  readonly columnLength: number;
  readonly decimals: number;
  readonly extendedFormat?: string;
}

export type Kind = Value["kind"];
/** Converts one non-NULL cell as mysql2 delivers it. */
type CellConverter = (cell: unknown) => Kind;

export interface ResultColumns {
  readonly fields: Field[];
  /** One mysql2 row (an array, as with rowsAsArray) as one Value kind per column. */
  readonly kindsOf: (cells: readonly unknown[]) => Kind[];
}

const nullKind: Kind = { case: "nullValue", value: NullValue.NULL_VALUE };

const charsetNames: ReadonlyMap<number, string> = new Map(
  Object.entries((mysql as unknown as { Charsets: Record<string, number> }).Charsets).map(
    ([collation, id]) => [id, collation.split("_")[0]?.toLowerCase() ?? ""],
  ),
);

/** Builds field metadata and converters for one result's columns. */
export function describeColumns(mysqlFields: readonly MysqlField[]): ResultColumns {
  const fields = mysqlFields.map(fieldFromMysql);
  const converters = mysqlFields.map(converterFor);
  const count = converters.length;
  const kindsOf = (cells: readonly unknown[]): Kind[] => {
    const kinds: Kind[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const cell = cells[i];
      kinds[i] =
        cell === null || cell === undefined ? nullKind : (converters[i] as CellConverter)(cell);
    }
    return kinds;
  };
  return { fields, kindsOf };
}

/** A proto Row holding these values. */
export function rowFromKinds(kinds: readonly Kind[]): Row {
  return {
    $typeName: "sqlgate.v1.Row",
    values: kinds.map((kind) => ({ $typeName: "sqlgate.v1.Value", kind })),
  };
}

/** Rough encoded size in bytes of a row with these values, for limits and chunking. */
export function sizeOfKinds(kinds: readonly Kind[]): number {
  let size = 2;
  for (const kind of kinds) {
    const value = kind.value;
    size += 3;
    if (typeof value === "string") size += value.length;
    else if (value instanceof Uint8Array) size += value.byteLength;
    else size += 8;
  }
  return size;
}

function isBinary(f: MysqlField): boolean {
  return f.characterSet === BINARY_CHARSET;
}

function isJson(f: MysqlField): boolean {
  return f.columnType === T.JSON || f.extendedFormat === "json";
}

/** The proto column type for a MySQL column, with charset and flags applied. */
export function columnTypeOf(f: MysqlField): ColumnType {
  if (isJson(f)) return ColumnType.JSON;
  switch (f.columnType) {
    case T.DECIMAL:
    case T.NEWDECIMAL:
      return ColumnType.DECIMAL;
    case T.TINY:
      return ColumnType.TINYINT;
    case T.SHORT:
      return ColumnType.SMALLINT;
    case T.INT24:
      return ColumnType.MEDIUMINT;
    case T.LONG:
      return ColumnType.INT;
    case T.LONGLONG:
      return ColumnType.BIGINT;
    case T.FLOAT:
      return ColumnType.FLOAT;
    case T.DOUBLE:
      return ColumnType.DOUBLE;
    case T.NULL:
      return ColumnType.NULL;
    case T.DATE:
    case T.NEWDATE:
      return ColumnType.DATE;
    case T.DATETIME:
      return ColumnType.DATETIME;
    case T.TIMESTAMP:
      return ColumnType.TIMESTAMP;
    case T.TIME:
      return ColumnType.TIME;
    case T.YEAR:
      return ColumnType.YEAR;
    case T.BIT:
      return ColumnType.BIT;
    case T.GEOMETRY:
      return ColumnType.GEOMETRY;
    case T.ENUM:
      return ColumnType.ENUM;
    case T.SET:
      return ColumnType.SET;
    case T.TINY_BLOB:
    case T.MEDIUM_BLOB:
    case T.LONG_BLOB:
    case T.BLOB:
      return isBinary(f) ? ColumnType.BLOB : ColumnType.TEXT;
    case T.STRING:
      if (f.flags & ENUM_FLAG) return ColumnType.ENUM;
      if (f.flags & SET_FLAG) return ColumnType.SET;
      return isBinary(f) ? ColumnType.BINARY : ColumnType.CHAR;
    case T.VARCHAR:
    case T.VAR_STRING:
      return isBinary(f) ? ColumnType.VARBINARY : ColumnType.VARCHAR;
    default:
      return ColumnType.UNSPECIFIED;
  }
}

/** Types for which UNSIGNED means something (MySQL also flags BIT, YEAR and TIMESTAMP). */
const numericTypes: ReadonlySet<ColumnType> = new Set([
  ColumnType.TINYINT,
  ColumnType.SMALLINT,
  ColumnType.MEDIUMINT,
  ColumnType.INT,
  ColumnType.BIGINT,
  ColumnType.FLOAT,
  ColumnType.DOUBLE,
  ColumnType.DECIMAL,
]);

function fieldFromMysql(f: MysqlField): Field {
  const type = columnTypeOf(f);
  return {
    $typeName: "sqlgate.v1.Field",
    name: f.name,
    column: f.orgName,
    table: f.table,
    database: f.schema,
    type,
    nullable: (f.flags & NOT_NULL_FLAG) === 0,
    unsigned: (f.flags & UNSIGNED_FLAG) !== 0 && numericTypes.has(type),
    length: f.columnLength,
    decimals: f.decimals,
    charset: charsetNames.get(f.characterSet) ?? String(f.characterSet),
  };
}

const int64: CellConverter = (cell) => ({
  case: "int64Value",
  value: BigInt(cell as number | string),
});
const uint64: CellConverter = (cell) => ({
  case: "uint64Value",
  value: BigInt(cell as number | string),
});
const float64: CellConverter = (cell) => ({ case: "float64Value", value: cell as number });
const float32: CellConverter = (cell) => ({
  case: "float64Value",
  value: shortestFloat32(cell as number),
});
const decimal: CellConverter = (cell) => ({ case: "decimalValue", value: cell as string });
const text: CellConverter = (cell) => ({ case: "stringValue", value: cell as string });
const json: CellConverter = (cell) => ({ case: "jsonValue", value: String(cell) });
const bytes: CellConverter = (cell) => ({ case: "bytesValue", value: cell as Uint8Array });
const year: CellConverter = (cell) => ({
  case: "temporalValue",
  value: String(cell).padStart(4, "0"),
});

function converterFor(f: MysqlField): CellConverter {
  if (isJson(f)) return json;
  switch (f.columnType) {
    case T.TINY:
    case T.SHORT:
    case T.INT24:
    case T.LONG:
      return int64;
    case T.LONGLONG:
      return f.flags & UNSIGNED_FLAG ? uint64 : int64;
    case T.FLOAT:
      return float32;
    case T.DOUBLE:
      return float64;
    case T.DECIMAL:
    case T.NEWDECIMAL:
      return decimal;
    case T.YEAR:
      return year;
    case T.DATE:
    case T.NEWDATE:
      return dateConverter();
    case T.DATETIME:
    case T.TIMESTAMP:
      return dateTimeConverter(f.decimals);
    case T.TIME:
      return timeConverter(f.decimals);
    case T.BIT:
    case T.GEOMETRY:
      return bytes;
    case T.NULL:
      return () => nullKind;
    default:
      return isBinary(f) ? bytes : text;
  }
}

/**
 * mysql2 formats a zero DATE as the DATETIME zero; MySQL prints `0000-00-00`.
 */
function dateConverter(): CellConverter {
  return (cell) => ({ case: "temporalValue", value: (cell as string).slice(0, 10) });
}

/**
 * Fractional digits MySQL prints for a column with `decimals`; undefined when
 * the precision is not fixed, in which case mysql2's text is kept as it is.
 */
function fractionDigits(decimals: number): number | undefined {
  return decimals >= NOT_FIXED_DEC ? undefined : Math.min(decimals, 6);
}

/**
 * mysql2 omits the fraction when the microseconds are zero and prints no time
 * for a zero date; MySQL always prints the column's fractional digits.
 */
function dateTimeConverter(decimals: number): CellConverter {
  const digits = fractionDigits(decimals);
  return (cell) => {
    let s = cell as string;
    if (s.length === 10) s += " 00:00:00";
    return { case: "temporalValue", value: withFraction(s, 19, digits) };
  };
}

/** mysql2 strips trailing zeros from a TIME's fraction; MySQL prints the column's digits. */
function timeConverter(decimals: number): CellConverter {
  const digits = fractionDigits(decimals);
  return (cell) => {
    const s = cell as string;
    const dot = s.indexOf(".");
    return { case: "temporalValue", value: withFraction(s, dot === -1 ? s.length : dot, digits) };
  };
}

/** `s` with its fraction (starting at `at`) padded or cut to exactly `digits` digits. */
function withFraction(s: string, at: number, digits: number | undefined): string {
  if (digits === undefined) return s;
  const whole = s.slice(0, at);
  if (digits === 0) return whole;
  const fraction = s.slice(at + 1);
  return `${whole}.${fraction.padEnd(digits, "0").slice(0, digits)}`;
}

/**
 * The shortest decimal that reads back as the same single-precision value,
 * as a double: what MySQL prints for a FLOAT column, where mysql2 gives the
 * float's exact binary expansion (0.1 arrives as 0.10000000149011612).
 */
export function shortestFloat32(value: number): number {
  if (!Number.isFinite(value) || value === 0) return value;
  for (let digits = 1; digits < 10; digits++) {
    const candidate = Number(value.toPrecision(digits));
    if (Math.fround(candidate) === value) return candidate;
  }
  return value;
}
