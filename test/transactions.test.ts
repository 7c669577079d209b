/**
 * Interactive transactions across requests: isolation, commit, rollback, idle
 * expiry, ordering on one session, limits, broken connections, and every kind
 * of bad token, against real MariaDB through the real gateway.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { IsolationLevel } from "../gen/sqlgate/v1/database_pb.js";
import { databaseClient } from "./support/clients.js";
import { startGateway, type TestGatewayOptions } from "./support/gateway.js";
import { connectDirect, createTestDatabase, waitForLockWait } from "./support/mysql.js";

const secret = "a-test-secret-that-is-long-enough-0123456789";

async function setup(
  t: Parameters<typeof createTestDatabase>[0],
  options: TestGatewayOptions = {},
) {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB");
  const gateway = await startGateway(t, db.url, options);
  const client = databaseClient(gateway.baseUrl);
  const count = async () => {
    const [rows] = await db.admin.query("SELECT COUNT(*) AS n FROM items");
    return Number((rows as { n: number }[])[0]?.n);
  };
  return { db, gateway, client, count };
}

function expectCode(code: Code, pattern?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

const insert = (id: number, session: string) => ({
  sql: "INSERT INTO items VALUES (?, ?)",
  params: [
    { kind: { case: "numberValue" as const, value: id } },
    { kind: { case: "stringValue" as const, value: `item ${id}` } },
  ],
  session,
});

describe("transactions", () => {
  test("writes are invisible to others until commit, and visible after", async (t) => {
    const { client, count } = await setup(t);
    const { session, idleTimeoutMs } = await client.beginTransaction({});
    assert.equal(idleTimeoutMs, 30_000);
    await client.execute(insert(1, session));
    const inside = await client.execute({ sql: "SELECT COUNT(*) FROM items", session });
    assert.equal(inside.rows[0]?.values[0]?.kind.value, 1n);
    const outside = await client.execute({ sql: "SELECT COUNT(*) FROM items" });
    assert.equal(outside.rows[0]?.values[0]?.kind.value, 0n);
    assert.equal(await count(), 0);
    await client.commitTransaction({ session });
    assert.equal(await count(), 1);
  });

  test("rollback discards the writes; the token is then refused, saying so", async (t) => {
    const { client, count } = await setup(t);
    const { session } = await client.beginTransaction({ isolation: IsolationLevel.SERIALIZABLE });
    await client.execute(insert(1, session));
    const level = await client.execute({
      sql: "SELECT trx_isolation_level FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = CONNECTION_ID()",
      session,
    });
    assert.equal(level.rows[0]?.values[0]?.kind.value, "SERIALIZABLE");
    await client.rollbackTransaction({ session });
    assert.equal(await count(), 0);
    await assert.rejects(
      client.execute({ sql: "SELECT 1", session }),
      expectCode(Code.FailedPrecondition, /rolled back/),
    );
    await assert.rejects(
      client.commitTransaction({ session }),
      expectCode(Code.FailedPrecondition),
    );
  });

  test("an idle transaction is rolled back and its locks released", async (t) => {
    const { client, count, db } = await setup(t, {
      env: { SQLGATE_TRANSACTION_IDLE_TIMEOUT_MS: "300" },
    });
    const { session } = await client.beginTransaction({});
    await client.execute(insert(1, session));
    await new Promise((r) => setTimeout(r, 700));
    await assert.rejects(
      client.execute({ sql: "SELECT 1", session }),
      expectCode(Code.FailedPrecondition, /rolled back after 300 ms without a call/),
    );
    assert.equal(await count(), 0);
    // The row lock is gone: a direct write to the same key does not wait.
    await db.admin.query("SET SESSION innodb_lock_wait_timeout = 1");
    await db.admin.query("INSERT INTO items VALUES (1, 'direct')");
    assert.equal(await count(), 1);
  });

  test("a call keeps a transaction alive; a read-only one refuses writes", async (t) => {
    const { client } = await setup(t, { env: { SQLGATE_TRANSACTION_IDLE_TIMEOUT_MS: "1500" } });
    const { session } = await client.beginTransaction({ readOnly: true });
    // Calls 300 ms apart for longer than the idle timeout keep it open.
    for (let i = 0; i < 7; i++) {
      await new Promise((r) => setTimeout(r, 300));
      await client.execute({ sql: "SELECT 1", session });
    }
    await assert.rejects(client.execute(insert(1, session)), expectCode(Code.PermissionDenied));
    await client.commitTransaction({ session });
  });

  test("a transaction open past its maximum lifetime is rolled back, however busy", async (t) => {
    const { client, count } = await setup(t, {
      env: { SQLGATE_TRANSACTION_MAX_LIFETIME_MS: "800" },
    });
    const { session } = await client.beginTransaction({});
    await client.execute(insert(1, session));
    const until = Date.now() + 5000;
    await assert.rejects(
      async () => {
        for (;;) {
          assert.ok(Date.now() < until, "the transaction outlived its maximum lifetime");
          await client.execute({ sql: "SELECT 1", session });
          await new Promise((r) => setTimeout(r, 100));
        }
      },
      expectCode(Code.FailedPrecondition, /rolled back after 800 ms open/),
    );
    assert.equal(await count(), 0);
  });

  test("a failed statement keeps the transaction; commit keeps the good writes", async (t) => {
    const { client, count } = await setup(t);
    const { session } = await client.beginTransaction({});
    await client.execute(insert(1, session));
    await assert.rejects(
      client.execute({ sql: "SELEC 1", session }),
      expectCode(Code.InvalidArgument),
    );
    await assert.rejects(client.execute(insert(1, session)), expectCode(Code.AlreadyExists));
    await client.execute(insert(2, session));
    await client.commitTransaction({ session });
    assert.equal(await count(), 2);
  });

  test("a deadlock ends the transaction instead of carrying on in autocommit", async (t) => {
    const { client, db } = await setup(t);
    await db.admin.query("INSERT INTO items SELECT seq, 'x' FROM seq_1_to_100");
    const other = await connectDirect(db.url);
    t.after(() => other.end());
    const { session } = await client.beginTransaction({});
    await client.execute({ sql: "UPDATE items SET name = 'gateway' WHERE id = 1", session });
    // The other transaction is heavier, so InnoDB picks the gateway's as the victim.
    await other.query("START TRANSACTION");
    await other.query("UPDATE items SET name = 'other' WHERE id >= 2");
    const blocked = other.query("UPDATE items SET name = 'other' WHERE id = 1");
    await waitForLockWait(db.admin);
    await assert.rejects(
      client.execute({ sql: "UPDATE items SET name = 'gateway' WHERE id = 2", session }),
      expectCode(Code.Aborted),
    );
    await blocked;
    await other.query("COMMIT");
    await assert.rejects(
      client.execute({ sql: "INSERT INTO items VALUES (999, 'late')", session }),
      expectCode(Code.FailedPrecondition, /deadlock/),
    );
    const [rows] = await db.admin.query("SELECT name FROM items WHERE id IN (1, 999) ORDER BY id");
    assert.deepEqual(rows, [{ name: "other" }]);
  });

  test("a COMMIT or DDL sent through Execute ends the transaction and its token", async (t) => {
    const { client, count } = await setup(t);
    for (const ending of ["COMMIT", "CREATE TABLE other (id INT)"]) {
      const { session } = await client.beginTransaction({});
      await client.execute(insert(ending === "COMMIT" ? 1 : 2, session));
      await client.execute({ sql: ending, session });
      await assert.rejects(
        client.execute(insert(3, session)),
        expectCode(Code.FailedPrecondition, /ended MySQL's transaction/),
      );
    }
    // MySQL committed both inserts; nothing ran afterwards in autocommit mode.
    assert.equal(await count(), 2);
  });

  test("calls on one transaction run one at a time, in the order they arrive", async (t) => {
    const { client, db } = await setup(t);
    await db.admin.query(
      "CREATE TABLE seq (n INT AUTO_INCREMENT PRIMARY KEY, i INT, started DATETIME(6))",
    );
    const { session } = await client.beginTransaction({});
    const calls = Array.from({ length: 20 }, (_, i) =>
      client.execute({
        // Each call holds the connection for a moment: overlapping use would interleave.
        sql: "INSERT INTO seq (i, started) SELECT ?, NOW(6) FROM DUAL WHERE SLEEP(0.01) = 0",
        params: [{ kind: { case: "numberValue", value: i } }],
        session,
      }),
    );
    await Promise.all(calls);
    await client.commitTransaction({ session });
    const [rows] = await db.admin.query("SELECT i FROM seq ORDER BY n");
    assert.deepEqual(
      (rows as { i: number }[]).map((r) => r.i),
      Array.from({ length: 20 }, (_, i) => i),
    );
  });

  test("past SQLGATE_MAX_TRANSACTIONS, BeginTransaction is resource_exhausted", async (t) => {
    const { client } = await setup(t, { env: { SQLGATE_MAX_TRANSACTIONS: "2" } });
    const first = await client.beginTransaction({});
    await client.beginTransaction({});
    await assert.rejects(
      client.beginTransaction({}),
      expectCode(Code.ResourceExhausted, /SQLGATE_MAX_TRANSACTIONS/),
    );
    await client.rollbackTransaction({ session: first.session });
    await client.beginTransaction({});
  });

  test("a transaction whose connection broke ends; its connection is not reused", async (t) => {
    const { client, count } = await setup(t);
    const { session } = await client.beginTransaction({});
    await client.execute(insert(1, session));
    const id = await client.execute({ sql: "SELECT CONNECTION_ID()", session });
    const threadId = id.rows[0]?.values[0]?.kind.value;
    await assert.rejects(
      client.execute({ sql: `KILL CONNECTION ${threadId}`, session }),
      expectCode(Code.Unavailable),
    );
    await assert.rejects(
      client.execute({ sql: "SELECT 1", session }),
      expectCode(Code.FailedPrecondition, /connection broke/),
    );
    assert.equal(await count(), 0);
    // A new transaction works on a fresh connection.
    const next = await client.beginTransaction({});
    const other = await client.execute({ sql: "SELECT CONNECTION_ID()", session: next.session });
    assert.notEqual(other.rows[0]?.values[0]?.kind.value, threadId);
  });
});

describe("bad tokens never reach a connection", () => {
  test("forged, tampered, other replica's, unknown, ended", async (t) => {
    const db = await createTestDatabase(t);
    const env = { SQLGATE_TOKEN_SECRET: secret, SQLGATE_NODE_URL: "http://replica-a:8080" };
    const a = await startGateway(t, db.url, { env });
    const b = await startGateway(t, db.url, {
      env: { ...env, SQLGATE_NODE_URL: "http://replica-b:8080" },
    });
    const twin = await startGateway(t, db.url, { env }); // same name and key as a, other process
    const [clientA, clientB, clientTwin] = [
      databaseClient(a.baseUrl),
      databaseClient(b.baseUrl),
      databaseClient(twin.baseUrl),
    ];
    const { session } = await clientA.beginTransaction({});

    await assert.rejects(
      clientA.execute({ sql: "SELECT 1", session: "not-a-token" }),
      expectCode(Code.InvalidArgument, /invalid transaction token/),
    );
    const [head, payload, signature] = session.split(".");
    const forgedPayload = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(payload ?? "", "base64url").toString()), s: "x" }),
    ).toString("base64url");
    await assert.rejects(
      clientA.execute({ sql: "SELECT 1", session: `${head}.${forgedPayload}.${signature}` }),
      expectCode(Code.InvalidArgument, /signature/),
    );
    // One character of the signature changed (not the last, whose low bits base64url ignores).
    const flipped = `${session.slice(0, -2)}${session.at(-2) === "A" ? "B" : "A"}${session.slice(-1)}`;
    assert.notEqual(flipped, session);
    await assert.rejects(
      clientA.execute({ sql: "SELECT 1", session: flipped }),
      expectCode(Code.InvalidArgument),
    );
    await assert.rejects(
      clientB.execute({ sql: "SELECT 1", session }),
      expectCode(Code.FailedPrecondition, /replica-a/),
    );
    await assert.rejects(
      clientTwin.execute({ sql: "SELECT 1", session }),
      expectCode(Code.NotFound),
    );
    await clientA.commitTransaction({ session });
    await assert.rejects(
      clientA.execute({ sql: "SELECT 1", session }),
      expectCode(Code.FailedPrecondition, /committed/),
    );
  });
});

test("1,000 transactions open at once, each completed correctly", async (t) => {
  const { client, count } = await setup(t, { env: { SQLGATE_MAX_TRANSACTIONS: "1000" } });
  const ids = Array.from({ length: 1000 }, (_, i) => i + 1);
  const sessions = await Promise.all(ids.map(() => client.beginTransaction({})));
  await Promise.all(ids.map((id, i) => client.execute(insert(id, sessions[i]?.session ?? ""))));
  assert.equal(await count(), 0, "nothing is visible before commit");
  await Promise.all(
    sessions.map(({ session }, i) =>
      i % 2 === 0 ? client.commitTransaction({ session }) : client.rollbackTransaction({ session }),
    ),
  );
  assert.equal(await count(), 500);
});
