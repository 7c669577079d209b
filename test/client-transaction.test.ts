/**
 * `client.transaction` against a real gateway and MariaDB: commit, rollback
 * when the callback throws (with the callback's own error), execute, batch
 * and stream bound to the transaction, options, and the whole callback run
 * again after a real deadlock provoked with a second transaction.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  createClient,
  DatabaseError,
  isTransactionConflict,
  type Transaction,
} from "../client/src/index.js";
import { startGateway } from "./support/gateway.js";
import { connectDirect, createTestDatabase, waitForLockWait } from "./support/mysql.js";

type Context = Parameters<typeof createTestDatabase>[0];

async function setup(t: Context, httpVersion: "1.1" | "2" = "2") {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB");
  const gateway = await startGateway(t, db.url);
  const client = createClient({ url: gateway.baseUrl, httpVersion });
  t.after(() => client.close());
  const names = async () => {
    const [rows] = await db.admin.query("SELECT id, name FROM items ORDER BY id");
    return rows as { id: number; name: string }[];
  };
  return { db, client, names };
}

for (const httpVersion of ["2", "1.1"] as const) {
  test(`HTTP/${httpVersion}: commit makes the writes visible, and only then`, async (t) => {
    const { client, names } = await setup(t, httpVersion);
    const result = await client.transaction(async (tx) => {
      await tx.execute("INSERT INTO items VALUES (?, ?)", [1, "one"]);
      await tx.batch([
        { sql: "INSERT INTO items VALUES (?, ?)", params: [2, "two"] },
        { sql: "INSERT INTO items VALUES (:id, :name)", params: { id: 3, name: "three" } },
      ]);
      // Inside: the transaction sees its writes, through every method.
      const seen: unknown[] = [];
      for await (const row of tx.stream("SELECT id FROM items ORDER BY id", [], { as: "array" })) {
        seen.push(row[0]);
      }
      assert.deepEqual(seen, [1, 2, 3]);
      // Outside: nothing yet, neither to others nor to the client's own calls.
      assert.deepEqual(await names(), []);
      const outside = await client.execute("SELECT COUNT(*) AS n FROM items");
      assert.deepEqual(outside.rows, [{ n: 0n }]);
      return "done";
    });
    assert.equal(result, "done");
    assert.deepEqual(await names(), [
      { id: 1, name: "one" },
      { id: 2, name: "two" },
      { id: 3, name: "three" },
    ]);
  });
}

test("a throwing callback rolls back and its own error comes out", async (t) => {
  const { client, names } = await setup(t);
  const mine = new Error("changed my mind");
  let leaked: Transaction | undefined;
  await assert.rejects(
    client.transaction(async (tx) => {
      leaked = tx;
      await tx.execute("INSERT INTO items VALUES (1, 'one')");
      throw mine;
    }),
    (err: unknown) => err === mine,
  );
  assert.deepEqual(await names(), []);
  // The transaction is over: its methods refuse to run rather than use a dead token.
  await assert.rejects(leaked?.execute("SELECT 1") ?? Promise.reject(new Error("no tx")), {
    name: "DatabaseError",
    code: "failed_precondition",
    message: /the transaction has ended \(rolled back/,
  });
  // A SQL error inside is a DatabaseError, not retried, and the transaction rolled back.
  let runs = 0;
  await assert.rejects(
    client.transaction(async (tx) => {
      runs++;
      await tx.execute("INSERT INTO items VALUES (1, 'one')");
      await tx.execute("INSERT INTO items VALUES (1, 'again')");
    }),
    { name: "DatabaseError", code: "already_exists", errno: 1062 },
  );
  assert.equal(runs, 1);
  assert.deepEqual(await names(), []);
});

test("isolation and readOnly reach MySQL", async (t) => {
  const { client } = await setup(t);
  const level = await client.transaction(
    async (tx) => {
      // InnoDB lists a transaction once it has touched a table.
      await tx.execute("INSERT INTO items VALUES (1, 'one')");
      const { rows } = await tx.execute<{ level: string }>(
        "SELECT trx_isolation_level AS level FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = CONNECTION_ID()",
      );
      return rows[0]?.level;
    },
    { isolation: "serializable" },
  );
  assert.equal(level, "SERIALIZABLE");
  await assert.rejects(
    client.transaction((tx) => tx.execute("INSERT INTO items VALUES (1, 'x')"), { readOnly: true }),
    { name: "DatabaseError", code: "permission_denied" },
  );
  await assert.rejects(
    client.transaction(async () => 1, { retries: -1 }),
    { name: "DatabaseError", code: "invalid_argument" },
  );
});

/**
 * Makes `tx` lose a deadlock against a direct transaction on another
 * connection: tx locks row 1; the other locks rows 2..100 (heavier, so
 * InnoDB picks tx as the victim) and waits for row 1; then tx asks for row
 * 2. The other transaction commits as soon as its wait ends.
 */
