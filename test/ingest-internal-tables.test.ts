/**
 * The gateway's own tables: created at start-up under a MySQL named lock, so
 * that replicas starting together on an empty database take turns; and
 * idempotency keys expire after their retention; and one process per data
 * directory.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Code, type ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Durability, IngestService } from "../gen/sqlgate/v1/ingest_pb.js";
import { schemaLockName } from "../server/ingest/internal-tables.js";
import { startGateway } from "./support/gateway.js";
import { startGatewayChild } from "./support/gateway-process.js";
import { connectDirect, createTestDatabase, serverUrl } from "./support/mysql.js";

test("replicas starting at once on an empty database all start, and create the tables once", async (t) => {
  const { url } = await createTestDatabase(t);
  const internal = `t_internal_${randomBytes(4).toString("hex")}`;
  const admin = await connectDirect(url);
  t.after(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${internal}`);
    await admin.end();
  });
  const gateways = await Promise.all(
    Array.from({ length: 5 }, () =>
      startGateway(t, url, { env: { SQLGATE_INTERNAL_DATABASE: internal } }),
    ),
  );
  assert.equal(gateways.length, 5);
  const [tables] = (await admin.query(
    "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1",
    [internal],
  )) as unknown as [{ name: string }[]];
  assert.deepEqual(
    tables.map((r) => r.name),
    [
      "sqlgate_changes_sink",
      "sqlgate_ingest_keys",
      "sqlgate_ingest_log_applied",
      "sqlgate_ingest_rejected",
      "sqlgate_schema",
    ],
  );
  const [versions] = (await admin.query(
    `SELECT component, version FROM ${internal}.sqlgate_schema`,
  )) as unknown as [unknown[]];
  assert.deepEqual(versions, [{ component: "ingest", version: 2 }]);
});

test("start-up waits while another process holds the schema lock", async (t) => {
  const { url, name } = await createTestDatabase(t);
  const holder = await connectDirect(url);
  t.after(() => holder.end());
  const lock = schemaLockName(name);
  const [[got]] = (await holder.query("SELECT GET_LOCK(?, 5) AS got", [lock])) as unknown as [
    [{ got: number }],
  ];
  assert.equal(got.got, 1);
  let started = false;
  const starting = startGateway(t, url).then((g) => {
    started = true;
    return g;
  });
  await new Promise((r) => setTimeout(r, 700));
  assert.equal(started, false, "the gateway must not create tables while the lock is held");
  await holder.query("SELECT RELEASE_LOCK(?)", [lock]);
  const gateway = await starting;
  assert.ok(gateway.port > 0);
});

test("idempotency keys expire after SQLGATE_INGEST_KEY_RETENTION_MS", async (t) => {
  const { url, admin, name } = await createTestDatabase(t);
  await admin.query("CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT)");
  const gateway = await startGateway(t, url, { env: { SQLGATE_INGEST_KEY_RETENTION_MS: "1000" } });
  const client = createClient(
    IngestService,
    createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion: "2" }),
  );
  const request = {
    table: "notes",
    columns: ["body"],
    rows: [{ values: [{ kind: { case: "stringValue" as const, value: "hi" } }] }],
    idempotencyKey: "short-lived",
  };
  assert.equal((await client.write(request)).duplicateBatches, 0);
  assert.equal((await client.write(request)).duplicateBatches, 1);
  const keys = async () => {
    const [rows] = (await admin.query(
      `SELECT COUNT(*) AS n FROM ${name}.sqlgate_ingest_keys`,
    )) as unknown as [[{ n: number }]];
    return Number(rows[0].n);
  };
  assert.equal(await keys(), 1);
  for (let i = 0; (await keys()) > 0; i++) {
    assert.ok(i < 100, "the expired key was never purged");
    await new Promise((r) => setTimeout(r, 100));
  }
  // Past its retention, the same key is a new batch.
  assert.equal((await client.write(request)).duplicateBatches, 0);
  const [[count]] = (await admin.query("SELECT COUNT(*) AS n FROM notes")) as unknown as [
    [{ n: number }],
  ];
  assert.equal(Number(count.n), 2);
});

test("a MySQL user that may not create tables still serves plain writes; keys and BUFFERED say why they are off", async (t) => {
  const { url, admin, name } = await createTestDatabase(t);
  await admin.query("CREATE TABLE plain (id INT PRIMARY KEY)");
  const user = `ing_${randomBytes(4).toString("hex")}`;
  const password = randomBytes(12).toString("hex");
  await admin.query("CREATE USER ?@'localhost' IDENTIFIED BY ?", [user, password]);
  await admin.query(`GRANT SELECT, INSERT ON \`${name}\`.* TO ?@'localhost'`, [user]);
  t.after(async () => {
    const root = await connectDirect(serverUrl());
    await root.query("DROP USER IF EXISTS ?@'localhost'", [user]);
    await root.end();
  });
  const limited = new URL(url);
  limited.username = user;
  limited.password = password;
  const gateway = await startGateway(t, limited.toString());
  const client = createClient(
    IngestService,
    createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion: "2" }),
  );
  const rows = [{ values: [{ kind: { case: "int64Value" as const, value: 1n } }] }];
  assert.equal((await client.write({ table: "plain", columns: ["id"], rows })).rowsWritten, 1n);
  for (const extra of [{ idempotencyKey: "k" }, { durability: Durability.BUFFERED }]) {
    await assert.rejects(
      client.write({ table: "plain", columns: ["id"], rows, ...extra }),
      (err: ConnectError) => {
        assert.equal(err.code, Code.FailedPrecondition, err.message);
        assert.match(err.message, /internal tables/);
        return true;
      },
    );
  }
});

test("a second gateway process on the same data directory refuses to start, naming it", async (t) => {
  const { url } = await createTestDatabase(t);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-shared-dir-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const env = { SQLGATE_MYSQL_URL: url, SQLGATE_DATA_DIR: dataDir };
  const first = await startGatewayChild(t, env);
  const second = spawn(process.execPath, ["--import", "tsx", "server/main.ts"], {
    env: { ...process.env, ...env, SQLGATE_LISTEN: "127.0.0.1:0" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  second.stdout.setEncoding("utf8").on("data", (text: string) => (output += text));
  second.stderr.setEncoding("utf8").on("data", (text: string) => (output += text));
  const code = await new Promise((resolve) => second.once("exit", resolve));
  assert.notEqual(code, 0);
  assert.ok(output.includes(dataDir), output);
  assert.match(output, /another gateway \(pid \d+\)/);
  // The first one is unharmed.
  assert.equal((await fetch(`${first.baseUrl}/readyz`)).status, 200);
});
