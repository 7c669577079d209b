/**
 * Sessions reach their owner from any replica: two gateways sharing a token
 * secret and listing each other in SQLGATE_PEERS, one MariaDB. A token used
 * on the other replica runs on the owner's connection, streams, deadlines
 * and commits included; forged tokens and owners outside the peers never
 * cause an outbound connection; a lost owner is said plainly.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { Code } from "@connectrpc/connect";
import { createTokenCodec } from "../server/sessions/session-token.js";
import { databaseClient, refusal } from "./support/clients.js";
import { startGateway, type TestGateway } from "./support/gateway.js";
import { createTestDatabase, waitUntilGone } from "./support/mysql.js";
import { freePorts } from "./support/replicas.js";

const secret = "a-shared-token-secret-of-32-chars-or-more";

/** A TCP listener that counts the connections made to it. */
async function countingListener(t: { after(fn: () => unknown): void }) {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const { port } = server.address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${port}`, connections: () => connections };
}

async function twoReplicas(
  t: Parameters<typeof createTestDatabase>[0],
  extraPeers: string[] = [],
  peersByName = false,
) {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE items (id INT PRIMARY KEY)");
  const ports = await freePorts(2);
  const urls = ports.map((port) => `http://127.0.0.1:${port}`);
  // By name: as a headless Service gives, a DNS name whose address is the replica's.
  const listed = peersByName ? ports.map((port) => `localhost:${port}`) : urls;
  const peers = [...listed, ...extraPeers].join(",");
  const replicas: TestGateway[] = [];
  for (const [i, port] of ports.entries()) {
    replicas.push(
      await startGateway(t, db.url, {
        port,
        env: {
          SQLGATE_TOKEN_SECRET: secret,
          SQLGATE_NODE_URL: urls[i] ?? "",
          SQLGATE_PEERS: peers,
        },
      }),
    );
  }
  return { db, replicas, urls };
}

test("a token used on another replica runs on its owner's connection, to the commit", async (t) => {
  const { db, replicas, urls } = await twoReplicas(t);
  const [a, b] = replicas.map((r) => databaseClient(r.baseUrl)) as [
    ReturnType<typeof databaseClient>,
    ReturnType<typeof databaseClient>,
  ];
  const { session } = await a.beginTransaction({});
  const onA = await a.execute({ session, sql: "SELECT CONNECTION_ID()" });
  let node: string | null = null;
  const onB = await b.execute(
    { session, sql: "SELECT CONNECTION_ID()" },
    { onHeader: (h) => (node = h.get("sqlgate-node")) },
  );
  assert.equal(onB.rows[0]?.values[0]?.kind.value, onA.rows[0]?.values[0]?.kind.value);
  assert.equal(node, urls[0], "the owner answered");
  await b.execute({ session, sql: "INSERT INTO items VALUES (1), (2)" });
  const [outside] = (await db.admin.query("SELECT COUNT(*) AS n FROM items")) as unknown as [
    { n: number }[],
  ];
  assert.equal(outside[0]?.n, 0, "not visible before the commit");
  const streamed: unknown[] = [];
  for await (const chunk of b.streamExecute({ session, sql: "SELECT id FROM items ORDER BY id" })) {
    for (const row of chunk.rows) streamed.push(row.values[0]?.kind.value);
  }
  assert.deepEqual(streamed, [1n, 2n]);
  await b.commitTransaction({ session });
  const [after] = (await db.admin.query("SELECT COUNT(*) AS n FROM items")) as unknown as [
    { n: number }[],
  ];
  assert.equal(after[0]?.n, 2);
});

test("a forwarded deadline ends the statement on the owner's MySQL", async (t) => {
  const { db, replicas } = await twoReplicas(t);
  const [a, b] = replicas.map((r) => databaseClient(r.baseUrl));
  const { session } = (await a?.beginTransaction({})) ?? { session: "" };
  const started = performance.now();
  const err = await refusal(
    b?.execute({ session, sql: "SELECT SLEEP(30) AS fwd_deadline" }, { timeoutMs: 500 }) ??
      Promise.resolve(),
  );
  assert.equal(err.code, Code.DeadlineExceeded);
  assert.ok(performance.now() - started < 2000, "well under the statement's 30 s");
  await waitUntilGone(db.admin, "fwd_deadline", 5000);
});

