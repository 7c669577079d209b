/**
 * MySQL going away and coming back: calls fail with `unavailable`, readiness
 * and gRPC health go red, then the gateway recovers by itself, without a
 * restart, and both go green again.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../gen/grpc/health/v1/health_pb.js";
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
  const health = createClient(
    Health,
    createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion: "2" }),
  );
  const serving = async () => (await health.check({})).status;

  const first = await client.execute({ sql: "SELECT 1" });
  assert.equal(first.rows.length, 1);
  assert.equal(await ready(), 200);
  assert.equal(await serving(), ServingStatus.SERVING);

  await mysql.stop();
  await assert.rejects(client.execute({ sql: "SELECT 1" }), (err: unknown) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.Unavailable, err.message);
    return true;
  });
  assert.equal(await ready(), 503);
  assert.equal(await serving(), ServingStatus.NOT_SERVING);

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
  assert.equal(await serving(), ServingStatus.SERVING);
});
