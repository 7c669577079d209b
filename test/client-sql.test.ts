/**
 * The SDK's SQL methods against a real gateway and MariaDB, over HTTP/2 and
 * HTTP/1.1: execute with positional and named parameters, row shapes, value
 * options, statement options (maxRows, timeoutMs, readOnly, signal), batches,
 * streams, and `DatabaseError` for MySQL's errors and a gateway limit.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import {
  ColumnType,
  createClient,
  DatabaseError,
  decimal,
  type ErrorCode,
  isRetryable,
} from "../client/src/index.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase, runningStatements, waitUntilGone } from "./support/mysql.js";

type Context = Parameters<typeof createTestDatabase>[0];

async function setup(t: Context, httpVersion: "1.1" | "2", env: Record<string, string> = {}) {
  const db = await createTestDatabase(t);
  await db.admin.query(
    "CREATE TABLE notes (id BIGINT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(100) UNIQUE, n BIGINT UNSIGNED)",
  );
  const gateway = await startGateway(t, db.url, { env });
  const client = createClient({ url: gateway.baseUrl, httpVersion });
  t.after(() => client.close());
  return { db, gateway, client };
}

/** An assert.rejects predicate: a DatabaseError with `code` and the given fields. */
function databaseError(code: ErrorCode, fields: Partial<DatabaseError> = {}) {
  return (err: unknown) => {
    assert.ok(err instanceof DatabaseError, String(err));
    assert.equal(err.code, code, err.message);
    assert.ok(err.cause instanceof ConnectError);
    for (const [key, value] of Object.entries(fields)) {
      assert.deepEqual(err[key as keyof DatabaseError], value, key);
    }
    return true;
  };
}

