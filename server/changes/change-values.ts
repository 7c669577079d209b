/**
 * Binlog values to the lossless `Value` kinds, the same kinds a query of the
 * same column gives (sql/result-columns.ts): 64-bit integers and DECIMAL
 * exact, bytes as bytes, temporal values as MySQL spells them.
 */

import { WireType } from "@bufbuild/protobuf/wire";
import { NullValue } from "@bufbuild/protobuf/wkt";
import type { ColumnType, Row } from "../../gen/sqlgate/v1/value_pb.js";
import { columnTypeOf, type Kind, rowFromKinds, shortestFloat32 } from "../sql/result-columns.js";
import type { WireWriter } from "../sql/wire-writer.js";
import type { BinlogColumnType } from "./binlog-reader.js";

const nullKind: Kind = { case: "nullValue", value: NullValue.NULL_VALUE };

/** Binlog type codes (`enum_field_types`) by what their values become. */
const integerCodes = new Set([1, 2, 3, 9]);
const temporalCodes = new Set([7, 10, 11, 12, 14, 17, 18, 19]);
const textOrBytesCodes = new Set([15, 249, 250, 251, 252, 253, 254]);

/** What a column's values become, decided once per column rather than per value. */
type ValueClass =
  | "int32"
  | "int64"
  | "uint64"
  | "float32"
  | "double"
  | "decimal"
  | "temporal"
  | "year"
  | "json"
  | "bytes"
  | "text";

function classOf(type: BinlogColumnType): ValueClass {
  const code = type.code;
  if (code === 8) return type.unsigned ? "uint64" : "int64";
  // INT UNSIGNED reaches 2^32 - 1: beyond 32 bits once zigzagged, so int64.
  if (integerCodes.has(code)) return code === 3 ? "int64" : "int32";
  if (code === 4) return "float32";
  if (code === 5) return "double";
  if (code === 0 || code === 246) return "decimal";
  if (temporalCodes.has(code)) return "temporal";
  if (code === 13) return "year";
  if (code === 245) return "json";
  if (code === 16 || code === 255) return "bytes";
  if (textOrBytesCodes.has(code) && (type.charset === null || type.charset === "binary")) {
    return "bytes";
  }
  // Text, ENUM and SET.
  return "text";
}

const classesOfTypes = new WeakMap<readonly BinlogColumnType[], ValueClass[]>();

/** Each column's value class; kept per table description (one per TableMap). */
function classesOf(types: readonly BinlogColumnType[]): ValueClass[] {
  let classes = classesOfTypes.get(types);
  if (classes === undefined) {
    classes = types.map(classOf);
    classesOfTypes.set(types, classes);
  }
  return classes;
}

/** One value of a column of class `cls`, as the binlog reader gives it. */
function kindOf(value: unknown, cls: ValueClass): Kind {
  if (value === null || value === undefined) return nullKind;
  switch (cls) {
    case "int32":
    case "int64":
      return { case: "int64Value", value: BigInt(value as string | number) };
    case "uint64":
      return { case: "uint64Value", value: BigInt(value as string | number) };
    case "float32":
      return { case: "float64Value", value: shortestFloat32(value as number) };
    case "double":
      return { case: "float64Value", value: value as number };
    case "decimal":
      return { case: "decimalValue", value: String(value) };
    case "temporal":
      return { case: "temporalValue", value: String(value) };
    case "year":
      // YEAR as MySQL spells it: four digits, 0000 included.
      return { case: "temporalValue", value: String(value).padStart(4, "0") };
    case "json":
      return { case: "jsonValue", value: String(value) };
    case "bytes":
      return { case: "bytesValue", value: bytesOf(value) };
    case "text":
      return {
        case: "stringValue",
        value: Buffer.isBuffer(value) ? value.toString("utf8") : String(value),
      };
  }
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
  const classes = classesOf(types);
  return rowFromKinds(values.map((value, i) => kindOf(value, classes[i] as ValueClass)));
}

/**
 * A binlog row's values written as `Row.values` fields (field `1` each) in
 * wire format: what rowOfBinlogValues then protobuf encoding would give,
 * without a message object or a BigInt per small integer.
 */
export function writeBinlogValues(
  w: WireWriter,
  values: readonly unknown[],
  types: readonly BinlogColumnType[],
): void {
  const classes = classesOf(types);
  for (let i = 0; i < values.length; i++) {
    w.tag(1, WireType.LengthDelimited).fork();
    writeValue(w, values[i], classes[i] as ValueClass);
    w.join();
  }
}

function writeValue(w: WireWriter, value: unknown, cls: ValueClass): void {
  if (value === null || value === undefined) {
    w.tag(1, WireType.Varint).int32(NullValue.NULL_VALUE);
    return;
  }
  switch (cls) {
    case "int32": {
      // TINYINT..MEDIUMINT, signed or not, stay far inside 32 bits once
      // zigzagged: (v << 1) ^ (v >> 31) is exact.
      const v = value as number;
      w.tag(2, WireType.Varint).uint32(((v << 1) ^ (v >> 31)) >>> 0);
      return;
    }
    case "int64":
      if (typeof value === "number" && value >= -0x4000_0000 && value < 0x4000_0000) {
        w.tag(2, WireType.Varint).uint32(((value << 1) ^ (value >> 31)) >>> 0);
      } else {
        w.tag(2, WireType.Varint).sint64(BigInt(value as string | number));
      }
      return;
    case "uint64":
      if (typeof value === "number" && value >= 0 && value <= 0xffff_ffff) {
        w.tag(3, WireType.Varint).uint32(value);
      } else {
        w.tag(3, WireType.Varint).uint64(BigInt(value as string | number));
      }
      return;
    case "float32":
      w.tag(4, WireType.Bit64).double(shortestFloat32(value as number));
      return;
    case "double":
      w.tag(4, WireType.Bit64).double(value as number);
      return;
    case "decimal":
      w.tag(7, WireType.LengthDelimited).string(String(value));
      return;
    case "temporal":
      w.tag(8, WireType.LengthDelimited).string(String(value));
      return;
    case "year":
      w.tag(8, WireType.LengthDelimited).string(String(value).padStart(4, "0"));
      return;
    case "json":
      w.tag(9, WireType.LengthDelimited).string(String(value));
      return;
    case "bytes":
      w.tag(6, WireType.LengthDelimited).bytes(bytesOf(value));
      return;
    case "text":
      w.tag(5, WireType.LengthDelimited).string(
        Buffer.isBuffer(value) ? value.toString("utf8") : String(value),
      );
      return;
  }
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