test("forged tokens and owners outside SQLGATE_PEERS cause no outbound connection", async (t) => {
  const outsider = await countingListener(t);
  const listed = await countingListener(t);
  const { replicas } = await twoReplicas(t, [listed.url]);
  const b = databaseClient(replicas[1]?.baseUrl ?? "");
  const genuine = createTokenCodec([Buffer.from(secret)]);
  const forger = createTokenCodec([Buffer.from("another-secret-of-at-least-32-characters")]);

  const notPeer = await refusal(
    b.execute({ session: genuine.sign({ sessionId: "x", node: outsider.url }), sql: "SELECT 1" }),
  );
  assert.equal(notPeer.code, Code.FailedPrecondition);
  assert.match(notPeer.message, /not one of SQLGATE_PEERS/);
  const forged = await refusal(
    b.execute({ session: forger.sign({ sessionId: "x", node: listed.url }), sql: "SELECT 1" }),
  );
  assert.equal(forged.code, Code.InvalidArgument);
  // A genuine signature over other claims.
  const [, payload = "", mac] = genuine.sign({ sessionId: "x", node: listed.url }).split(".");
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as object;
  const otherClaims = Buffer.from(JSON.stringify({ ...claims, s: "y" })).toString("base64url");
  const tampered = `sg1.${otherClaims}.${mac}`;
  assert.equal(
    (await refusal(b.execute({ session: tampered, sql: "SELECT 1" }))).code,
    Code.InvalidArgument,
  );
  assert.equal(outsider.connections(), 0);
  assert.equal(listed.connections(), 0);
});

test("an owner that is gone: unavailable at once, saying the transaction is lost", async (t) => {
  const { replicas } = await twoReplicas(t);
  const [ownerGateway, other] = replicas as [TestGateway, TestGateway];
  const { session } = await databaseClient(ownerGateway.baseUrl).beginTransaction({});
  await ownerGateway.close();
  const started = performance.now();
  const err = await refusal(databaseClient(other.baseUrl).execute({ session, sql: "SELECT 1" }));
  assert.equal(err.code, Code.Unavailable);
  assert.match(err.message, /cannot be reached; its transaction is lost/);
  assert.ok(performance.now() - started < 2000);
});

test("SQLGATE_PEERS given as DNS names and ports: the owner is found by its address", async (t) => {
  const { replicas } = await twoReplicas(t, [], true);
  const [a, b] = replicas.map((r) => databaseClient(r.baseUrl));
  const { session } = (await a?.beginTransaction({})) ?? { session: "" };
  const onA = await a?.execute({ session, sql: "SELECT CONNECTION_ID()" });
  const onB = await b?.execute({ session, sql: "SELECT CONNECTION_ID()" });
  assert.equal(onB?.rows[0]?.values[0]?.kind.value, onA?.rows[0]?.values[0]?.kind.value);
  await b?.rollbackTransaction({ session });
});

test("PlanetScale sessions holding a connection are forwarded too", async (t) => {
  const { replicas } = await twoReplicas(t);
  const [a, b] = replicas as [TestGateway, TestGateway];
  const execute = async (gateway: TestGateway, query: string, session?: unknown) => {
    const response = await fetch(`${gateway.baseUrl}/psdb.v1alpha1.Database/Execute`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query, session }),
    });
    return (await response.json()) as {
      session: unknown;
      result?: { rows: { values: string }[] };
      error?: unknown;
    };
  };
  const begun = await execute(a, "SET @where = 'owner'");
  const viaB = await execute(b, "SELECT @where", begun.session);
  assert.equal(viaB.error, undefined);
  assert.equal(Buffer.from(viaB.result?.rows[0]?.values ?? "", "base64").toString(), "owner");
});
