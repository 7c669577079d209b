/**
 * Golden tests: every MySQL column type and its edges, read through the
 * gateway by every client, must equal value for value what MySQL holds, as
 * read by a direct mysql2 connection with exact options (raw text and bytes
 * from the text protocol; FLOAT and DOUBLE from the binary protocol, since
 * MariaDB prints FLOAT with 6 significant digits).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ColumnType, type Value } from "../gen/sqlgate/v1/value_pb.js";
import { allClients, type ExecuteClient } from "./support/clients.js";
import { startGateway } from "./support/gateway.js";
import { allBytes, columns, expectedTypes, readDirect, rows, schema } from "./support/golden.js";
import { createTestDatabase } from "./support/mysql.js";

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
