/**
 * Golden tests: every MySQL column type and its edges, read through the
 * gateway by every client, must equal value for value what MySQL holds, as
 * read by a direct mysql2 connection with exact options (raw text and bytes
 * from the text protocol; FLOAT and DOUBLE from the binary protocol, since
 * MariaDB prints FLOAT with 6 significant digits).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Connection, FieldPacket } from "mysql2/promise";
import { ColumnType, type Value } from "../gen/sqlgate/v1/value_pb.js";
import { allClients, type ExecuteClient } from "./support/clients.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

const schema = `CREATE TABLE golden (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
  bi BIGINT, biu BIGINT UNSIGNED,
  dec65 DECIMAL(65,30), f FLOAT, d DOUBLE, b64 BIT(64),
  c CHAR(10), vc VARCHAR(100), tx TEXT,
  bn BINARY(4), vb VARBINARY(300), bl BLOB,
  dt DATE, dtm DATETIME(6), dtm0 DATETIME, ts TIMESTAMP(6) NULL, tm TIME(6), tm0 TIME, y YEAR,
  en ENUM('a','b','c'), st SET('x','y','z'), js JSON, geo GEOMETRY
) CHARACTER SET utf8mb4`;

const columns = [
  "id",
  "ti",
  "tiu",
  "si",
  "siu",
  "mi",
  "miu",
  "i",
  "iu",
  "bi",
  "biu",
  "dec65",
  "f",
  "d",
  "b64",
  "c",
  "vc",
  "tx",
  "bn",
  "vb",
  "bl",
  "dt",
  "dtm",
  "dtm0",
  "ts",
  "tm",
  "tm0",
  "y",
  "en",
  "st",
  "js",
  "geo",
];

/** The expected proto type of each column, in order. */
const expectedTypes = [
  ColumnType.INT,
  ColumnType.TINYINT,
  ColumnType.TINYINT,
  ColumnType.SMALLINT,
  ColumnType.SMALLINT,
  ColumnType.MEDIUMINT,
  ColumnType.MEDIUMINT,
  ColumnType.INT,
  ColumnType.INT,
  ColumnType.BIGINT,
  ColumnType.BIGINT,
  ColumnType.DECIMAL,
  ColumnType.FLOAT,
  ColumnType.DOUBLE,
  ColumnType.BIT,
  ColumnType.CHAR,
  ColumnType.VARCHAR,
  ColumnType.TEXT,
  ColumnType.BINARY,
  ColumnType.VARBINARY,
  ColumnType.BLOB,
  ColumnType.DATE,
  ColumnType.DATETIME,
  ColumnType.DATETIME,
  ColumnType.TIMESTAMP,
  ColumnType.TIME,
  ColumnType.TIME,
  ColumnType.YEAR,
  ColumnType.ENUM,
  ColumnType.SET,
  ColumnType.JSON,
  ColumnType.GEOMETRY,
];

const decMax = `${"9".repeat(35)}.${"9".repeat(30)}`;

