/**
 * Deadlines and disconnects stop the statement on MySQL (KILL QUERY), and the
 * pooled connection comes back healthy.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { databaseClient } from "./support/clients.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase, waitUntilGone } from "./support/mysql.js";

test("a deadline kills the statement on MySQL and answers deadline_exceeded", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url, { env: { SQLGATE_POOL_SIZE: "1" } });
  const client = databaseClient(gateway.baseUrl);
  const started = Date.now();
  await assert.rejects(
    client.execute({ sql: "SELECT SLEEP(30) AS deadline_marker" }, { timeoutMs: 200 }),
    (err) => {
      assert.ok(err instanceof ConnectError);
      assert.equal(err.code, Code.DeadlineExceeded);
      return true;
    },
  );
  assert.ok(Date.now() - started < 1000, `answered after ${Date.now() - started} ms`);
  assert.ok((await waitUntilGone(db.admin, "deadline_marker")) < 1000);
  // The only pooled connection is healthy: the next call runs at once.
  const next = await client.execute({ sql: "SELECT 7 AS n" }, { timeoutMs: 1000 });
  assert.equal(next.rows[0]?.values[0]?.kind.value, 7n);
});

test("options.timeoutMs bounds the statement the same way", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url);
  const client = databaseClient(gateway.baseUrl, "1.1");
  await assert.rejects(
    client.execute({ sql: "SELECT SLEEP(30) AS option_marker", options: { timeoutMs: 200 } }),
    (err) => err instanceof ConnectError && err.code === Code.DeadlineExceeded,
  );
  assert.ok((await waitUntilGone(db.admin, "option_marker")) < 1000);
});

test("a client that goes away gets its statement killed", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url, { env: { SQLGATE_POOL_SIZE: "1" } });
  const client = databaseClient(gateway.baseUrl);
  const abort = new AbortController();
  const call = client.execute(
    { sql: "SELECT SLEEP(30) AS abort_marker" },
    { signal: abort.signal },
  );
  await new Promise((r) => setTimeout(r, 300));
  abort.abort();
  await assert.rejects(call, (err) => err instanceof ConnectError && err.code === Code.Canceled);
  assert.ok((await waitUntilGone(db.admin, "abort_marker")) < 1000);
  const next = await client.execute({ sql: "SELECT 8 AS n" }, { timeoutMs: 1000 });
  assert.equal(next.rows[0]?.values[0]?.kind.value, 8n);
});
