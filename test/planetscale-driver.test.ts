/**
 * PlanetScale compatibility: the real, unmodified @planetscale/database driver
 * from npm, pointed at the gateway by URL, against real MariaDB. Values are
 * compared with what a direct mysql2 connection reads with the driver's own
 * conventions (text protocol; int64, DECIMAL and temporal values as strings,
 * JSON parsed, binary as bytes).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Connection, connect, DatabaseError } from "@planetscale/database";
import type mysql from "mysql2/promise";
import { startGateway, type TestGateway } from "./support/gateway.js";
import { columns, rows, schema } from "./support/golden.js";
import { connectDirect, createTestDatabase } from "./support/mysql.js";

/** The Vitess type name the driver reports for each golden column. */
const goldenTypes = [
  "INT32",
  "INT8",
  "UINT8",
  "INT16",
  "UINT16",
  "INT24",
  "UINT24",
  "INT32",
  "UINT32",
  "INT64",
  "UINT64",
  "DECIMAL",
  "FLOAT32",
  "FLOAT64",
  "BIT",
  "CHAR",
  "VARCHAR",
  "TEXT",
  "BINARY",
  "VARBINARY",
  "BLOB",
  "DATE",
  "DATETIME",
  "DATETIME",
  "TIMESTAMP",
  "TIME",
  "TIME",
  "YEAR",
  "ENUM",
  "SET",
  "JSON",
  "GEOMETRY",
];

/** The driver's URL form for a gateway: the only way to use plain http. */
function driverUrl(gateway: TestGateway, user = "app", password = "secret"): string {
  return `http://${user}:${password}@127.0.0.1:${gateway.port}`;
}

/** Bytes as plain arrays, so Buffer and Uint8Array compare equal. */
function comparable(value: unknown): unknown {
  return value instanceof Uint8Array ? [...value] : value;
}

/** Rejects with a DatabaseError; returns it. */
async function databaseError(promise: Promise<unknown>): Promise<DatabaseError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof DatabaseError, `expected a DatabaseError, got ${String(err)}`);
    return err;
  }
  assert.fail("the call succeeded");
}

