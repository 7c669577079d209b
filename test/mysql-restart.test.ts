/**
 * MySQL going away and coming back: calls fail with `unavailable` and
 * readiness goes red, then the gateway recovers by itself, without a restart.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { startEmbeddedMysql } from "../server/devdb/embedded-mysql.js";
import { databaseClient } from "./support/clients.js";
import { startGateway } from "./support/gateway.js";

test("MySQL down: unavailable and not ready; back up: the gateway recovers", async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-restart-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  let mysql = await startEmbeddedMysql({ dataDir });
  t.after(() => mysql.stop());
  const gateway = await startGateway(t, mysql.url);
  const client = databaseClient(gateway.baseUrl);
  const ready = async () => (await fetch(`${gateway.baseUrl}/readyz`)).status;

  const first = await client.execute({ sql: "SELECT 1" });
  assert.equal(first.rows.length, 1);
  assert.equal(await ready(), 200);

  await mysql.stop();
  await assert.rejects(client.execute({ sql: "SELECT 1" }), (err: unknown) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.Unavailable, err.message);
    return true;
  });
  assert.equal(await ready(), 503);

  mysql = await startEmbeddedMysql({ dataDir });
  const until = Date.now() + 10_000;
  for (;;) {
    try {
      const again = await client.execute({ sql: "SELECT 2 AS n" });
      assert.equal(again.rows[0]?.values[0]?.kind.value, 2n);
      break;
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  assert.equal(await ready(), 200);
});
