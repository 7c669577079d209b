/**
 * Every golden column type through the SDK, both ways: the golden table
 * (test/support/golden.ts) is read through the SDK, each value is checked
 * against what a direct mysql2 reading says MySQL holds (mapped by the
 * SDK's documented defaults), then written back through the SDK into a copy
 * of the table, and the copy must hold byte for byte what the original holds
 * (read directly) and read back through the SDK identically. Through the
 * Node entry (HTTP/2 and HTTP/1.1) and the fetch entry (binary and JSON).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Connection } from "mysql2/promise";
import { createClient as createFetchClient } from "../client/src/fetch.js";
import {
  ColumnType,
  createClient,
  type ExecuteResult,
  type Field,
  json,
  type SqlgateClient,
} from "../client/src/index.js";
import { startGateway } from "./support/gateway.js";
import { columns, readDirect, rows, schema } from "./support/golden.js";
import { createTestDatabase } from "./support/mysql.js";

const selectFrom = (table: string) => `SELECT ${columns.join(", ")} FROM ${table} ORDER BY id`;

/** The JavaScript value the SDK's defaults give for a cell MySQL holds as `raw`. */
function expectedJs(field: Field, raw: Buffer | null, binary: unknown): unknown {
  if (raw === null) return null;
  const text = raw.toString("utf8");
  switch (field.type) {
    case ColumnType.TINYINT:
    case ColumnType.SMALLINT:
    case ColumnType.MEDIUMINT:
    case ColumnType.INT:
      return Number(text);
    case ColumnType.BIGINT:
      return BigInt(text);
    case ColumnType.FLOAT:
    case ColumnType.DOUBLE:
      return binary;
    case ColumnType.DECIMAL:
    case ColumnType.DATE:
    case ColumnType.DATETIME:
    case ColumnType.TIMESTAMP:
    case ColumnType.TIME:
    case ColumnType.YEAR:
      return text;
    case ColumnType.JSON:
      return JSON.parse(text);
    case ColumnType.BINARY:
    case ColumnType.VARBINARY:
    case ColumnType.BLOB:
    case ColumnType.BIT:
    case ColumnType.GEOMETRY:
      return new Uint8Array(raw);
    default:
      return text;
  }
}

const clientKinds = ["Node, HTTP/2", "Node, HTTP/1.1", "fetch, binary", "fetch, JSON"] as const;

