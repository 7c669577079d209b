/**
 * The SDK resends a read whose call was lost, and nothing else: which
 * statements count as reads, and how many attempts a call gets against a
 * gateway that cannot be reached (a real refused connection; every attempt
 * is counted by an interceptor). A read resent across a replica killed
 * under it is in test/haproxy.test.ts.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import type { Interceptor } from "@connectrpc/connect";
import { type ClientOptions, createClient, DatabaseError } from "../client/src/index.js";
import { isReadStatement } from "../client/src/read-retry.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

test("isReadStatement: SELECT, SHOW, VALUES and TABLE, past comments and parentheses", () => {
  const reads = [
    "SELECT 1",
    "  select * from t",
    "(SELECT 1) UNION (SELECT 2)",
    "/* tag */ SELECT 1",
    "-- note\nSELECT 1",
    "# note\n\tSHOW TABLES",
    "VALUES ROW(1)",
    "TABLE t",
  ];
  const others = [
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "WITH c AS (SELECT 1) UPDATE t, c SET t.a = 1",
    "EXPLAIN ANALYZE DELETE FROM t",
    "ANALYZE DELETE FROM t",
    "/*!50000 INSERT INTO t VALUES (1) */",
    "/* unterminated SELECT",
    "-- only a comment",
    "--SELECT 1",
    "SELECTED",
    "",
  ];
  for (const sql of reads) assert.equal(isReadStatement(sql), true, sql);
  for (const sql of others) assert.equal(isReadStatement(sql), false, sql);
});

/** A base URL on which nothing listens: every call is refused. */
async function refusingUrl(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

/** A client whose every attempt (every call sent) is counted. */
function countingClient(options: ClientOptions) {
  const attempts = { count: 0 };
  const count: Interceptor = (next) => (req) => {
    attempts.count++;
    return next(req);
  };
  const client = createClient({ ...options, interceptors: [count] });
  return { client, attempts };
}

for (const httpVersion of ["2", "1.1"] as const) {
  test(`HTTP/${httpVersion}: a refused read is sent three times, a write once`, async (t) => {
    const { client, attempts } = countingClient({ url: await refusingUrl(), httpVersion });
    t.after(() => client.close());
    const attemptsOf = async (run: () => Promise<unknown>) => {
      attempts.count = 0;
      const err = await run().then(
        () => assert.fail("the call succeeded"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof DatabaseError, String(err));
      assert.equal(err.code, "unavailable");
      return attempts.count;
    };

    assert.equal(await attemptsOf(() => client.execute("SELECT 1")), 3);
    assert.equal(await attemptsOf(() => client.batch(["SELECT 1", "SHOW TABLES"])), 3);
    assert.equal(
      await attemptsOf(() => client.execute("DELETE FROM t", [], { readOnly: true })),
      3,
    );
    const stream = async () => {
      for await (const _ of client.stream("SELECT 1")) assert.fail("a row from nowhere");
    };
    assert.equal(await attemptsOf(stream), 3);

    assert.equal(await attemptsOf(() => client.execute("INSERT INTO t VALUES (1)")), 1);
    assert.equal(await attemptsOf(() => client.batch(["SELECT 1", "DELETE FROM t"])), 1);
    assert.equal(await attemptsOf(() => client.transaction((tx) => tx.execute("SELECT 1"))), 1);
  });
}

test("readRetries: 0 sends a read once; retries stay within the call's deadline", async (t) => {
  const url = await refusingUrl();
  const once = countingClient({ url, readRetries: 0 });
  const many = countingClient({ url, readRetries: 50 });
  t.after(() => Promise.all([once.client.close(), many.client.close()]));

  await assert.rejects(once.client.execute("SELECT 1"), DatabaseError);
  assert.equal(once.attempts.count, 1);

  // 50 retries would wait ~10 s (500 ms each at most); the deadline stops them.
  const started = performance.now();
  await assert.rejects(many.client.execute("SELECT 1", [], { timeoutMs: 300 }), DatabaseError);
  const ms = performance.now() - started;
  assert.ok(ms < 1500, `${Math.round(ms)} ms`);
  assert.ok(
    many.attempts.count >= 2 && many.attempts.count < 50,
    `${many.attempts.count} attempts`,
  );

  assert.throws(() => createClient({ url, readRetries: -1 }), RangeError);
});

test("a read that reached MySQL and failed there is not resent", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url);
  const { client, attempts } = countingClient({ url: gateway.baseUrl });
  t.after(() => client.close());
  await assert.rejects(client.execute("SELECT * FROM no_such_table"), DatabaseError);
  assert.equal(attempts.count, 1);
  const { rows } = await client.execute("SELECT 7 AS n");
  assert.deepEqual(rows, [{ n: 7 }]);
  assert.equal(attempts.count, 2);
});
