/**
 * BUFFERED ingest through faults, with the real gateway process and a private
 * MariaDB: MySQL stopped for 10 s mid-ingest, and the gateway killed with
 * SIGKILL mid-ingest. Every acknowledged row must end up in MySQL exactly once.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Durability, IngestService } from "../gen/sqlgate/v1/ingest_pb.js";
import { type EmbeddedMysql, startEmbeddedMysql } from "../server/devdb/embedded-mysql.js";
import { startGatewayChild } from "./support/gateway-process.js";
import { connectDirect, withDatabase } from "./support/mysql.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function privateMysql(t: { after(fn: () => unknown): void }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-fault-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const mysqlDir = path.join(dir, "mysql");
  const box = { mysql: (await startEmbeddedMysql({ dataDir: mysqlDir })) as EmbeddedMysql };
  t.after(() => box.mysql.stop());
  const admin = await connectDirect(box.mysql.url);
  t.after(() => admin.end().catch(() => {}));
  await admin.query("CREATE DATABASE fault");
  await admin.query(
    "CREATE TABLE fault.readings (id INT AUTO_INCREMENT PRIMARY KEY, writer INT NOT NULL, seq INT NOT NULL)",
  );
  await admin.end();
  return {
    box,
    gatewayDir: path.join(dir, "gateway"),
    url: withDatabase(box.mysql.url, "fault"),
    restart: async () => {
      box.mysql = await startEmbeddedMysql({ dataDir: mysqlDir });
    },
  };
}

/**
 * Writers that send BUFFERED calls of 5 rows in a loop and remember which
 * rows were acknowledged.
 */
