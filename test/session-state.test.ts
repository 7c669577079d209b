/**
 * A pooled connection never carries one caller's session state to the next:
 * variables, user variables, temporary tables, table and named locks, an open
 * transaction and a changed database are all gone for the next call.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { databaseClient } from "./support/clients.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

async function setup(t: Parameters<typeof createTestDatabase>[0]) {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE items (id INT PRIMARY KEY)");
  // One pooled connection: every call runs on the same one.
  const gateway = await startGateway(t, db.url, { env: { SQLGATE_POOL_SIZE: "1" } });
  const client = databaseClient(gateway.baseUrl);
  const value = async (sql: string) =>
    (await client.execute({ sql })).rows[0]?.values[0]?.kind.value;
  return { db, client, value };
}

test("plain statements keep the pooled connection as it is", async (t) => {
  const { value } = await setup(t);
  const first = await value("SELECT CONNECTION_ID()");
  assert.equal(await value("SELECT CONNECTION_ID()"), first);
});

test("variables, user variables and temporary tables do not reach the next caller", async (t) => {
  const { client, value } = await setup(t);
  const connection = await value("SELECT CONNECTION_ID()");
  await client.execute({ sql: "SET @secret = 'caller A'" });
  const secret = await client.execute({ sql: "SELECT @secret" });
  assert.equal(secret.rows[0]?.values[0]?.kind.case, "nullValue");
  await client.execute({ sql: "SET time_zone = '+09:00'" });
  assert.notEqual(await value("SELECT @@session.time_zone"), "+09:00");
  await client.execute({ sql: "CREATE TEMPORARY TABLE scratch (id INT)" });
  await assert.rejects(
    client.execute({ sql: "SELECT * FROM scratch" }),
    (err) => err instanceof ConnectError && err.code === Code.NotFound,
  );
  // Reset, not reconnected: the connection itself is kept.
  assert.equal(await value("SELECT CONNECTION_ID()"), connection);
});

test("table locks, named locks and an open transaction are released", async (t) => {
  const { db, client, value } = await setup(t);
  await client.execute({ sql: "LOCK TABLES items WRITE" });
  await client.execute({ sql: "SELECT GET_LOCK('sqlgate_test_lock', 0)" });
  await db.admin.query("SET SESSION lock_wait_timeout = 2");
  await db.admin.query("INSERT INTO items VALUES (1)");
  const [free] = await db.admin.query("SELECT IS_FREE_LOCK('sqlgate_test_lock') AS free");
  assert.equal(Number((free as { free: number }[])[0]?.free), 1);

  await client.execute({ sql: "START TRANSACTION" });
  await client.execute({ sql: "INSERT INTO items VALUES (2)" });
  // The INSERT ran in autocommit mode: it is visible at once.
  const [rows] = await db.admin.query("SELECT COUNT(*) AS n FROM items");
  assert.equal(Number((rows as { n: number }[])[0]?.n), 2);
  assert.equal(await value("SELECT @@in_transaction"), 0n);
});

test("USE does not move the next caller to another database", async (t) => {
  const { db, client, value } = await setup(t);
  const connection = await value("SELECT CONNECTION_ID()");
  await client.execute({ sql: "USE information_schema" });
  assert.equal(await value("SELECT DATABASE()"), db.name);
  assert.notEqual(await value("SELECT CONNECTION_ID()"), connection);
});