for (const httpVersion of ["2", "1.1"] as const) {
  describe(`HTTP/${httpVersion}`, () => {
    test("execute: typed parameters in, lossless rows out, as objects or arrays", async (t) => {
      const { client } = await setup(t, httpVersion);
      const big = 2n ** 63n - 1n;
      const result = await client.execute(
        "SELECT ? AS big, ? AS s, ? AS bytes, ? AS nothing, ? AS price, 7 AS seven, COUNT(*) AS count",
        [big, "héllo", new Uint8Array([0, 255]), null, decimal("12.500")],
      );
      assert.deepEqual(result.rows, [
        {
          big,
          s: "héllo",
          bytes: new Uint8Array([0, 255]),
          nothing: null,
          price: "12.500",
          seven: 7, // MariaDB types a short literal as INT: a number
          count: 1n, // COUNT(*) is BIGINT: a bigint by default
        },
      ]);
      assert.deepEqual(
        result.fields.map((f) => f.name),
        ["big", "s", "bytes", "nothing", "price", "seven", "count"],
      );
      assert.equal(result.fields[6]?.type, ColumnType.BIGINT);
      assert.equal(result.truncated, false);
      assert.ok(result.timing.serverUs > 0);

      const arrays = await client.execute(
        "SELECT :a AS a, :b AS b",
        { a: 1, b: [1, "x"] },
        {
          as: "array",
        },
      );
      // A JSON parameter selected as such is text: its column is no JSON column.
      assert.deepEqual(arrays.rows, [[1n, '[1,"x"]']]);
    });

    test("execute: writes report rowsAffected, lastInsertId and insertId", async (t) => {
      const { client } = await setup(t, httpVersion);
      const first = await client.execute("INSERT INTO notes (body, n) VALUES (?, ?), (?, ?)", [
        "a",
        2n ** 64n - 1n,
        "b",
        0,
      ]);
      assert.equal(first.rowsAffected, 2);
      assert.equal(first.lastInsertId, 1n);
      assert.equal(first.insertId, 1n);
      assert.deepEqual(first.rows, []);
      assert.deepEqual(first.fields, []);
      const update = await client.execute("UPDATE notes SET body = body WHERE id <= 2");
      assert.equal(update.rowsAffected, 2); // CLIENT_FOUND_ROWS: matched, not changed
      assert.equal(update.lastInsertId, 0n);
      assert.equal("insertId" in update, false);
      const { rows } = await client.execute<{ n: bigint }>("SELECT n FROM notes ORDER BY id");
      assert.deepEqual(
        rows.map((r) => r.n),
        [2n ** 64n - 1n, 0n],
      );
    });

    test("value options: int64, temporal, json and cast, per client and per call", async (t) => {
      const { client, gateway, db } = await setup(t, httpVersion);
      const sql =
        "SELECT 9007199254740991 AS safe, DATE '2024-02-29' AS d, TIMESTAMP '2024-02-29 12:34:56.789123' AS dt," +
        " TIME '-01:02:03' AS tm, JSON_OBJECT('a', 1) AS js, 1.50 AS price";
      const plain = await client.execute(sql);
      assert.deepEqual(plain.rows[0], {
        safe: 9007199254740991n,
        d: "2024-02-29",
        dt: "2024-02-29 12:34:56.789123",
        tm: "-01:02:03",
        js: { a: 1 },
        price: "1.50",
      });
      const converted = await client.execute(sql, [], {
        int64: "number",
        temporal: "date",
        json: "text",
      });
      assert.deepEqual(converted.rows[0], {
        safe: 9007199254740991,
        d: new Date(Date.UTC(2024, 1, 29)),
        dt: new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789)),
        tm: "-01:02:03",
        js: '{"a": 1}',
        price: "1.50",
      });
      const strings = await client.execute("SELECT 18446744073709551615 AS u", [], {
        int64: "string",
      });
      assert.deepEqual(strings.rows[0], { u: "18446744073709551615" });
      await assert.rejects(
        client.execute("SELECT 9007199254740993 AS unsafe", [], { int64: "number" }),
        databaseError("out_of_range"),
      );
      // MySQL's zero date is no day: refused as a Date, kept as a string.
      await db.admin.query("CREATE TABLE zero (d DATE)");
      await db.admin.query("INSERT INTO zero VALUES ('0000-00-00')");
      await assert.rejects(
        client.execute("SELECT d FROM zero", [], { temporal: "date" }),
        databaseError("out_of_range"),
      );
      assert.deepEqual((await client.execute("SELECT d FROM zero")).rows, [{ d: "0000-00-00" }]);

      // A client-wide default, and a cast that sees the Value and can defer.
      const numbers = createClient({
        url: gateway.baseUrl,
        httpVersion,
        int64: "number",
        cast: (field, value, next) =>
          field.type === ColumnType.DECIMAL && value.kind.case === "decimalValue"
            ? Number(value.kind.value)
            : next(),
      });
      t.after(() => numbers.close());
      const cast = await numbers.execute("SELECT COUNT(*) AS n, 2.25 AS d, 'x' AS s FROM DUAL");
      assert.deepEqual(cast.rows[0], { n: 1, d: 2.25, s: "x" });
      const overridden = await numbers.execute("SELECT COUNT(*) AS n", [], { int64: "bigint" });
      assert.deepEqual(overridden.rows[0], { n: 1n });
    });

    test("duplicate column names: refused as objects, kept as arrays", async (t) => {
      const { client } = await setup(t, httpVersion);
      await assert.rejects(
        client.execute("SELECT 1 AS a, 2 AS a, 3 AS b"),
        databaseError("invalid_argument"),
      );
      await assert.rejects(client.execute("SELECT 1 AS a, 2 AS a"), /named a: give them aliases/);
      const arrays = await client.execute("SELECT 1 AS a, 2 AS a", undefined, { as: "array" });
      assert.deepEqual(arrays.rows, [[1, 2]]);
      assert.deepEqual(
        arrays.fields.map((f) => f.name),
        ["a", "a"],
      );
    });

    test("statement options: maxRows, timeoutMs, readOnly and signal", async (t) => {
      const { client, db } = await setup(t, httpVersion);
      const cut = await client.execute("SELECT seq FROM seq_1_to_100", [], { maxRows: 10 });
      assert.equal(cut.rows.length, 10);
      assert.equal(cut.truncated, true);

      const started = Date.now();
      await assert.rejects(
        client.execute("SELECT SLEEP(5) AS timeout_marker", [], { timeoutMs: 300 }),
        databaseError("deadline_exceeded"),
      );
      assert.ok(Date.now() - started < 3000);
      await waitUntilGone(db.admin, "timeout_marker");

      await assert.rejects(
        client.execute("INSERT INTO notes (body) VALUES ('ro')", [], { readOnly: true }),
        databaseError("permission_denied"),
      );

      const abort = new AbortController();
      const pending = client.execute("SELECT SLEEP(5) AS signal_marker", [], {
        signal: abort.signal,
      });
      while ((await runningStatements(db.admin, "signal_marker")) === 0) {
        await new Promise((r) => setTimeout(r, 20));
      }
      abort.abort();
      await assert.rejects(pending, databaseError("canceled"));
      await waitUntilGone(db.admin, "signal_marker");
    });

    test("batch: results in order; atomic rolls back and names the statement", async (t) => {
      const { client, db } = await setup(t, httpVersion);
      const results = await client.batch([
        "INSERT INTO notes (body) VALUES ('one')",
        { sql: "INSERT INTO notes (body) VALUES (?)", params: ["two"] },
        { sql: "SELECT body FROM notes WHERE body = :b", params: { b: "two" } },
      ]);
      assert.equal(results.length, 3);
      assert.equal(results[0]?.insertId, 1n);
      assert.deepEqual(results[2]?.rows, [{ body: "two" }]);

      await assert.rejects(
        client.batch(
          ["INSERT INTO notes (body) VALUES ('three')", "INSERT INTO notes (body) VALUES ('one')"],
          { atomic: true },
        ),
        databaseError("already_exists", { statementIndex: 1, errno: 1062 }),
      );
      const [rows] = await db.admin.query("SELECT body FROM notes ORDER BY id");
      assert.deepEqual(rows, [{ body: "one" }, { body: "two" }]);

      const arrays = await client.batch(["SELECT 1 AS a, 2 AS a"], { as: "array" });
      assert.deepEqual(arrays[0]?.rows, [[1, 2]]);
    });

    test("stream: rows with fields and summary; leaving the loop stops the statement", async (t) => {
      const { client, db } = await setup(t, httpVersion);
      const rows = client.stream<{ seq: bigint; label: string }>(
        "SELECT seq, CONCAT('row-', seq) AS label FROM seq_1_to_5000 WHERE seq > ?",
        [10],
      );
      const before = rows.fields;
      assert.equal(before, undefined, "no fields before the call");
      let n = 0;
      let sum = 0n;
      for await (const row of rows) {
        assert.deepEqual(
          rows.fields?.map((f) => f.name),
          ["seq", "label"],
        );
        assert.equal(row.label, `row-${row.seq}`);
        n++;
        sum += row.seq;
      }
      assert.equal(n, 4990);
      assert.equal(sum, (5000n * 5001n) / 2n - 55n);
      assert.ok(rows.summary !== undefined);
      assert.throws(() => rows[Symbol.asyncIterator](), /only once/);

      const arrays = client.stream("SELECT :x AS a, :x AS a", { x: "y" }, { as: "array" });
      const all: unknown[] = [];
      for await (const row of arrays) all.push(row);
      assert.deepEqual(all, [["y", "y"]]);

      // A large, slow result: break after a few rows; MySQL stops.
      const slow = client.stream(
        "SELECT seq, SLEEP(0.001) AS break_marker FROM seq_1_to_1000000",
        [],
        { as: "array" },
      );
      let seen = 0;
      for await (const _ of slow) {
        if (++seen === 3) break;
      }
      await waitUntilGone(db.admin, "break_marker");

      await assert.rejects(
        async () => {
          for await (const _ of client.stream("SELEC 1")) {
            // never reached
          }
        },
        databaseError("invalid_argument", { errno: 1064 }),
      );
    });

    test("errors: syntax error and duplicate key carry MySQL's fields", async (t) => {
      const { client } = await setup(t, httpVersion);
      const syntax = await client.execute("SELEC 1").catch((err: unknown) => err);
      assert.ok(syntax instanceof DatabaseError);
      assert.ok(syntax instanceof Error);
      assert.equal(syntax.name, "DatabaseError");
      assert.equal(syntax.code, "invalid_argument");
      assert.equal(syntax.errno, 1064);
      assert.equal(syntax.sqlState, "42000");
      assert.match(syntax.sqlMessage ?? "", /You have an error in your SQL syntax/);
      assert.match(syntax.message, /invalid_argument/);
      assert.equal(syntax.statementIndex, undefined);
      assert.equal(syntax.limitExceeded, undefined);
      assert.equal(isRetryable(syntax), false);

      await client.execute("INSERT INTO notes (body) VALUES ('dup')");
      await assert.rejects(
        client.execute("INSERT INTO notes (body) VALUES (?)", ["dup"]),
        databaseError("already_exists", { errno: 1062, sqlState: "23000" }),
      );
      await assert.rejects(
        client.execute("SELECT * FROM missing_table"),
        databaseError("not_found", { errno: 1146, sqlState: "42S02" }),
      );
      // Values the SDK cannot send fail before anything is sent.
      await assert.rejects(
        client.execute("SELECT ?", [Symbol("x")]),
        databaseError("invalid_argument", { errno: undefined }),
      );
      await assert.rejects(client.execute("SELECT ?", [new Map()]), /parameter 1: a Map/);
    });
  });
}

