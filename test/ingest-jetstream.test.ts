/**
 * BUFFERED ingest on the shared JetStream log, with real parts: nats-server
 * (one, or a cluster of three with stream replicas 3), MariaDB, and gateway
 * processes killed and restarted as in production. Every batch a caller got
 * an acknowledgement for must land in MySQL exactly once, whatever dies.
 *
 * The table has no unique key on the written ids, so a batch applied twice
 * would show as a repeated id rather than be refused by MySQL.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Durability, IngestService, OnConflict } from "../gen/sqlgate/v1/ingest_pb.js";
import { startEmbeddedMysql } from "../server/devdb/embedded-mysql.js";
import { type GatewayChild, startGatewayChild } from "./support/gateway-process.js";
import { connectDirect, createTestDatabase } from "./support/mysql.js";
import { natsBacklog, natsStreamInfo, startNats, type TestNats } from "./support/nats.js";

type Context = { after(fn: () => unknown): void; diagnostic(message: string): void };
type Admin = Awaited<ReturnType<typeof connectDirect>>;

const stream = "SQLGATE_INGEST";
const consumer = "sqlgate-flusher";

/** Gateway settings for the JetStream log: short ack wait, so a dead replica's batches return soon. */
function jetStreamEnv(nats: TestNats, mysqlUrl: string, extra: Record<string, string> = {}) {
  return {
    SQLGATE_MYSQL_URL: mysqlUrl,
    SQLGATE_INGEST_LOG: nats.serversOption,
    SQLGATE_NATS_REPLICAS: String(nats.nodes.length),
    SQLGATE_NATS_ACK_WAIT_MS: "3000",
    ...extra,
  };
}

const table =
  "CREATE TABLE tele (row_id BIGINT AUTO_INCREMENT PRIMARY KEY, id INT NOT NULL, v INT NOT NULL)";

/** One BUFFERED Write of rows `ids` with idempotency key `key`, through `baseUrl`. */
function writeBatch(baseUrl: string, ids: readonly number[], key: string, timeoutMs = 3000) {
  const ingest = createClient(IngestService, createConnectTransport({ baseUrl, httpVersion: "2" }));
  return ingest.write(
    {
      table: "tele",
      columns: ["id", "v"],
      rows: ids.map((id) => ({
        values: [
          { kind: { case: "int64Value", value: BigInt(id) } },
          { kind: { case: "int64Value", value: BigInt(id % 1000) } },
        ],
      })),
      idempotencyKey: key,
      durability: Durability.BUFFERED,
      onConflict: OnConflict.ERROR,
    },
    { timeoutMs },
  );
}

/**
 * Writers sending 10-row batches round robin over `gateways` until stopped.
 * A failed batch is sent again with the same key (to the next gateway) until
 * it is acknowledged: the ids of acknowledged batches must all land, once.
 */
