/**
 * `options.readOnly`: MySQL refuses every write, including statements that
 * commit implicitly (TRUNCATE, DROP), through Execute, ExecuteBatch and
 * StreamExecute; the next caller gets a writable session again.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { databaseClient } from "./support/clients.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

const refused = (err: unknown) => {
  assert.ok(err instanceof ConnectError, String(err));
  assert.equal(err.code, Code.PermissionDenied, err.message);
  return true;
};

test("read-only calls cannot write, truncate or drop", async (t) => {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE items (id INT PRIMARY KEY)");
  await db.admin.query("INSERT INTO items VALUES (1), (2), (3)");
  const gateway = await startGateway(t, db.url, { env: { SQLGATE_POOL_SIZE: "1" } });
  const client = databaseClient(gateway.baseUrl);
  const options = { readOnly: true };
  for (const sql of ["INSERT INTO items VALUES (4)", "TRUNCATE TABLE items", "DROP TABLE items"]) {
    await assert.rejects(client.execute({ sql, options }), refused, sql);
  }
  await assert.rejects(
    client.executeBatch({ statements: [{ sql: "DELETE FROM items" }], options }),
    refused,
  );
  await assert.rejects(async () => {
    for await (const _ of client.streamExecute({ sql: "DELETE FROM items", options })) {
      // a refused DELETE sends no rows
    }
  }, refused);
  const reads = await client.execute({ sql: "SELECT COUNT(*) FROM items", options });
  assert.equal(reads.rows[0]?.values[0]?.kind.value, 3n);
  // The same (only) pooled connection is writable again for the next caller.
  await client.execute({ sql: "INSERT INTO items VALUES (4)" });
  const [rows] = await db.admin.query("SELECT COUNT(*) AS n FROM items");
  assert.equal(Number((rows as { n: number }[])[0]?.n), 4);
});
