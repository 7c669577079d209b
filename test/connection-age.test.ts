/**
 * Connections age out: past SQLGATE_MAX_CONNECTION_AGE_MS an HTTP/2
 * connection gets GOAWAY (its calls in flight finish) and an HTTP/1.1 one
 * `Connection: close`; the SDK and fetch reconnect without a failed call.
 * A plain connect-node client may see a stream it opened as the connection
 * closed refused (REFUSED_STREAM: unprocessed, safe to resend, which the SDK
 * does); nothing else.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient as createConnectClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createClient } from "../client/src/index.js";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

test("aged connections are replaced without a failed call (SDK, fetch h1; connect-node h2 at most refused)", async (t) => {
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
  const refused = failures.filter((f) => /^connect-node h2: .*NGHTTP2_REFUSED_STREAM/.test(f));
  t.diagnostic(`${calls} calls; connect-node saw ${refused.length} refused (unprocessed) streams`);
  assert.deepEqual(
    failures.filter((f) => !refused.includes(f)),
    [],
    `${failures.length} of ${calls} calls failed`,
  );
  // Three clients, each reconnecting about every 0.8 s for 3 s.
  assert.ok(connections >= 6, `${connections} connections for ${calls} calls`);
});