function startWriters(baseUrl: () => string, writers: number) {
  const acked = new Set<string>();
  let stopped = false;
  let failures = 0;
  const ackTimes: number[] = [];
  const loops = Array.from({ length: writers }, async (_, writer) => {
    let client = createClient(
      IngestService,
      createConnectTransport({ baseUrl: baseUrl(), httpVersion: "2" }),
    );
    let url = baseUrl();
    for (let seq = 0; !stopped; seq += 5) {
      if (url !== baseUrl()) {
        url = baseUrl();
        client = createClient(
          IngestService,
          createConnectTransport({ baseUrl: url, httpVersion: "2" }),
        );
      }
      const rows = Array.from({ length: 5 }, (_, i) => ({
        values: [
          { kind: { case: "int64Value" as const, value: BigInt(writer) } },
          { kind: { case: "int64Value" as const, value: BigInt(seq + i) } },
        ],
      }));
      try {
        await client.write(
          { table: "readings", columns: ["writer", "seq"], rows, durability: Durability.BUFFERED },
          { timeoutMs: 5000 },
        );
        for (let i = 0; i < 5; i++) acked.add(`${writer}:${seq + i}`);
        ackTimes.push(Date.now());
      } catch (err) {
        failures++;
        assert.ok(err instanceof ConnectError, String(err));
        await sleep(20);
      }
    }
  });
  return {
    acked,
    ackTimes,
    failures: () => failures,
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** The gateway's Prometheus metrics without labels, by name. */
async function metric(baseUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  return Object.fromEntries(
    text
      .split("\n")
      .filter((line) => /^sqlgate_\w+ /.test(line))
      .map((line) => [line.split(" ")[0], Number(line.split(" ")[1])]),
  );
}

/** Waits until MySQL holds every acknowledged row, then checks each is there exactly once. */
async function assertExactlyOnce(url: string, acked: Set<string>, waitMs = 60_000) {
  const admin = await connectDirect(url);
  try {
    let rows: { writer: number; seq: number; n: number }[] = [];
    for (let i = 0; ; i++) {
      [rows] = (await admin.query(
        "SELECT writer, seq, COUNT(*) n FROM readings GROUP BY writer, seq",
      )) as unknown as [typeof rows];
      const present = new Set(rows.map((r) => `${r.writer}:${r.seq}`));
      const missing = [...acked].filter((k) => !present.has(k));
      if (missing.length === 0) break;
      assert.ok(
        i * 100 < waitMs,
        `${missing.length} acknowledged rows never arrived, e.g. ${missing.slice(0, 5)}`,
      );
      await sleep(100);
    }
    await sleep(500);
    [rows] = (await admin.query(
      "SELECT writer, seq, COUNT(*) n FROM readings GROUP BY writer, seq HAVING COUNT(*) > 1",
    )) as unknown as [typeof rows];
    assert.deepEqual(rows, [], "no row was applied twice");
  } finally {
    await admin.end();
  }
}

test("MySQL stopped for 10 s mid BUFFERED ingest: every acknowledged row arrives exactly once", async (t) => {
  const db = await privateMysql(t);
  const gateway = await startGatewayChild(t, {
    SQLGATE_MYSQL_URL: db.url,
    SQLGATE_DATA_DIR: db.gatewayDir,
    SQLGATE_LOG_LEVEL: "info",
  });
  const writers = startWriters(() => gateway.baseUrl, 8);
  await sleep(1500);
  await db.box.mysql.stop();
  const downAt = Date.now();
  await sleep(5000);
  const during = await metric(gateway.baseUrl);
  assert.ok((during.sqlgate_ingest_log_records ?? 0) > 0, "the log depth shows the backlog");
  assert.ok(
    (during.sqlgate_ingest_log_flush_lag_seconds ?? 0) >= 3,
    "the flush lag shows the outage",
  );
  await sleep(5000);
  const upAt = Date.now();
  await db.restart();
  await sleep(1500);
  await writers.stop();
  const ackedWhileDown = writers.ackTimes.filter((at) => at > downAt && at < upAt).length;
  assert.ok(
    ackedWhileDown > 20,
    `only ${ackedWhileDown} calls were acknowledged while MySQL was down`,
  );
  await assertExactlyOnce(db.url, writers.acked);
  assert.match(gateway.output(), /ingest log flushing resumed/);
  const after = await metric(gateway.baseUrl);
  assert.equal(after.sqlgate_ingest_log_records, 0);
  assert.equal(after.sqlgate_ingest_log_flush_lag_seconds, 0);
});

test("gateway killed with SIGKILL mid BUFFERED ingest: after a restart every acknowledged row is there exactly once", async (t) => {
  const db = await privateMysql(t);
  const env = {
    SQLGATE_MYSQL_URL: db.url,
    SQLGATE_DATA_DIR: db.gatewayDir,
    SQLGATE_LOG_LEVEL: "info",
  };
  const first = await startGatewayChild(t, env);
  let baseUrl = first.baseUrl;
  const writers = startWriters(() => baseUrl, 8);
  await sleep(1000);
  // Hold the table so that acknowledged records pile up in the log, unflushed.
  const locker = await connectDirect(db.url);
  t.after(() => locker.end().catch(() => {}));
  await locker.query("LOCK TABLES readings WRITE");
  await sleep(1000);
  first.child.kill("SIGKILL");
  assert.equal(await first.exited, "SIGKILL");
  await locker.query("UNLOCK TABLES");
  const ackedBeforeKill = writers.acked.size;
  const second = await startGatewayChild(t, env);
  baseUrl = second.baseUrl;
  assert.match(second.output(), /replaying records not yet in MySQL/);
  await sleep(1000);
  await writers.stop();
  assert.ok(ackedBeforeKill > 100, `only ${ackedBeforeKill} rows acknowledged before the kill`);
  assert.ok(writers.acked.size > ackedBeforeKill, "the restarted gateway took writes too");
  await assertExactlyOnce(db.url, writers.acked);
  second.child.kill("SIGTERM");
  assert.equal(await second.exited, 0);
});

test("SIGTERM flushes the write-ahead log to MySQL before the gateway exits", async (t) => {
  const db = await privateMysql(t);
  const gateway = await startGatewayChild(t, {
    SQLGATE_MYSQL_URL: db.url,
    SQLGATE_DATA_DIR: db.gatewayDir,
  });
  const locker = await connectDirect(db.url);
  t.after(() => locker.end().catch(() => {}));
  await locker.query("LOCK TABLES readings WRITE");
  const writers = startWriters(() => gateway.baseUrl, 4);
  await sleep(1000);
  await writers.stop();
  assert.ok(writers.acked.size > 0);
  gateway.child.kill("SIGTERM");
  // The gateway waits for the log to drain; let MySQL take the rows now.
  await sleep(500);
  await locker.query("UNLOCK TABLES");
  assert.equal(await gateway.exited, 0);
  // Checked right away: the process has exited, so nothing else can add the rows later.
  await assertExactlyOnce(db.url, writers.acked, 0);
});
