/**
 * Binlog values to the lossless `Value` kinds, the same kinds a query of the
 * same column gives (sql/result-columns.ts): 64-bit integers and DECIMAL
 * exact, bytes as bytes, temporal values as MySQL spells them.
 */
import { NullValue } from "@bufbuild/protobuf/wkt";
import type { ColumnType, Row } from "../../gen/sqlgate/v1/value_pb.js";
import { columnTypeOf, type Kind, rowFromKinds, shortestFloat32 } from "../sql/result-columns.js";
import type { BinlogColumnType } from "./binlog-reader.js";

const nullKind: Kind = { case: "nullValue", value: NullValue.NULL_VALUE };

/** Binlog type codes (`enum_field_types`) by what their values become. */
const integerCodes = new Set([1, 2, 3, 9]);
const temporalCodes = new Set([7, 10, 11, 12, 14, 17, 18, 19]);
const textOrBytesCodes = new Set([15, 249, 250, 251, 252, 253, 254]);

/** One value of a column of `type`, as the binlog reader gives it. */
export function kindOfBinlogValue(value: unknown, type: BinlogColumnType): Kind {
  if (value === null || value === undefined) return nullKind;
  const code = type.code;
  if (code === 8) {
    return type.unsigned
      ? { case: "uint64Value", value: BigInt(value as string | number) }
      : { case: "int64Value", value: BigInt(value as string | number) };
  }
  if (integerCodes.has(code)) return { case: "int64Value", value: BigInt(value as number) };
  if (code === 4) return { case: "float64Value", value: shortestFloat32(value as number) };
  if (code === 5) return { case: "float64Value", value: value as number };
  if (code === 0 || code === 246) return { case: "decimalValue", value: String(value) };
  if (temporalCodes.has(code)) return { case: "temporalValue", value: String(value) };
  // YEAR as MySQL spells it: four digits, 0000 included.
  if (code === 13) return { case: "temporalValue", value: String(value).padStart(4, "0") };
  if (code === 245) return { case: "jsonValue", value: String(value) };
  if (code === 16 || code === 255) return { case: "bytesValue", value: bytesOf(value) };
  if (textOrBytesCodes.has(code) && (type.charset === null || type.charset === "binary")) {
    return { case: "bytesValue", value: bytesOf(value) };
  }
  // Text, ENUM and SET.
  return {
    case: "stringValue",
    value: Buffer.isBuffer(value) ? value.toString("utf8") : String(value),
  };
}

function bytesOf(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  return Buffer.from(String(value), "utf8");
}

/** A binlog row as a `Row` of lossless values. */
export function rowOfBinlogValues(
  values: readonly unknown[],
  types: readonly BinlogColumnType[],
): Row {
  return rowFromKinds(
    values.map((value, i) => kindOfBinlogValue(value, types[i] as BinlogColumnType)),
  );
}

/** The binary pseudo-charset's number, as a query's column definition gives it. */
const binaryCharset = 63;

/** The binlog's fractional-second temporal types, as the types a query reports. */
const queryTypeOf: Readonly<Record<number, number>> = {
  17: 7, // TIMESTAMP2 -> TIMESTAMP
  18: 12, // DATETIME2 -> DATETIME
  19: 11, // TIME2 -> TIME
};

/** A binlog column's type as a query of it reports it (`Field.type`). */
export function columnTypeOfBinlog(type: BinlogColumnType): ColumnType {
  return columnTypeOf({
    name: "",
    orgName: "",
    table: "",
    orgTable: "",
    schema: "",
    columnType: queryTypeOf[type.code] ?? type.code,
    flags: 0,
    // Only whether it is binary matters here.
    characterSet: type.charset === null || type.charset === "binary" ? binaryCharset : 0,
    columnLength: 0,
    decimals: 0,
  });
}