describe("golden types through the SDK", () => {
  let admin: Connection;
  let baseUrl: string;
  let reference: Awaited<ReturnType<typeof readDirect>>;
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  before(async () => {
    const t = { after: (fn: () => unknown) => cleanups.push(fn) };
    const db = await createTestDatabase(t);
    admin = db.admin;
    await admin.query(schema);
    for (const row of rows) await admin.query(`INSERT INTO golden VALUES (${row.join(", ")})`);
    baseUrl = (await startGateway(t, db.url)).baseUrl;
    reference = await readDirect(admin, selectFrom("golden"));
  });

  function clientFor(kind: (typeof clientKinds)[number]): SqlgateClient {
    const client = kind.startsWith("Node")
      ? createClient({ url: baseUrl, httpVersion: kind.endsWith("2") ? "2" : "1.1" })
      : createFetchClient({ url: baseUrl, format: kind.endsWith("JSON") ? "json" : "binary" });
    cleanups.push(() => client.close());
    return client;
  }

  clientKinds.forEach((kind, k) => {
    test(`${kind}: read as MySQL holds it, written back byte for byte`, async () => {
      const client = clientFor(kind);

      // 1. Read: every value as the documented defaults map it.
      const read = await client.execute(selectFrom("golden"), [], { as: "array" });
      assert.equal(read.rows.length, rows.length);
      read.rows.forEach((row, r) => {
        row.forEach((value, c) => {
          const field = read.fields[c] as Field;
          const expected = expectedJs(
            field,
            reference.textRows[r]?.[c] ?? null,
            reference.binaryRows[r]?.[c],
          );
          if (field.type === ColumnType.FLOAT && typeof value === "number") {
            // The same single-precision value, given as its shortest decimal form.
            assert.equal(Math.fround(value), expected, `row ${r} ${columns[c]}`);
          } else {
            assert.deepEqual(value, expected, `row ${r} ${columns[c]}`);
          }
        });
      });
      // Spot checks of the mapping itself.
      const max = read.rows[1] as unknown[];
      assert.equal(max[10], 2n ** 64n - 1n); // BIGINT UNSIGNED
      assert.equal(max[9], 2n ** 63n - 1n); // BIGINT
      assert.equal(max[8], 4294967295); // INT UNSIGNED: a number
      assert.equal(max[11], `${"9".repeat(35)}.${"9".repeat(30)}`); // DECIMAL: text
      assert.equal((max[20] as Uint8Array).length, 256); // BLOB: every byte
      assert.equal(max[23], "9999-12-31 23:59:59"); // DATETIME: MySQL's text
      assert.equal(typeof (max[30] as { big: unknown }).big, "number"); // JSON parsed

      // 2. Write back through the SDK: JSON as its exact text, FLOAT as the
      // exact single-precision value (its shortest decimal, 3.4028235e38 at
      // the top, is beyond FLT_MAX as a double and MySQL would refuse it),
      // the rest as read.
      const table = `copy_${k}`;
      await admin.query(`CREATE TABLE ${table} LIKE golden`);
      const exact = await client.execute(selectFrom("golden"), [], { as: "array", json: "text" });
      const placeholders = columns.map(() => "?").join(", ");
      for (const row of exact.rows) {
        const params = row.map((value, c) => {
          const type = exact.fields[c]?.type;
          if (type === ColumnType.JSON && typeof value === "string") return json(value);
          if (type === ColumnType.FLOAT && typeof value === "number") return Math.fround(value);
          return value;
        });
        const written = await client.execute(
          `INSERT INTO ${table} VALUES (${placeholders})`,
          params,
        );
        assert.equal(written.rowsAffected, 1);
      }

      // 3. The copy holds what the original holds, read directly...
      const copy = await readDirect(admin, selectFrom(table));
      assert.equal(copy.textRows.length, reference.textRows.length);
      copy.textRows.forEach((row, r) => {
        row.forEach((cell, c) => {
          const original = reference.textRows[r]?.[c] ?? null;
          const type = read.fields[c]?.type;
          if (type === ColumnType.FLOAT || type === ColumnType.DOUBLE) {
            assert.equal(
              copy.binaryRows[r]?.[c],
              reference.binaryRows[r]?.[c],
              `row ${r} ${columns[c]}`,
            );
          } else {
            assert.deepEqual(cell, original, `row ${r} ${columns[c]}`);
          }
        });
      });
      // ...and through the SDK, value for value.
      const readCopy: ExecuteResult<unknown[]> = await client.execute(selectFrom(table), [], {
        as: "array",
      });
      assert.deepEqual(readCopy.rows, read.rows);
    });
  });

  test("int64 and temporal options over the golden values", async () => {
    const client = clientFor("Node, HTTP/2");
    const sql = "SELECT bi, biu, i, dt, dtm, ts, tm, y FROM golden ORDER BY id";
    const strings = await client.execute(sql, [], { int64: "string" });
    assert.deepEqual(strings.rows[1], {
      bi: "9223372036854775807",
      biu: "18446744073709551615",
      i: 2147483647,
      dt: "9999-12-31",
      dtm: "9999-12-31 23:59:59.999999",
      ts: "2038-01-19 03:14:07.999999",
      tm: "838:59:59.000000",
      y: "2155",
    });
    // Ordinary values fit a number; BIGINT's extremes are refused, not rounded.
    const ordinary = await client.execute(
      `${sql.replace("ORDER BY", "WHERE id = 4 ORDER BY")}`,
      [],
      {
        int64: "number",
        temporal: "date",
      },
    );
    assert.deepEqual(ordinary.rows[0], {
      bi: -1,
      biu: 1,
      i: -1,
      dt: new Date("2024-02-29T00:00:00.000Z"),
      dtm: new Date("2024-02-29T12:34:56.000Z"),
      ts: new Date("2024-02-29T12:34:56.500Z"),
      tm: "25:00:00.500000",
      y: "0000",
    });
    await assert.rejects(client.execute(sql, [], { int64: "number" }), {
      name: "DatabaseError",
      code: "out_of_range",
      message: /column bi: -9223372036854775808 is beyond Number.MAX_SAFE_INTEGER/,
    });
    // A Date written through the SDK comes back as the same instant.
    const instant = new Date("2001-02-03T04:05:06.789Z");
    const back = await client.execute("SELECT CAST(? AS DATETIME(3)) AS t", [instant], {
      temporal: "date",
    });
    assert.deepEqual(back.rows[0], { t: instant });
  });
});