/** Rows as [sql expression per column]; written with a direct connection. */
const rows: string[][] = [
  // Minimums and empties.
  [
    "1",
    "-128",
    "0",
    "-32768",
    "0",
    "-8388608",
    "0",
    "-2147483648",
    "0",
    "-9223372036854775808",
    "0",
    `-${decMax}`,
    "-3.402823466e+38",
    "-1.7976931348623157e308",
    "b'0'",
    "''",
    "''",
    "''",
    "x'00000000'",
    "''",
    "''",
    "'1000-01-01'",
    "'1000-01-01 00:00:00.000000'",
    "'1000-01-01 00:00:00'",
    "'1970-01-01 00:00:01.000000'",
    "'-838:59:59.000000'",
    "'-838:59:59'",
    "1901",
    "'a'",
    "''",
    "'[]'",
    "ST_GeomFromText('POINT(0 0)')",
  ],
  // Maximums, all bytes and wide characters.
  [
    "2",
    "127",
    "255",
    "32767",
    "65535",
    "8388607",
    "16777215",
    "2147483647",
    "4294967295",
    "9223372036854775807",
    "18446744073709551615",
    decMax,
    "3.402823466e+38",
    "1.7976931348623157e308",
    "b'1111111111111111111111111111111111111111111111111111111111111111'",
    "'abcdefghij'",
    "'😀 héllo 中文 \\' \" \\\\'",
    "REPEAT('𝄞', 1000)",
    "x'ffffffff'",
    `x'${allBytes.toString("hex")}'`,
    `x'${allBytes.toString("hex")}'`,
    "'9999-12-31'",
    "'9999-12-31 23:59:59.999999'",
    "'9999-12-31 23:59:59'",
    "'2038-01-19 03:14:07.999999'",
    "'838:59:59.000000'",
    "'838:59:59'",
    "2155",
    "'c'",
    "'x,y,z'",
    `'{"a": [1, 2.5, "x", null, true], "big": 12345678901234567890, "s": "😀"}'`,
    "ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0))', 4326)",
  ],
  // NULL in every nullable column.
  ["3", ...columns.slice(1).map(() => "NULL")],
  // Ordinary values, fractions, zero padding, TIME past 24 hours.
  [
    "4",
    "0",
    "1",
    "-1",
    "1",
    "-1",
    "1",
    "-1",
    "1",
    "-1",
    "1",
    "0.000000000000000000000000000001",
    "0.1",
    "0.1",
    "b'1010'",
    "'a'",
    "'0'",
    "'null'",
    "x'0a'",
    "x'00'",
    "x'0000'",
    "'2024-02-29'",
    "'2024-02-29 12:34:56.000001'",
    "'2024-02-29 12:34:56'",
    "'2024-02-29 12:34:56.500000'",
    "'25:00:00.5'",
    "'-01:02:03'",
    "0",
    "'b'",
    "'y'",
    "'null'",
    "ST_GeomFromText('LINESTRING(1.5 2.5, -3 4e10)')",
  ],
];

/** A Value as [kind, comparable value]: bigints and bytes as strings. */
function plain(v: Value): [string, unknown] {
  const { case: kind, value } = v.kind;
  if (value instanceof Uint8Array) return [kind ?? "", Buffer.from(value).toString("hex")];
  if (typeof value === "bigint") return [kind ?? "", value.toString()];
  return [kind ?? "", value];
}

/** The Value MySQL holds, from the raw text/bytes of the text protocol. */
function expectedValue(
  type: ColumnType,
  unsigned: boolean,
  raw: Buffer | null,
  binary: unknown,
): [string, unknown] {
  if (raw === null) return ["nullValue", 0];
  const text = raw.toString("utf8");
  switch (type) {
    case ColumnType.TINYINT:
    case ColumnType.SMALLINT:
    case ColumnType.MEDIUMINT:
    case ColumnType.INT:
      return ["int64Value", text];
    case ColumnType.BIGINT:
      return [unsigned ? "uint64Value" : "int64Value", text];
    case ColumnType.FLOAT:
      return ["float64Value", binary];
    case ColumnType.DOUBLE:
      return ["float64Value", binary];
    case ColumnType.DECIMAL:
      return ["decimalValue", text];
    case ColumnType.DATE:
    case ColumnType.DATETIME:
    case ColumnType.TIMESTAMP:
    case ColumnType.TIME:
    case ColumnType.YEAR:
      return ["temporalValue", text];
    case ColumnType.JSON:
      return ["jsonValue", text];
    case ColumnType.BINARY:
    case ColumnType.VARBINARY:
    case ColumnType.BLOB:
    case ColumnType.BIT:
    case ColumnType.GEOMETRY:
      return ["bytesValue", raw.toString("hex")];
    default:
      return ["stringValue", text];
  }
}

/** Reads `sql` directly: raw text/bytes per cell, and binary-protocol floats. */
async function readDirect(conn: Connection, sql: string) {
  const [textRows, fields] = (await conn.query({
    sql,
    rowsAsArray: true,
    typeCast: (field, next) => (field.type === "NULL" ? next() : field.buffer()),
  })) as unknown as [(Buffer | null)[][], FieldPacket[]];
  const [binaryRows] = (await conn.execute({ sql, rowsAsArray: true })) as unknown as [unknown[][]];
  return { textRows, binaryRows, fields };
}