test("errors: a gateway limit names its setting in limitExceeded", async (t) => {
  const { client } = await setup(t, "2", { SQLGATE_MAX_RESPONSE_BYTES: "4096" });
  const err = await client.execute("SELECT REPEAT('x', 10000) AS big").catch((e: unknown) => e);
  assert.ok(err instanceof DatabaseError, String(err));
  assert.equal(err.code, "resource_exhausted");
  assert.deepEqual(err.limitExceeded, {
    setting: "SQLGATE_MAX_RESPONSE_BYTES",
    limit: 4096,
    hint: "use StreamExecute, or select fewer rows or columns",
  });
  assert.equal(err.errno, undefined);
  // The same rows stream fine.
  for await (const row of client.stream<{ big: string }>("SELECT REPEAT('x', 10000) AS big")) {
    assert.equal(row.big.length, 10000);
  }
});

test("isRetryable: a gateway that cannot be reached is transient", async (t) => {
  // A port that nothing listens on: the call never reaches a gateway.
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  const client = createClient({ url: `http://127.0.0.1:${port}`, httpVersion: "1.1" });
  t.after(() => client.close());
  const err = await client.execute("SELECT 1").catch((e: unknown) => e);
  assert.ok(err instanceof DatabaseError, String(err));
  assert.equal(err.code, "unavailable");
  assert.equal(isRetryable(err), true);
  assert.equal(isRetryable(new Error("plain")), false);
});
