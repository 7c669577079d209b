/**
 * The ingest writer's backpressure against a real gateway and MariaDB: while
 * the table is held by `LOCK TABLES ... WRITE`, no chunk can commit, so
 * `await writer.write(row)` stops resolving once `maxPendingRows` rows wait
 * for their acknowledgement; when the lock goes, every write resolves and
 * every row lands exactly once.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "../client/src/index.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

/** The first row of `sql`'s result, numbers as numbers and the rest as text. */
async function queryOne(admin: { query(sql: string): Promise<unknown> }, sql: string) {
  const [rows] = (await admin.query(sql)) as [Record<string, unknown>[]];
  return Object.fromEntries(
    Object.entries(rows[0] ?? {}).map(([k, v]) => [k, typeof v === "string" ? v : Number(v)]),
  );
}

const maxPendingRows = 2000;
const maxChunkRows = 500;
const totalRows = 6000;

test("write() stops resolving at maxPendingRows while the table is locked", async (t) => {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL)");
  const gateway = await startGateway(t, db.url);
  const client = createClient({ url: gateway.baseUrl });
  t.after(() => client.close());
  const writer = client.ingest.writer("t", ["id", "v"], { maxPendingRows, maxChunkRows });

  let resolved = 0;
  const writes: Promise<void>[] = [];
  await db.admin.query("LOCK TABLES t WRITE");
  try {
    for (let id = 1; id <= totalRows; id++) {
      writes.push(writer.write([id, `row ${id}`]).then(() => void resolved++));
    }
    await sleep(1000);
    assert.ok(resolved >= maxPendingRows, `only ${resolved} writes resolved`);
    assert.ok(
      resolved <= maxPendingRows + maxChunkRows,
      `${resolved} writes resolved while nothing could commit`,
    );
    assert.equal((await queryOne(db.admin, "SELECT COUNT(*) AS n FROM t")).n, 0);
  } finally {
    // Before the hooks run: the database is dropped, and the gateway closed,
    // only once nothing waits on the lock.
    await db.admin.query("UNLOCK TABLES");
  }

  await Promise.all(writes);
  assert.equal(resolved, totalRows);
  const summary = await writer.close();
  assert.equal(summary.rowsAcknowledged, totalRows);
  const digest = await queryOne(
    db.admin,
    "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids, CAST(SUM(id) AS CHAR) AS sum FROM t",
  );
  assert.deepEqual(digest, {
    n: totalRows,
    ids: totalRows,
    sum: String((totalRows * (totalRows + 1)) / 2),
  });
});