describe("golden types through every client", () => {
  let clients: ExecuteClient[];
  let direct: Awaited<ReturnType<typeof readDirect>>;
  const selectAll = `SELECT ${columns.join(", ")} FROM golden ORDER BY id`;

  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  before(async () => {
    const t = { after: (fn: () => unknown) => cleanups.push(fn) };
    const db = await createTestDatabase(t);
    await db.admin.query(schema);
    for (const row of rows) await db.admin.query(`INSERT INTO golden VALUES (${row.join(", ")})`);
    const gateway = await startGateway(t, db.url);
    clients = allClients(gateway.baseUrl, gateway.port);
    direct = await readDirect(db.admin, selectAll);
  });

  test("the direct reading holds what was written", () => {
    assert.equal(direct.textRows.length, rows.length);
    assert.equal(direct.textRows[1]?.[20]?.toString("hex"), allBytes.toString("hex"));
  });

  for (const name of [
    "Connect JSON, HTTP/1.1",
    "Connect binary, h2c",
    "Connect JSON, h2c",
    "gRPC, h2c",
    "gRPC-Web binary, HTTP/1.1",
    "@grpc/grpc-js",
    "curl HTTP/1.1",
    "curl --http2-prior-knowledge",
    "buf curl",
  ]) {
    test(`${name}: every column's metadata and every value`, async () => {
      const client = clients.find((c) => c.name === name);
      assert.ok(client, name);
      const response = await client.execute({ sql: selectAll });
      assert.deepEqual(
        response.fields.map((f) => f.name),
        columns,
      );
      assert.deepEqual(
        response.fields.map((f) => f.type),
        expectedTypes,
      );
      assert.deepEqual(
        response.fields.map((f) => f.unsigned),
        columns.map((c) => c.endsWith("u")),
      );
      const idField = response.fields[0];
      assert.equal(idField?.table, "golden");
      assert.equal(idField?.nullable, false);
      assert.equal(response.fields[1]?.nullable, true);
      assert.equal(response.fields[22]?.decimals, 6);
      assert.equal(response.fields[16]?.charset, "utf8mb4");
      assert.equal(response.fields[19]?.charset, "binary");
      assert.equal(response.rows.length, rows.length);
      response.rows.forEach((row, r) => {
        row.values.forEach((value, c) => {
          const field = response.fields[c];
          assert.ok(field);
          const expected = expectedValue(
            field.type,
            field.unsigned,
            direct.textRows[r]?.[c] ?? null,
            direct.binaryRows[r]?.[c],
          );
          const actual = plain(value);
          if (field.type === ColumnType.FLOAT && actual[0] === "float64Value") {
            // Same single-precision value, given as its shortest decimal form.
            assert.equal(Math.fround(actual[1] as number), expected[1], `row ${r} ${columns[c]}`);
          } else {
            assert.deepEqual(actual, expected, `row ${r} column ${columns[c]}`);
          }
        });
      });
      // Spot checks that do not depend on the reference reading.
      assert.deepEqual(plain(response.rows[1]?.values[10] as Value), [
        "uint64Value",
        "18446744073709551615",
      ]);
      assert.deepEqual(plain(response.rows[0]?.values[9] as Value), [
        "int64Value",
        "-9223372036854775808",
      ]);
      assert.deepEqual(plain(response.rows[3]?.values[13] as Value), ["float64Value", 0.1]);
      assert.deepEqual(plain(response.rows[3]?.values[12] as Value), ["float64Value", 0.1]);
      assert.deepEqual(plain(response.rows[3]?.values[25] as Value), [
        "temporalValue",
        "25:00:00.500000",
      ]);
      assert.deepEqual(plain(response.rows[1]?.values[14] as Value), [
        "bytesValue",
        "ffffffffffffffff",
      ]);
      assert.deepEqual(plain(response.rows[2]?.values[16] as Value), ["nullValue", 0]);
      assert.deepEqual(plain(response.rows[0]?.values[16] as Value), ["stringValue", ""]);
    });
  }

  test("duplicate column names, empty results, bare NULL", async () => {
    for (const client of clients.slice(0, 2)) {
      const dup = await client.execute({ sql: "SELECT 1 AS a, 2 AS a, NULL AS n" });
      assert.deepEqual(
        dup.fields.map((f) => f.name),
        ["a", "a", "n"],
      );
      assert.deepEqual(dup.rows[0]?.values.map(plain), [
        ["int64Value", "1"],
        ["int64Value", "2"],
        ["nullValue", 0],
      ]);
      const empty = await client.execute({
        sql: `${selectAll.replace("ORDER BY", "WHERE 1 = 0 ORDER BY")}`,
      });
      assert.equal(empty.fields.length, columns.length);
      assert.equal(empty.rows.length, 0);
    }
  });
});
