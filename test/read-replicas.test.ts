/**
 * Reads on MySQL replicas, against a real MariaDB primary and a GTID replica
 * (server/devdb/replicated-mysql.ts, as scripts/mysql-replication.ts starts
 * them): routing by read_from, read-only sessions on the replica, stale reads
 * without a position and read-your-writes with one, replicas skipped when
 * they lag or go away, read-only transactions on a replica.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createClient as createSdk } from "../client/src/index.js";
import { ReadFrom } from "../gen/sqlgate/v1/database_pb.js";
import { IngestService } from "../gen/sqlgate/v1/ingest_pb.js";
import { type ReplicatedMysql, startReplicatedMysql } from "../server/devdb/replicated-mysql.js";
import { databaseClient, refusal } from "./support/clients.js";
import { startGateway } from "./support/gateway.js";
import { connectDirect, withDatabase } from "./support/mysql.js";

type Context = { after(fn: () => unknown): void };

let servers: ReplicatedMysql;
let dir: string;
before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-replication-"));
  servers = await startReplicatedMysql({ dir });
});
after(async () => {
  await servers.stop();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * A database of its own on the primary (replicated), a gateway over it and
 * the replica, and direct connections to both servers.
 */
async function setup(t: Context, env: Record<string, string> = {}) {
  const name = `t_${randomBytes(5).toString("hex")}`;
  const primary = await connectDirect(servers.primary.url);
  const replica = await connectDirect(servers.replica.url);
  await primary.query(`CREATE DATABASE ${name}`);
  await primary.query(`CREATE TABLE ${name}.notes (id INT PRIMARY KEY, body VARCHAR(20))`);
  t.after(async () => {
    // Replication may be stopped by the test: start it again before dropping.
    await replica.query("START SLAVE").catch(() => {});
    await primary.query(`DROP DATABASE IF EXISTS ${name}`);
    await Promise.all([primary.end(), replica.end()]);
  });
  const gateway = await startGateway(t, withDatabase(servers.primary.url, name), {
    env: {
      SQLGATE_MYSQL_REPLICA_URLS: withDatabase(servers.replica.url, name),
      SQLGATE_REPLICA_CHECK_INTERVAL_MS: "200",
      ...env,
    },
  });
  await gateway.replicas.check();
  const client = databaseClient(gateway.baseUrl);
  // The table has reached the replica before the test starts.
  await waitFor(async () => await hasNotes(replica, name), "the table on the replica");
  return { name, primary, replica, gateway, client };
}

/** Whether the test's table exists on the server behind `conn`. */
async function hasNotes(conn: Awaited<ReturnType<typeof connectDirect>>, database: string) {
  const [rows] = (await conn.query(
    "SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'notes'",
    [database],
  )) as unknown as [{ n: number }[]];
  return Number(rows[0]?.n) === 1;
}

