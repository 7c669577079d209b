/**
 * Column metadata as Vitess reports it: MySQL's column definition, with the
 * Vitess type derived from MySQL's type and flags the way vttablet does it
 * (sqltypes.MySQLToType): a text type whose column has the BINARY flag (a
 * binary charset or a `_bin` collation) becomes its binary twin, an UNSIGNED
 * integer its unsigned twin, a CHAR with ENUM or SET flags that type.
 */
import type { Field } from "../../../gen/vitess/query/v22/query_pb.js";
import { Type } from "../../../gen/vitess/query/v22/query_pb.js";
import type { MysqlField } from "../../sql/result-columns.js";

/** Column flags (include/mysql_com.h). */
const UNSIGNED_FLAG = 32;
const BINARY_FLAG = 128;
const ENUM_FLAG = 256;
const SET_FLAG = 2048;

/** MySQL protocol column types (enum_field_types) and their Vitess types. */
const typeByMysqlType: ReadonlyMap<number, Type> = new Map([
  [0, Type.DECIMAL],
  [1, Type.INT8],
  [2, Type.INT16],
  [3, Type.INT32],
  [4, Type.FLOAT32],
  [5, Type.FLOAT64],
  [6, Type.NULL_TYPE],
  [7, Type.TIMESTAMP],
  [8, Type.INT64],
  [9, Type.INT24],
  [10, Type.DATE],
  [11, Type.TIME],
  [12, Type.DATETIME],
  [13, Type.YEAR],
  [14, Type.DATE],
  [15, Type.VARCHAR],
  [16, Type.BIT],
  [17, Type.TIMESTAMP],
  [18, Type.DATETIME],
  [19, Type.TIME],
  [242, Type.VECTOR],
  [245, Type.JSON],
  [246, Type.DECIMAL],
  [247, Type.ENUM],
  [248, Type.SET],
  [249, Type.TEXT],
  [250, Type.TEXT],
  [251, Type.TEXT],
  [252, Type.TEXT],
  [253, Type.VARCHAR],
  [254, Type.CHAR],
  [255, Type.GEOMETRY],
]);

const unsignedTwin: ReadonlyMap<Type, Type> = new Map([
  [Type.INT8, Type.UINT8],
  [Type.INT16, Type.UINT16],
  [Type.INT24, Type.UINT24],
  [Type.INT32, Type.UINT32],
  [Type.INT64, Type.UINT64],
]);

const binaryTwin: ReadonlyMap<Type, Type> = new Map([
  [Type.TEXT, Type.BLOB],
  [Type.VARCHAR, Type.VARBINARY],
  [Type.CHAR, Type.BINARY],
]);

/** The Vitess type of a MySQL column. */
export function vitessType(f: MysqlField): Type {
  // MariaDB sends JSON as LONGTEXT marked with the `json` format.
  if (f.extendedFormat === "json") return Type.JSON;
  const type = typeByMysqlType.get(f.columnType) ?? Type.EXPRESSION;
  if (f.flags & UNSIGNED_FLAG) {
    const twin = unsignedTwin.get(type);
    if (twin !== undefined) return twin;
  }
  if (f.flags & BINARY_FLAG) {
    const twin = binaryTwin.get(type);
    if (twin !== undefined) return twin;
  }
  if (type === Type.CHAR) {
    if (f.flags & ENUM_FLAG) return Type.ENUM;
    if (f.flags & SET_FLAG) return Type.SET;
  }
  return type;
}

/** One column as a Vitess Field, with every attribute vttablet includes. */
export function vitessField(f: MysqlField): Field {
  return {
    $typeName: "vitess.query.v22.Field",
    name: f.name,
    type: vitessType(f),
    table: f.table,
    orgTable: f.orgTable,
    database: f.schema,
    orgName: f.orgName,
    columnLength: f.columnLength,
    charset: f.characterSet,
    decimals: f.decimals,
    flags: f.flags,
    columnType: "",
  };
}
