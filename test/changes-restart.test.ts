/**
 * A change stream through the gateway while its MariaDB restarts under a
 * steady stream of writes: the subscriber's stream stays up, and every
 * committed row arrives once, in commit order.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import mysql from "mysql2/promise";
import { ChangeService, type Transaction } from "../gen/sqlgate/v1/changes_pb.js";
import { binlogServerArgs } from "../server/changes/binlog-settings.js";
import { startEmbeddedMysql } from "../server/devdb/embedded-mysql.js";
import { startGateway } from "./support/gateway.js";
import { restartEmbedded } from "./support/mysql.js";

test("a MariaDB restart mid-stream loses and duplicates nothing", async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-cdc-restart-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const database = "cdc";
  let server = await startEmbeddedMysql({ dataDir, database, serverArgs: binlogServerArgs });
  t.after(() => server.stop());
  const gateway = await startGateway(t, server.url);
  const pool = mysql.createPool({ socketPath: server.socketPath, user: "root", database });
  pool.on("connection", (conn) => conn.on("error", () => {}));
  await pool.query("CREATE TABLE ticks (id INT PRIMARY KEY)");

  const stop = new AbortController();
  const received: Transaction[] = [];
  let streamError: unknown;
  const client = createClient(
    ChangeService,
    createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion: "2" }),
  );
  const reading = (async () => {
    try {
      for await (const message of client.subscribe(
        { tables: ["ticks"], heartbeatMs: 200 },
        { signal: stop.signal },
      )) {
        if (message.event.case === "transaction") received.push(message.event.value);
      }
    } catch (err) {
      if (!stop.signal.aborted) streamError = err;
    }
  })();
  await delay(500);

  // One row per transaction; writes refused while the server is away are not committed.
  let writing = true;
  let attempted = 0;
  const writer = (async () => {
    while (writing) {
      attempted += 1;
      await pool.query("INSERT INTO ticks VALUES (?)", [attempted]).catch(() => delay(50));
    }
  })();
  const until = async (what: string, done: () => boolean, withinMs = 20_000) => {
    const deadline = Date.now() + withinMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await delay(20);
    }
  };
  await until("writes before the restart", () => received.length >= 30);
  server = await restartEmbedded(server, { dataDir, database, serverArgs: binlogServerArgs });
  const restartedAt = attempted;
  const idOf = (tx: Transaction) => tx.changes[0]?.after?.values[0]?.kind.value;
  await until("writes after the restart", () =>
    received.some((tx) => Number(idOf(tx)) > restartedAt + 30),
  );
  writing = false;
  await writer;
  const [rows] = (await pool.query({
    sql: "SELECT id FROM ticks ORDER BY id",
    rowsAsArray: true,
  })) as unknown as [[number][]];
  await until("the last row", () => received.length >= rows.length, 10_000);
  await pool.end();
  stop.abort();
  await reading;

  assert.equal(streamError, undefined, "the stream stayed up");
  assert.deepEqual(
    received.map((tx) => Number(idOf(tx))),
    rows.map((r) => r[0]),
  );
  assert.equal(new Set(received.map((tx) => tx.position)).size, received.length);
});