async function waitFor(check: () => Promise<boolean>, what: string, withinMs = 5000) {
  const until = Date.now() + withinMs;
  while (!(await check())) {
    assert.ok(Date.now() < until, `${what} within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The first value of the first row, as a string. */
function firstValue(res: { rows: { values: { kind: { value?: unknown } }[] }[] }): string {
  return String(res.rows[0]?.values[0]?.kind.value);
}

const replicaName = () => `replica ${servers.replica.socketPath}`;

describe("read replicas", () => {
  test("read_from picks the server; the replica refuses writes, even from a privileged account", async (t) => {
    const { name, primary, replica, client } = await setup(t);
    const serverId = async (readFrom: ReadFrom) => {
      let header: string | null = null;
      const res = await client.execute(
        { sql: "SELECT @@server_id", options: { readFrom } },
        { onHeader: (h) => (header = h.get("sqlgate-served-by")) },
      );
      return { id: firstValue(res), servedBy: res.servedBy, header };
    };
    assert.deepEqual(await serverId(ReadFrom.REPLICA), {
      id: "2",
      servedBy: replicaName(),
      header: replicaName(),
    });
    assert.deepEqual(await serverId(ReadFrom.PRIMARY), {
      id: "1",
      servedBy: "primary",
      header: "primary",
    });
    // SQLGATE_READ_FROM defaults to the primary.
    assert.deepEqual(await serverId(ReadFrom.UNSPECIFIED), {
      id: "1",
      servedBy: "primary",
      header: "primary",
    });

    // The gateway connects to the replica as root: MySQL's read_only would
    // let it write; the read-only session does not.
    const write = await refusal(
      client.execute({
        sql: "INSERT INTO notes VALUES (1, 'on the replica')",
        options: { readFrom: ReadFrom.REPLICA },
      }),
    );
    assert.equal(write.code, Code.PermissionDenied);
    assert.match(write.message, /READ ONLY transaction.*1792/);
    const modeChange = await refusal(
      client.execute({
        sql: "SET SESSION TRANSACTION READ WRITE",
        options: { readFrom: ReadFrom.REPLICA },
      }),
    );
    assert.equal(modeChange.code, Code.PermissionDenied);
    const ddl = await refusal(
      client.execute({ sql: "DROP TABLE notes", options: { readFrom: ReadFrom.REPLICA } }),
    );
    assert.equal(ddl.code, Code.PermissionDenied);
    for (const conn of [primary, replica]) {
      const [rows] = (await conn.query(`SELECT COUNT(*) AS n FROM ${name}.notes`)) as unknown as [
        { n: number }[],
      ];
      assert.equal(Number(rows[0]?.n), 0, "nothing written anywhere");
    }
    assert.ok(await hasNotes(replica, name), "the table is still on the replica");

    // Batches and streams are routed alike; an atomic batch is a transaction, on the primary.
    const batch = await client.executeBatch({
      statements: [{ sql: "SELECT @@server_id" }, { sql: "SELECT 2" }],
      options: { readFrom: ReadFrom.REPLICA },
    });
    assert.equal(batch.servedBy, replicaName());
    assert.equal(firstValue(batch.results[0] as never), "2");
    const atomic = await refusal(
      client.executeBatch({
        statements: [{ sql: "SELECT 1" }],
        atomic: true,
        options: { readFrom: ReadFrom.REPLICA },
      }),
    );
    assert.equal(atomic.code, Code.InvalidArgument);
    const messages = [];
    for await (const message of client.streamExecute({
      sql: "SELECT @@server_id",
      options: { readFrom: ReadFrom.REPLICA },
    })) {
      messages.push(message);
    }
    assert.equal(messages[0]?.servedBy, replicaName());
    assert.equal(firstValue(messages[0] as never), "2");
  });

  test("without a position a replica read can be stale; with the write's position it never is", async (t) => {
    const { replica, client } = await setup(t, {
      SQLGATE_REPLICA_WAIT_MS: "300",
      SQLGATE_REPLICA_MAX_LAG_MS: "60000",
    });
    await replica.query("STOP SLAVE SQL_THREAD");
    const insert = await client.execute({ sql: "INSERT INTO notes VALUES (1, 'first')" });
    assert.match(insert.position, /^0-1-\d+$/, "a write carries the primary's GTID");
    assert.equal(insert.servedBy, "primary");
    const count = (minPosition = "") =>
      client.execute({
        sql: "SELECT COUNT(*) FROM notes",
        options: { readFrom: ReadFrom.REPLICA, minPosition },
      });

    const stale = await count();
    assert.equal(stale.servedBy, replicaName());
    assert.equal(firstValue(stale), "0", "the replica has not applied the insert: stale");

    const started = performance.now();
    const fresh = await count(insert.position);
    const waited = performance.now() - started;
    assert.equal(fresh.servedBy, "primary", "the replica did not get there within the wait");
    assert.equal(firstValue(fresh), "1");
    assert.ok(waited >= 250 && waited < 2000, `waited ${Math.round(waited)} ms`);

    await replica.query("START SLAVE SQL_THREAD");
    const caughtUp = await count(insert.position);
    assert.equal(caughtUp.servedBy, replicaName());
    assert.equal(firstValue(caughtUp), "1", "the replica applied the write before the read");

    // A transaction's position is its COMMIT's.
    const { session } = await client.beginTransaction({});
    await client.execute({ session, sql: "INSERT INTO notes VALUES (2, 'second')" });
    const commit = await client.commitTransaction({ session });
    assert.match(commit.position, /^0-1-\d+$/);
    assert.notEqual(commit.position, insert.position);
    const afterCommit = await count(commit.position);
    assert.equal(firstValue(afterCommit), "2");

    // A read names no position; a made-up one is refused.
    assert.equal((await count()).position, "");
    const bad = await refusal(count("not a position"));
    assert.equal(bad.code, Code.InvalidArgument);
  });

  test("a lagging replica is skipped within a second, and used again once it catches up", async (t) => {
    const { replica, gateway, client } = await setup(t, { SQLGATE_REPLICA_MAX_LAG_MS: "400" });
    const readyReplica = async () =>
      (
        (await (await fetch(`${gateway.baseUrl}/readyz`)).json()) as {
          replicas: { usable: boolean; lagMs: number; problem?: string }[];
        }
      ).replicas[0];
    const servedBy = async () =>
      (await client.execute({ sql: "SELECT 1", options: { readFrom: ReadFrom.REPLICA } })).servedBy;
    assert.equal(await servedBy(), replicaName());

    await replica.query("STOP SLAVE SQL_THREAD");
    await client.execute({ sql: "INSERT INTO notes VALUES (1, 'behind')" });
    const stopped = performance.now();
    await waitFor(async () => (await readyReplica())?.usable === false, "marked lagging", 2000);
    const skippedAfter = performance.now() - stopped;
    t.diagnostic(`lagging replica skipped ${Math.round(skippedAfter)} ms after the write`);
    assert.ok(skippedAfter < 1400, `${Math.round(skippedAfter)} ms`);
    assert.match((await readyReplica())?.problem ?? "", /lagging/);
    assert.equal(await servedBy(), "primary");
    // Still ready: the primary serves.
    assert.equal((await fetch(`${gateway.baseUrl}/readyz`)).status, 200);
    const metrics = await (await fetch(`${gateway.baseUrl}/metrics`)).text();
    assert.match(metrics, /^sqlgate_replica_usable\{replica="[^"]+"\} 0$/m);

    await replica.query("START SLAVE SQL_THREAD");
    await waitFor(async () => (await readyReplica())?.usable === true, "usable again", 2000);
    assert.equal(await servedBy(), replicaName());
  });

  test("read-only transactions may run on a replica; others run on the primary", async (t) => {
    const { client } = await setup(t);
    const onReplica = await client.beginTransaction({
      readOnly: true,
      readFrom: ReadFrom.REPLICA,
    });
    assert.equal(onReplica.servedBy, replicaName());
    const id = await client.execute({ session: onReplica.session, sql: "SELECT @@server_id" });
    assert.equal(firstValue(id), "2");
    const write = await refusal(
      client.execute({ session: onReplica.session, sql: "INSERT INTO notes VALUES (1, 'x')" }),
    );
    assert.equal(write.code, Code.PermissionDenied);
    await client.rollbackTransaction({ session: onReplica.session });

    const refused = await refusal(client.beginTransaction({ readFrom: ReadFrom.REPLICA }));
    assert.equal(refused.code, Code.InvalidArgument);
    const { session, servedBy } = await client.beginTransaction({});
    assert.equal(servedBy, "primary");
    const routed = await refusal(
      client.execute({ session, sql: "SELECT 1", options: { readFrom: ReadFrom.REPLICA } }),
    );
    assert.equal(routed.code, Code.InvalidArgument);
    await client.rollbackTransaction({ session });
  });

  test("SQLGATE_READ_FROM=replica sends reads to the replica and writes to the primary", async (t) => {
    const { client, gateway } = await setup(t, { SQLGATE_READ_FROM: "replica" });
    const read = await client.execute({ sql: "SELECT @@server_id" });
    assert.equal(read.servedBy, replicaName());
    const write = await client.execute({ sql: "INSERT INTO notes VALUES (1, 'x')" });
    assert.equal(write.servedBy, "primary");
    const own = await client.execute({
      sql: "SELECT body FROM notes WHERE id = 1",
      options: { minPosition: write.position },
    });
    assert.equal(firstValue(own), "x");
    const primaryRead = await client.execute({
      sql: "SELECT @@server_id",
      options: { readFrom: ReadFrom.PRIMARY },
    });
    assert.equal(firstValue(primaryRead), "1");

    // A COMMITTED ingest write carries its batch's position too.
    const ingest = createClient(
      IngestService,
      createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion: "2" }),
    );
    const written = await ingest.write({
      table: "notes",
      columns: ["id", "body"],
      rows: [
        {
          values: [
            { kind: { case: "int64Value", value: 2n } },
            { kind: { case: "stringValue", value: "ingested" } },
          ],
        },
      ],
    });
    assert.match(written.position, /^0-1-\d+$/);
    const ingested = await client.execute({
      sql: "SELECT body FROM notes WHERE id = 2",
      options: { minPosition: written.position },
    });
    assert.equal(firstValue(ingested), "ingested");
    assert.equal(ingested.servedBy, replicaName());
  });

  test("the SDK reads its own writes through the replica, with no position handling by the caller", async (t) => {
    const { replica, gateway } = await setup(t, { SQLGATE_REPLICA_WAIT_MS: "300" });
    const sdk = createSdk({ url: gateway.baseUrl });
    t.after(() => sdk.close());
    const own = sdk.withConsistency("read-your-writes");
    const eventual = sdk.withConsistency("eventual");
    const body = async (client: typeof sdk, id: number) => {
      const res = await client.execute<{ body: string }>("SELECT body FROM notes WHERE id = ?", [
        id,
      ]);
      return { body: res.rows[0]?.body, servedBy: res.servedBy };
    };

    await replica.query("STOP SLAVE SQL_THREAD");
    await own.execute("INSERT INTO notes VALUES (?, ?)", [1, "mine"]);
    assert.deepEqual(await body(eventual, 1), { body: undefined, servedBy: replicaName() });
    assert.deepEqual(await body(own, 1), { body: "mine", servedBy: "primary" });
    await sdk.transaction((tx) =>
      tx.execute("INSERT INTO notes VALUES (?, ?)", [2, "in a transaction"]),
    );
    assert.deepEqual(await body(own, 2), { body: "in a transaction", servedBy: "primary" });
    await sdk.ingest.write("notes", ["id", "body"], [[3, "ingested"]]);
    assert.deepEqual(await body(own, 3), { body: "ingested", servedBy: "primary" });

    await replica.query("START SLAVE SQL_THREAD");
    assert.deepEqual(await body(own, 3), { body: "ingested", servedBy: replicaName() });
    assert.deepEqual(await body(sdk.withConsistency("strong"), 1), {
      body: "mine",
      servedBy: "primary",
    });
    // Without withConsistency, SQLGATE_READ_FROM (here the primary) decides.
    assert.equal((await body(sdk, 1)).servedBy, "primary");
    assert.throws(() => sdk.withConsistency("sometimes" as never), TypeError);
  });

  test("a replica that shuts down is skipped within a second; readiness stays green", async (t) => {
    const { gateway, client } = await setup(t);
    assert.equal(
      (await client.execute({ sql: "SELECT 1", options: { readFrom: ReadFrom.REPLICA } })).servedBy,
      replicaName(),
    );
    await servers.replica.stop();
    const stopped = performance.now();
    // Calls right away may still pick it: they fall back to the primary.
    for (let i = 0; i < 5; i++) {
      const res = await client.execute({
        sql: "SELECT @@server_id",
        options: { readFrom: ReadFrom.REPLICA },
      });
      assert.equal(firstValue(res), "1");
      assert.equal(res.servedBy, "primary");
    }
    await waitFor(
      async () => gateway.replicas.status()[0]?.up === false,
      "the replica marked down",
      1500,
    );
    t.diagnostic(`marked down ${Math.round(performance.now() - stopped)} ms after it stopped`);
    const ready = await fetch(`${gateway.baseUrl}/readyz`);
    assert.equal(ready.status, 200);
    const body = (await ready.json()) as { replicas: { up: boolean }[] };
    assert.equal(body.replicas[0]?.up, false);
  });
});