describe("@planetscale/database against the gateway", () => {
  let gateway: TestGateway;
  let admin: mysql.Connection;
  let conn: Connection;
  // Suite-wide resources, released last-in first-out once every test is done.
  const cleanups: (() => unknown)[] = [];
  const t = { after: (fn: () => unknown) => cleanups.push(fn) };
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  before(async () => {
    const db = await createTestDatabase(t);
    admin = db.admin;
    await admin.query(schema);
    await admin.query(
      `INSERT INTO golden (${columns.join(", ")}) VALUES ${rows.map((r) => `(${r.join(", ")})`).join(", ")}`,
    );
    await admin.query(
      "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) UNIQUE, qty INT) ENGINE=InnoDB",
    );
    gateway = await startGateway(t, db.url);
    conn = connect({ url: driverUrl(gateway) });
  });

  test("every golden column type reads as direct mysql2 reads it", async () => {
    const direct = await connectDirect(gateway.config.mysql.url ?? "", {
      supportBigNumbers: true,
      bigNumberStrings: true,
      dateStrings: true,
      decimalNumbers: false,
      typeCast: (field, next) => (field.type === "GEOMETRY" ? field.buffer() : next()),
    });
    try {
      const [expected] = (await direct.query({
        sql: "SELECT * FROM golden ORDER BY id",
        rowsAsArray: true,
      })) as unknown as [unknown[][]];
      const result = await conn.execute("SELECT * FROM golden ORDER BY id", null, { as: "array" });
      assert.deepEqual(
        result.fields.map((f) => f.type),
        goldenTypes,
      );
      assert.deepEqual(result.headers, columns);
      assert.equal(result.rows.length, expected.length);
      for (const [r, row] of (result.rows as unknown[][]).entries()) {
        for (const [c, value] of row.entries()) {
          // mysql2 parses JSON (MariaDB's too), as the driver does.
          assert.deepEqual(
            comparable(value),
            comparable(expected[r]?.[c]),
            `row ${r} column ${columns[c]} (${goldenTypes[c]})`,
          );
        }
      }
      // Binary columns are bytes; text columns are strings, whatever their collation.
      const [max] = result.rows.slice(1, 2) as unknown[][];
      assert.ok(max?.[columns.indexOf("vb")] instanceof Uint8Array);
      assert.equal(typeof max?.[columns.indexOf("vc")], "string");
      // Table-backed columns carry MySQL's metadata.
      const id = result.fields[0];
      assert.equal(id?.table, "golden");
      assert.equal(id?.orgName, "id");
      assert.ok((id?.flags ?? 0) & 2, "the primary key flag");
      assert.equal(result.fields[columns.indexOf("bn")]?.charset, 63);
    } finally {
      await direct.end();
    }
  });

  test("positional and named arguments, objects and arrays, NULLs", async () => {
    const positional = await conn.execute("SELECT ? AS a, ? AS b, ? AS c, ? AS d", [
      7,
      "it's",
      null,
      new Uint8Array([0, 255]),
    ]);
    assert.deepEqual(positional.rows, [{ a: 7, b: "it's", c: null, d: new Uint8Array([0, 255]) }]);
    assert.deepEqual(positional.types, { a: "INT32", b: "VARCHAR", c: "NULL", d: "VARBINARY" });
    const named = await conn.execute("SELECT :name AS name, :n + 1 AS n", { name: "x", n: 41 });
    assert.deepEqual(named.rows, [{ name: "x", n: 42 }]);
    const arrays = await conn.execute("SELECT 1 AS a, NULL AS b, 'x' AS c", null, { as: "array" });
    assert.deepEqual(arrays.rows, [[1, null, "x"]]);
    assert.equal(arrays.statement, "SELECT 1 AS a, NULL AS b, 'x' AS c");
    assert.ok(arrays.time > 0, "the server's timing");
  });

  test("text is UTF-8 whatever the charset", async () => {
    const result = await conn.execute("SELECT _latin1 0xff AS a, 'héllo 😀' AS b");
    assert.deepEqual(result.rows, [{ a: "ÿ", b: "héllo 😀" }]);
  });

  test("insertId is the first id of a multi-row insert; rowsAffected counts found rows", async () => {
    await conn.execute("INSERT INTO items (name, qty) VALUES ('seed', 0)");
    const [{ id: before } = { id: "0" }] = (await conn.execute("SELECT MAX(id) AS id FROM items"))
      .rows as { id: string }[];
    const inserted = await conn.execute(
      "INSERT INTO items (name, qty) VALUES (?, 1), (?, 1), (?, 1)",
      ["a", "b", "c"],
    );
    assert.equal(inserted.insertId, String(BigInt(before) + 1n));
    assert.equal(inserted.rowsAffected, 3);
    // Setting a value to what it already is still counts the row (CLIENT_FOUND_ROWS).
    const updated = await conn.execute("UPDATE items SET qty = 1 WHERE name IN ('a', 'b', 'c')");
    assert.equal(updated.rowsAffected, 3);
    assert.equal(updated.insertId, "0");
  });

  test("a SQL error is a DatabaseError with MySQL's errno and SQLSTATE", async () => {
    const err = await databaseError(conn.execute("SELEC 1"));
    assert.match(
      err.message,
      /You have an error in your SQL syntax.*\(errno 1064\) \(sqlstate 42000\)$/,
    );
    assert.equal(err.status, 400);
    assert.equal(err.body.code, "INVALID_ARGUMENT");
    const missing = await databaseError(conn.execute("SELECT * FROM nowhere"));
    assert.equal(missing.body.code, "NOT_FOUND");
    assert.match(missing.message, /\(errno 1146\) \(sqlstate 42S02\)$/);
    const twice = await databaseError(conn.execute("SELECT 1; SELECT 2"));
    assert.equal(twice.body.code, "INVALID_ARGUMENT");
    // The connection goes on after errors.
    assert.deepEqual((await conn.execute("SELECT 1 AS one")).rows, [{ one: 1 }]);
  });

  test("transaction() commits, and rolls back on a failing statement with its locks released", async () => {
    const tx = connect({ url: driverUrl(gateway) });
    await tx.transaction(async (t) => {
      await t.execute("INSERT INTO items (name, qty) VALUES ('committed', 1)");
      await t.execute("UPDATE items SET qty = qty + 1 WHERE name = 'committed'");
    });
    const [row] = (await conn.execute("SELECT qty FROM items WHERE name = 'committed'")).rows as {
      qty: number;
    }[];
    assert.equal(row?.qty, 2);

    const failing = tx.transaction(async (t) => {
      await t.execute("UPDATE items SET qty = 100 WHERE name = 'committed'");
      await t.execute("INSERT INTO items (name, qty) VALUES ('committed', 1)"); // duplicate
    });
    const err = await databaseError(failing);
    assert.equal(err.body.code, "ALREADY_EXISTS");
    assert.match(err.message, /\(errno 1062\)/);
    // Rolled back, and the row lock is gone: a direct writer does not wait.
    await admin.query("SET SESSION innodb_lock_wait_timeout = 1");
    await admin.query("UPDATE items SET qty = 3 WHERE name = 'committed'");
    const [after] = (await conn.execute("SELECT qty FROM items WHERE name = 'committed'")).rows as {
      qty: number;
    }[];
    assert.equal(after?.qty, 3);
  });

  test("concurrent statements on one transaction are refused, not interleaved", async () => {
    const tx = connect({ url: driverUrl(gateway) });
    const outcome = await tx
      .transaction(async (t) => {
        await t.execute("SELECT 1");
        await Promise.all([t.execute("SELECT SLEEP(0.5)"), t.execute("SELECT 2")]);
      })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    assert.ok(outcome instanceof DatabaseError);
    assert.equal(outcome.body.code, "ABORTED");
    assert.match(outcome.message, /in use/);
  });

  test("session state (a SET, user variables) stays with the session's connection", async () => {
    const session = connect({ url: driverUrl(gateway) });
    await session.execute("SET @answer = 42");
    await session.execute("SET SESSION sql_select_limit = 1");
    const answer = await session.execute("SELECT @answer AS a");
    assert.equal(String((answer.rows[0] as { a: unknown }).a), "42");
    const limited = await session.execute("SELECT id FROM golden");
    assert.equal(limited.rows.length, 1);
    // Another session sees none of it.
    const other = await conn.execute("SELECT @answer AS a");
    assert.deepEqual(other.rows, [{ a: null }]);
  });

  test("Kysely's order: SET TRANSACTION before BEGIN applies to that transaction", async () => {
    const tx = connect({ url: driverUrl(gateway) });
    await tx.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE");
    await tx.execute("BEGIN");
    await tx.execute("SELECT id FROM golden WHERE id = 1");
    // SERIALIZABLE reads take shared locks (REPEATABLE READ ones take none):
    // a locking read elsewhere cannot have the row until the commit.
    const lockedOut = admin.query("SELECT id FROM golden WHERE id = 1 FOR UPDATE NOWAIT");
    await assert.rejects(lockedOut, /Lock wait timeout/);
    await tx.execute("COMMIT");
    await admin.query("SELECT id FROM golden WHERE id = 1 FOR UPDATE NOWAIT");
  });

  test("sessions give their connection back once they hold nothing", async (t) => {
    const small = await startGateway(t, gateway.config.mysql.url ?? "", {
      env: { SQLGATE_MAX_TRANSACTIONS: "2" },
    });
    for (let i = 0; i < 6; i++) {
      const tx = connect({ url: driverUrl(small) });
      await tx.transaction(async (t2) => {
        await t2.execute("SELECT 1");
      });
      await tx.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
      await tx.execute("BEGIN");
      await tx.execute("ROLLBACK");
      // Prisma's adapter sends a SET TRANSACTION and never comes back to that session.
      await connect({ url: driverUrl(small) }).execute(
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
      );
    }
    assert.deepEqual((await connect({ url: driverUrl(small) }).execute("SELECT 1 AS a")).rows, [
      { a: 1 },
    ]);
  });

  test("limits: rows past SQLGATE_PSDB_MAX_ROWS and transactions past their time are ABORTED", async (t) => {
    const strict = await startGateway(t, gateway.config.mysql.url ?? "", {
      env: { SQLGATE_PSDB_MAX_ROWS: "2", SQLGATE_PSDB_TRANSACTION_TIMEOUT_MS: "300" },
    });
    const c = connect({ url: driverUrl(strict) });
    const rowsErr = await databaseError(c.execute("SELECT id FROM golden"));
    assert.equal(rowsErr.body.code, "ABORTED");
    assert.match(rowsErr.message, /Row count exceeded 2/);
    assert.equal((await c.execute("SELECT id FROM golden LIMIT 2")).rows.length, 2);

    const slow = c.transaction(async (tx) => {
      await tx.execute("UPDATE items SET qty = 50 WHERE name = 'a'");
      await new Promise((resolve) => setTimeout(resolve, 800));
      await tx.execute("SELECT 1");
    });
    const txErr = await databaseError(slow);
    assert.equal(txErr.body.code, "ABORTED");
    assert.match(txErr.message, /SQLGATE_PSDB_TRANSACTION_TIMEOUT_MS/);
    const [row] = (await c.execute("SELECT qty FROM items WHERE name = 'a'")).rows as {
      qty: number;
    }[];
    assert.equal(row?.qty, 1, "the timed-out transaction was rolled back");
  });

  test("a forged or altered session is refused in-band and a fresh one returned", async () => {
    const response = await fetch(`${gateway.baseUrl}/psdb.v1alpha1.Database/Execute`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        query: "SELECT 1",
        session: { signature: "AAAA", vitessSession: { SessionUUID: "sg1.x.y", unknownField: 1 } },
      }),
    });
    assert.equal(response.status, 200);
    const body = (await response.json()) as {
      error: { code: string; message: string };
      session: { signature: string; vitessSession: { SessionUUID: string } };
    };
    assert.equal(body.error.code, "INVALID_ARGUMENT");
    assert.match(body.error.message, /signature/);
    assert.notEqual(body.session.vitessSession.SessionUUID, "sg1.x.y");
  });

  test("malformed requests get a non-2xx answer with both a Connect error and an `error` object", async () => {
    const response = await fetch(`${gateway.baseUrl}/psdb.v1alpha1.Database/Execute`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    assert.equal(response.status, 400);
    const body = (await response.json()) as {
      code: string;
      message: string;
      error: { code: string; message: string };
    };
    assert.equal(body.code, "invalid_argument");
    assert.equal(body.error.code, "INVALID_ARGUMENT");
    assert.equal(body.error.message, body.message);
  });

  test("the wire format: protojson with omitted zero values, lengths as strings, base64 values", async () => {
    const response = await fetch(`${gateway.baseUrl}/psdb.v1alpha1.Database/Execute`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "select 1 as a, null as b, 'x' as c", session: null }),
    });
    const body = (await response.json()) as {
      session: { signature: string; vitessSession: Record<string, unknown> };
      result: { fields: Record<string, unknown>[]; rows: unknown[]; rowsAffected?: string };
      timing: number;
    };
    assert.deepEqual(body.result.rows, [{ lengths: ["1", "-1", "1"], values: "MXg=" }]);
    assert.equal(body.result.rowsAffected, undefined);
    assert.equal(body.result.fields[1]?.type, undefined, "NULL_TYPE is the zero value");
    assert.equal(body.result.fields[2]?.type, "VARCHAR");
    assert.equal(typeof body.timing, "number");
    assert.equal(Buffer.from(body.session.signature, "base64").length, 32);
    assert.equal(body.session.vitessSession.autocommit, true);
    assert.deepEqual(body.session.vitessSession.options, {
      includedFields: "ALL",
      clientFoundRows: true,
    });
  });
});
