/**
 * `client.stream` at size: a million rows from MariaDB's Sequence engine
 * arrive in order with the client's heap flat (rows are decoded as they
 * arrive and dropped as the loop moves on), and a consumer that stalls holds
 * back the statement on MySQL instead of filling the client's memory.
 *
 * The gateway runs as a child process, so that this process's heap is the
 * SDK's alone; the heap is sampled after a full garbage collection, so that
 * what is measured is what the SDK keeps, not garbage awaiting collection.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import v8 from "node:v8";
import vm from "node:vm";
import { createClient } from "../client/src/index.js";
import { startGatewayChild } from "./support/gateway-process.js";
import { createTestDatabase, runningStatements, waitUntilGone } from "./support/mysql.js";

const heapBoundBytes = 64 * 1024 * 1024;

// node:test runs files without --expose-gc; this is the documented way in.
v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

/** The heap in use after a full collection. */
function liveHeap(): number {
  gc();
  return process.memoryUsage().heapUsed;
}

let baseUrl: string;
let admin: Awaited<ReturnType<typeof createTestDatabase>>["admin"];
const cleanups: (() => unknown)[] = [];
before(async () => {
  const t = { after: (fn: () => unknown) => cleanups.push(fn) };
  const db = await createTestDatabase(t);
  admin = db.admin;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-stream-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const gateway = await startGatewayChild(t, {
    SQLGATE_MYSQL_URL: db.url,
    SQLGATE_DATA_DIR: dataDir,
    SQLGATE_LOG_LEVEL: "info",
  });
  baseUrl = gateway.baseUrl;
});
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function setup(t: { after(fn: () => unknown): void }, httpVersion: "1.1" | "2") {
  const client = createClient({ url: baseUrl, httpVersion });
  t.after(() => client.close());
  return { client };
}

for (const httpVersion of ["2", "1.1"] as const) {
  test(`HTTP/${httpVersion}: 1,000,000 rows stream in order with the heap flat`, async (t) => {
    const { client } = setup(t, httpVersion);
    // Warm up (connection, code paths), then take the baseline.
    for await (const _ of client.stream("SELECT seq FROM seq_1_to_10000")) {
      // drain
    }
    const baseline = liveHeap();
    let peak = baseline;
    let count = 0;
    let expected = 1n;
    const rows = client.stream<[bigint]>("SELECT seq FROM seq_1_to_1000000", [], { as: "array" });
    for await (const [seq] of rows) {
      // A mismatch is checked cheaply here and reported once below.
      if (seq !== expected) break;
      expected++;
      if (++count % 100_000 === 0) peak = Math.max(peak, liveHeap());
    }
    assert.equal(count, 1_000_000);
    assert.equal(expected, 1_000_001n);
    assert.equal(rows.summary?.rowsAffected, 0);
    const growth = peak - baseline;
    t.diagnostic(`heap growth at its peak: ${(growth / 1024 / 1024).toFixed(1)} MB`);
    assert.ok(growth < heapBoundBytes, `the heap grew by ${growth} bytes`);
  });
}

test("a stalled consumer holds back MySQL, not the client's memory", async (t) => {
  const { client } = setup(t, "2");
  const baseline = liveHeap();
  const rows = client.stream<[bigint, string]>(
    "SELECT seq, CONCAT('stall_marker-', seq) FROM seq_1_to_1000000",
    [],
    { as: "array" },
  );
  let count = 0;
  let sum = 0n;
  let stalled = false;
  for await (const [seq, label] of rows) {
    count++;
    sum += seq;
    assert.equal(label, `stall_marker-${seq}`);
    if (count === 1000 && !stalled) {
      stalled = true;
      // MySQL would produce the whole result (some 25 MB) well within this
      // stall; it is still running because nobody reads: the wait reaches
      // its socket.
      await sleep(2000);
      assert.equal(await runningStatements(admin, "stall_marker"), 1);
      const growth = liveHeap() - baseline;
      assert.ok(growth < heapBoundBytes, `the heap grew by ${growth} bytes while stalled`);
    } else if (count % 50_000 === 0) {
      // Then a slow, steady reader.
      await sleep(20);
    }
  }
  assert.equal(count, 1_000_000);
  assert.equal(sum, (1_000_000n * 1_000_001n) / 2n);
  await waitUntilGone(admin, "stall_marker");
});
