/**
 * Graceful shutdown under load, on the real process: SIGTERM turns readiness
 * red at once, the calls already accepted finish (over HTTP/1.1 and HTTP/2),
 * every acknowledged write is in MySQL, and the process exits 0.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { startGatewayChild } from "./support/gateway-process.js";
import { createTestDatabase } from "./support/mysql.js";

test("SIGTERM under load: accepted calls finish, acknowledged writes stay, exit 0", async (t) => {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE writes (caller INT, n INT, PRIMARY KEY (caller, n))");
  const gateway = await startGatewayChild(t, {
    SQLGATE_MYSQL_URL: db.url,
    SQLGATE_SHUTDOWN_DELAY_MS: "400",
    SQLGATE_SHUTDOWN_GRACE_MS: "10000",
  });
  const clients = (["1.1", "2"] as const).map((httpVersion) =>
    createClient(
      DatabaseService,
      createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion }),
    ),
  );

  let sigtermAt = Number.POSITIVE_INFINITY;
  const failedBefore: string[] = [];
  const acknowledged: [number, number][] = [];
  const caller = async (id: number) => {
    const client = clients[id % 2];
    // New calls stop a while after SIGTERM; by then the listener is closed.
    for (let n = 0; performance.now() < sigtermAt + 1000; n++) {
      const started = performance.now();
      try {
        await client?.execute({
          sql: "INSERT INTO writes (caller, n) SELECT ?, ? FROM DUAL WHERE SLEEP(0.15) = 0",
          typedParams: [
            { kind: { case: "int64Value", value: BigInt(id) } },
            { kind: { case: "int64Value", value: BigInt(n) } },
          ],
        });
        acknowledged.push([id, n]);
      } catch (err) {
        if (started < sigtermAt) failedBefore.push(`${id}/${n}: ${String(err)}`);
        else await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  const load = Promise.all(Array.from({ length: 16 }, (_, id) => caller(id)));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  sigtermAt = performance.now();
  gateway.child.kill("SIGTERM");
  const readiness = await fetch(`${gateway.baseUrl}/readyz`);
  assert.equal(readiness.status, 503, "readiness goes red first");
  await load;
  assert.equal(await gateway.exited, 0);

  assert.deepEqual(failedBefore, [], "calls accepted before SIGTERM all finished");
  assert.ok(acknowledged.length >= 16, `${acknowledged.length} writes acknowledged`);
  const [rows] = (await db.admin.query("SELECT caller, n FROM writes")) as unknown as [
    { caller: number; n: number }[],
  ];
  const stored = new Set(rows.map((r) => `${r.caller}/${r.n}`));
  for (const [id, n] of acknowledged) assert.ok(stored.has(`${id}/${n}`), `write ${id}/${n} lost`);
});