function startWriters(gateways: () => readonly string[], writers = 4) {
  let running = true;
  let stoppedAt = Number.POSITIVE_INFINITY;
  const acknowledged: number[] = [];
  let failures = 0;
  let turn = 0;
  const loops = Array.from({ length: writers }, async (_, w) => {
    for (let n = 0; running; n++) {
      const ids = Array.from({ length: 10 }, (_, i) => (w * 100_000 + n) * 10 + i);
      for (;;) {
        const urls = gateways();
        const url = urls[turn++ % urls.length] as string;
        try {
          await writeBatch(url, ids, `w${w}-${n}`);
          acknowledged.push(...ids);
          break;
        } catch (err) {
          failures++;
          // Keep retrying this batch even after stop (it may have been
          // stored), but not forever.
          if (Date.now() - stoppedAt > 60_000) {
            throw new Error(`batch w${w}-${n} never acknowledged: ${String(err)}`);
          }
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  });
  return {
    acknowledged,
    failures: () => failures,
    async stop() {
      running = false;
      stoppedAt = Date.now();
      await Promise.all(loops);
    },
  };
}

/** Waits until MySQL holds every id of `acknowledged`, then checks that none is there twice. */
async function assertExactlyOnce(admin: Admin, acknowledged: readonly number[], withinMs = 60_000) {
  const until = Date.now() + withinMs;
  let rows = 0;
  let distinct = 0;
  while (Date.now() < until) {
    const [[counts]] = (await admin.query(
      "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d FROM tele",
    )) as unknown as [[{ n: number; d: number }]];
    rows = Number(counts.n);
    distinct = Number(counts.d);
    if (distinct >= acknowledged.length) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const [written] = (await admin.query("SELECT id FROM tele")) as unknown as [{ id: number }[]];
  const present = new Set(written.map((row) => Number(row.id)));
  const missing = acknowledged.filter((id) => !present.has(id));
  assert.deepEqual(
    missing.slice(0, 10),
    [],
    `every acknowledged row is in MySQL (${missing.length} missing)`,
  );
  assert.equal(rows, distinct, "no row was written twice");
  return { rows, distinct };
}

async function twoGateways(
  t: Context,
  nats: TestNats,
  mysqlUrl: string,
  extra?: Record<string, string>,
) {
  const env = jetStreamEnv(nats, mysqlUrl, extra);
  return Promise.all([startGatewayChild(t, env), startGatewayChild(t, env)]);
}

for (const servers of [3, 1] as const) {
  test(`${servers} NATS server(s): acknowledged while MySQL is locked; a replica killed with rows unflushed; the other drains them once`, async (t) => {
    const nats = await startNats(t, { servers });
    const db = await createTestDatabase(t);
    await db.admin.query(table);
    const gateways = await twoGateways(t, nats, db.url);
    const live: GatewayChild[] = [...gateways];
    // Each gateway learns the table's columns first: information_schema
    // waits behind a table lock.
    const warmUp = [-1, -2];
    for (const [i, g] of gateways.entries())
      await writeBatch(g.baseUrl, [warmUp[i] as number], `warm-${i}`);
    await assertExactlyOnce(db.admin, warmUp);

    // MySQL cannot take the rows: BUFFERED calls are acknowledged from JetStream all the same.
    const locker = await connectDirect(db.url);
    t.after(() => locker.end());
    // A read lock: writes wait, reads (the checks below) do not.
    await locker.query("LOCK TABLES tele READ");
    const writers = startWriters(() => live.map((g) => g.baseUrl));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const [victim, survivor] = gateways as [GatewayChild, GatewayChild];
    live.splice(live.indexOf(victim), 1);
    victim.child.kill("SIGKILL");
    await new Promise((resolve) => setTimeout(resolve, 500));
    await writers.stop();
    const acked = writers.acknowledged.length;
    assert.ok(acked >= 100, `${acked} rows acknowledged while MySQL was locked`);
    const [[before]] = (await db.admin.query("SELECT COUNT(*) AS n FROM tele")) as unknown as [
      [{ n: number }],
    ];
    assert.equal(Number(before.n), warmUp.length, "nothing reached the locked table");
    assert.ok(
      (await natsBacklog(nats.urls, stream, consumer)) > 0,
      "the batches wait in JetStream",
    );

    await locker.query("UNLOCK TABLES");
    const { rows } = await assertExactlyOnce(db.admin, [...warmUp, ...writers.acknowledged]);
    t.diagnostic(
      `${acked} acknowledged rows, ${rows} in MySQL, ${writers.failures()} failed calls retried`,
    );
    await waitForBacklog(nats, 0);
    const metrics = await (await fetch(`${survivor.baseUrl}/metrics`)).text();
    assert.match(metrics, /^sqlgate_ingest_log_applied_total [1-9]/m);
  });
}

/** Waits until the consumer's backlog is `n`. */
async function waitForBacklog(nats: TestNats, n: number, withinMs = 20_000) {
  const until = Date.now() + withinMs;
  let backlog = -1;
  while (Date.now() < until) {
    backlog = await natsBacklog(nats.urls, stream, consumer);
    if (backlog === n) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.equal(backlog, n, "the consumer's backlog");
}

test("3 NATS servers: the stream's leader killed mid-ingest, ingest goes on and loses nothing", async (t) => {
  const nats = await startNats(t, { servers: 3 });
  const db = await createTestDatabase(t);
  await db.admin.query(table);
  const gateways = await twoGateways(t, nats, db.url);
  const writers = startWriters(() => gateways.map((g) => g.baseUrl));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const ackedBeforeKill = writers.acknowledged.length;
  // The stream's leader: publishes wait for a new one (5-8 s on 2.9).
  const leader = (await natsStreamInfo(nats.urls, stream)).cluster?.leader;
  const victim = nats.nodes.find((node) => node.name === leader);
  assert.ok(victim !== undefined, `the stream has a leader (${leader})`);
  await victim.kill("SIGKILL");
  const killedAt = Date.now();
  // Calls in flight at the kill settle first; then, the first new acknowledgement.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const settled = writers.acknowledged.length;
  while (writers.acknowledged.length === settled && Date.now() - killedAt < 20_000) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const resumedMs = Date.now() - killedAt;
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const ackedAfterKill = writers.acknowledged.length - ackedBeforeKill;
  await writers.stop();
  t.diagnostic(
    `${ackedBeforeKill} rows before the kill, ${ackedAfterKill} after (acknowledged again ${resumedMs} ms after the leader died); ${writers.failures()} calls retried`,
  );
  assert.ok(ackedAfterKill > 0, "ingest went on with two servers of three");
  await assertExactlyOnce(db.admin, writers.acknowledged);
});

for (const servers of [3, 1] as const) {
  test(`${servers} NATS server(s), all SIGKILLed and restarted: nothing acknowledged is lost or applied twice`, async (t) => {
    const nats = await startNats(t, { servers });
    const db = await createTestDatabase(t);
    await db.admin.query(table);
    const gateways = await twoGateways(t, nats, db.url);
    const writers = startWriters(() => gateways.map((g) => g.baseUrl));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await Promise.all(nats.nodes.map((node) => node.kill("SIGKILL")));
    // Calls during the outage fail (nothing acknowledged) and are retried.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await Promise.all(nats.nodes.map((node) => node.restart()));
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await writers.stop();
    t.diagnostic(
      `${writers.acknowledged.length} rows acknowledged, ${writers.failures()} calls failed and retried`,
    );
    assert.ok(writers.failures() > 0, "calls failed while NATS was down");
    await assertExactlyOnce(db.admin, writers.acknowledged);
  });
}

test("MySQL stopped for 10 s mid-ingest: batches wait in JetStream and land once", async (t) => {
  const nats = await startNats(t, { servers: 1 });
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-js-mysql-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  let mysql = await startEmbeddedMysql({ dataDir });
  t.after(() => mysql.stop());
  const admin0 = await connectDirect(mysql.url);
  await admin0.query(table);
  await admin0.end();
  const gateway = await startGatewayChild(
    t,
    jetStreamEnv(nats, mysql.url, { SQLGATE_MYSQL_CONNECT_TIMEOUT_MS: "1000" }),
  );
  const writers = startWriters(() => [gateway.baseUrl], 2);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const port = mysql.port;
  await mysql.stop();
  const ackedAtStop = writers.acknowledged.length;
  await new Promise((resolve) => setTimeout(resolve, 10_000));
  const ackedWhileDown = writers.acknowledged.length - ackedAtStop;
  mysql = await startEmbeddedMysql({ dataDir, port });
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await writers.stop();
  t.diagnostic(`${ackedWhileDown} rows acknowledged while MySQL was down`);
  assert.ok(ackedWhileDown > 0, "BUFFERED calls are acknowledged while MySQL is down");
  const admin = await connectDirect(mysql.url);
  t.after(() => admin.end());
  await assertExactlyOnce(admin, writers.acknowledged);
});

test("a batch MySQL refuses goes to the dead-letter table after its deliveries; the others flow", async (t) => {
  const nats = await startNats(t, { servers: 1 });
  const db = await createTestDatabase(t);
  await db.admin.query(table);
  // A trigger refuses one value: the batch holding it can never be written.
  await db.admin.query(
    "CREATE TRIGGER refuse_13 BEFORE INSERT ON tele FOR EACH ROW BEGIN IF NEW.id = 13 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'id 13 is refused'; END IF; END",
  );
  const gateway = await startGatewayChild(
    t,
    jetStreamEnv(nats, db.url, { SQLGATE_NATS_MAX_DELIVER: "2" }),
  );
  await writeBatch(gateway.baseUrl, [1, 2, 3], "good-1");
  await writeBatch(gateway.baseUrl, [11, 12, 13], "poison");
  await writeBatch(gateway.baseUrl, [21, 22], "good-2");
  await assertExactlyOnce(db.admin, [1, 2, 3, 21, 22]);
  const until = Date.now() + 20_000;
  let dead: { target: string; message: string; errno: number }[] = [];
  while (dead.length === 0 && Date.now() < until) {
    [dead] = (await db.admin.query(
      "SELECT target, message, errno FROM sqlgate_ingest_rejected WHERE log_id = ?",
      [`jetstream:${stream}`],
    )) as unknown as [typeof dead];
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.equal(dead.length, 1, "the poison batch is a dead letter");
  assert.match(dead[0]?.message ?? "", /id 13 is refused/);
  assert.equal(dead[0]?.errno, 1644);
  const [[poison]] = (await db.admin.query(
    "SELECT COUNT(*) AS n FROM tele WHERE id IN (11, 12, 13)",
  )) as unknown as [[{ n: number }]];
  assert.equal(Number(poison.n), 0, "none of its rows were written");
  await waitForBacklog(nats, 0);
  const ready = (await (await fetch(`${gateway.baseUrl}/readyz`)).json()) as {
    ingestLog: { kind: string; deadLetters: number };
  };
  assert.deepEqual(ready.ingestLog.kind, "jetstream");
  assert.equal(ready.ingestLog.deadLetters, 1);
});

test("a client retry with the same key is applied once, whichever replica it reaches", async (t) => {
  const nats = await startNats(t, { servers: 1 });
  const db = await createTestDatabase(t);
  await db.admin.query(table);
  const [a, b] = (await twoGateways(t, nats, db.url)) as [GatewayChild, GatewayChild];
  await writeBatch(a.baseUrl, [1, 2], "same-key");
  await writeBatch(b.baseUrl, [1, 2], "same-key");
  // After JetStream's duplicate window too: the key in MySQL still holds.
  await assertExactlyOnce(db.admin, [1, 2]);
  await waitForBacklog(nats, 0);
  await writeBatch(a.baseUrl, [1, 2], "same-key");
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await waitForBacklog(nats, 0);
  const { rows } = await assertExactlyOnce(db.admin, [1, 2]);
  assert.equal(rows, 2);
});

test("a stream that exists with other settings is reported, never changed", async (t) => {
  const nats = await startNats(t, { servers: 1 });
  const db = await createTestDatabase(t);
  // One gateway creates the stream; another wants another duplicate window.
  await startGatewayChild(t, jetStreamEnv(nats, db.url));
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-js-other-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const other = spawn(process.execPath, ["--import", "tsx", "server/main.ts"], {
    env: {
      ...process.env,
      ...jetStreamEnv(nats, db.url, { SQLGATE_NATS_DUPLICATE_WINDOW_MS: "60000" }),
      SQLGATE_LISTEN: "127.0.0.1:0",
      SQLGATE_DATA_DIR: dataDir,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  other.stdout.setEncoding("utf8").on("data", (text: string) => (output += text));
  other.stderr.setEncoding("utf8").on("data", (text: string) => (output += text));
  const code = await new Promise((resolve) => other.once("exit", resolve));
  assert.notEqual(code, 0);
  assert.match(output, /stream SQLGATE_INGEST exists with other settings \(duplicate_window is/);
  const info = await natsStreamInfo(nats.urls, stream);
  assert.equal(info.config.duplicate_window, 120_000 * 1_000_000, "the stream is unchanged");
});

test("a full stream: calls wait until their deadline, then get resource_exhausted; nothing is lost", async (t) => {
  const nats = await startNats(t, { servers: 1 });
  const db = await createTestDatabase(t);
  await db.admin.query(table);
  const gateway = await startGatewayChild(
    t,
    jetStreamEnv(nats, db.url, { SQLGATE_NATS_MAX_BYTES: String(1024 * 1024) }),
  );
  await writeBatch(gateway.baseUrl, [-1], "warm");
  await assertExactlyOnce(db.admin, [-1]);
  // Nothing drains while the table is locked: the stream fills up.
  const locker = await connectDirect(db.url);
  t.after(() => locker.end());
  await locker.query("LOCK TABLES tele READ");
  const acknowledged: number[] = [-1];
  let refusal: unknown;
  for (let n = 0; n < 200 && refusal === undefined; n++) {
    const ids = Array.from({ length: 2000 }, (_, i) => n * 2000 + i);
    try {
      await writeBatch(gateway.baseUrl, ids, `fill-${n}`, 1000);
      acknowledged.push(...ids);
    } catch (err) {
      refusal = err;
    }
  }
  assert.ok(refusal instanceof ConnectError, `the stream filled up: ${String(refusal)}`);
  assert.equal(refusal.code, Code.ResourceExhausted);
  assert.match(refusal.message, /is full \(SQLGATE_NATS_MAX_BYTES\)/);
  await locker.query("UNLOCK TABLES");
  await assertExactlyOnce(db.admin, acknowledged);
});