async function loseDeadlock(
  tx: Transaction,
  other: Awaited<ReturnType<typeof connectDirect>>,
  admin: Awaited<ReturnType<typeof createTestDatabase>>["admin"],
) {
  await tx.execute("UPDATE items SET name = 'sdk' WHERE id = 1");
  await other.query("START TRANSACTION");
  await other.query("UPDATE items SET name = 'other' WHERE id >= 2");
  const blocked = other.query("UPDATE items SET name = 'other' WHERE id = 1");
  void blocked.then(() => other.query("COMMIT"));
  await waitForLockWait(admin);
  await tx.execute("UPDATE items SET name = 'sdk' WHERE id = 2");
}

test("a transaction that loses a real deadlock runs again, and commits", async (t) => {
  const { client, db, names } = await setup(t);
  await db.admin.query("INSERT INTO items SELECT seq, 'x' FROM seq_1_to_100");
  const other = await connectDirect(db.url);
  t.after(() => other.end());

  const errors: unknown[] = [];
  let runs = 0;
  const result = await client.transaction(async (tx) => {
    runs++;
    if (runs === 1) {
      await loseDeadlock(tx, other, db.admin).catch((err: unknown) => {
        errors.push(err);
        throw err;
      });
    }
    // The second run waits for the other transaction's commit, then wins.
    await tx.execute("UPDATE items SET name = ? WHERE id IN (1, 2)", [`sdk-${runs}`]);
    return runs;
  });
  assert.equal(result, 2);
  assert.equal(runs, 2);
  const [deadlock] = errors;
  assert.ok(deadlock instanceof DatabaseError);
  assert.equal(deadlock.code, "aborted");
  assert.equal(deadlock.errno, 1213);
  assert.equal(isTransactionConflict(deadlock), true);
  const rows = await names();
  assert.deepEqual(rows.slice(0, 3), [
    { id: 1, name: "sdk-2" },
    { id: 2, name: "sdk-2" },
    { id: 3, name: "other" },
  ]);
});

test("a deadlock the callback swallows still reruns it; retries: 0 surfaces it", async (t) => {
  const { client, db, names } = await setup(t);
  await db.admin.query("INSERT INTO items SELECT seq, 'x' FROM seq_1_to_100");
  const other = await connectDirect(db.url);
  t.after(() => other.end());

  // The callback catches the deadlock and goes on: the gateway has ended the
  // transaction, COMMIT is refused, and the SDK runs the callback again.
  let runs = 0;
  await client.transaction(async (tx) => {
    runs++;
    if (runs === 1) await loseDeadlock(tx, other, db.admin).catch(() => undefined);
    await tx.execute("UPDATE items SET name = ? WHERE id = 3", [`run-${runs}`]);
  });
  assert.equal(runs, 2);
  assert.deepEqual((await names())[2], { id: 3, name: "run-2" });

  // With no retries the deadlock comes out as it is.
  runs = 0;
  await assert.rejects(
    client.transaction(
      async (tx) => {
        runs++;
        await loseDeadlock(tx, other, db.admin);
      },
      { retries: 0 },
    ),
    { name: "DatabaseError", code: "aborted", errno: 1213 },
  );
  assert.equal(runs, 1);
});
