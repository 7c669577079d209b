/**
 * Connections age out: past SQLGATE_MAX_CONNECTION_AGE_MS an HTTP/2
 * connection gets GOAWAY (its calls in flight finish) and an HTTP/1.1 one
 * `Connection: close`; clients reconnect. A fetch (HTTP/1.1) call never
 * fails; an HTTP/2 client that opened a stream as the connection closed may
 * see it refused (REFUSED_STREAM: the gateway did not run it), and nothing
 * else. The first of two GOAWAYs keeps that window to a client that has not
 * read a GOAWAY within a second.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient as createConnectClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createClient } from "../client/src/index.js";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

test("aged connections are replaced: fetch h1 never fails, HTTP/2 calls at most refused unprocessed", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url, {
    env: { SQLGATE_MAX_CONNECTION_AGE_MS: "800", SQLGATE_MAX_CONNECTION_AGE_GRACE_MS: "5000" },
  });
  let connections = 0;
  gateway.app.server.on("connection", () => {
    connections++;
  });

  const sdk = createClient({ url: gateway.baseUrl });
  t.after(() => sdk.close());
  const connectNode = createConnectClient(
    DatabaseService,
    createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion: "2" }),
  );
  const callers = {
    sdk: () => sdk.execute("SELECT SLEEP(0.05) AS s"),
    "connect-node h2": () => connectNode.execute({ sql: "SELECT SLEEP(0.05)" }),
    "fetch h1": async () => {
      const response = await fetch(`${gateway.baseUrl}/sqlgate.v1.DatabaseService/Execute`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ sql: "SELECT SLEEP(0.05)" }),
      });
      if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
      return response.json();
    },
  };
  const failures: string[] = [];
  let calls = 0;
  const until = performance.now() + 3000;
  await Promise.all(
    Object.entries(callers).flatMap(([name, call]) =>
      [1, 2, 3].map(async () => {
        while (performance.now() < until) {
          calls++;
          await call().catch((err: unknown) => failures.push(`${name}: ${String(err)}`));
        }
      }),
    ),
  );
  const refused = failures.filter((f) =>
    /^(sdk|connect-node h2): .*NGHTTP2_REFUSED_STREAM/.test(f),
  );
  t.diagnostic(`${calls} calls; ${refused.length} refused (unprocessed) HTTP/2 streams`);
  assert.deepEqual(
    failures.filter((f) => !refused.includes(f)),
    [],
    `${failures.length} of ${calls} calls failed`,
  );
  // Three clients, each reconnecting about every 0.8 s for 3 s.
  assert.ok(connections >= 6, `${connections} connections for ${calls} calls`);
});
