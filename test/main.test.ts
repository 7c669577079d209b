/**
 * The gateway as users start it: the real `server/main.ts` process, with no
 * SQLGATE_MYSQL_URL (so it starts its own embedded MariaDB), answering the
 * README's curl examples, and stopping cleanly on SIGTERM.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { isAlive } from "../server/devdb/embedded-mysql.js";
import { waitForLog } from "./support/gateway-process.js";

const run = promisify(execFile);

async function curlJson(url: string, body: unknown): Promise<unknown> {
  const { stdout } = await run("curl", [
    "-sS",
    url,
    "-H",
    "content-type: application/json",
    "-d",
    JSON.stringify(body),
  ]);
  return JSON.parse(stdout);
}

/** The real entry point with no MySQL URL (so: the embedded database) in a fresh data directory. */
function startMain(t: { after(fn: () => unknown): void }) {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-main-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const child = spawn(process.execPath, ["--import", "tsx", "server/main.ts"], {
    env: {
      ...process.env,
      SQLGATE_MYSQL_URL: "",
      SQLGATE_DATA_DIR: dataDir,
      SQLGATE_LISTEN: "127.0.0.1:0",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  t.after(() => child.kill("SIGKILL"));
  return { dataDir, child };
}

test("npm start's gateway: embedded database, README examples, clean SIGTERM", async (t) => {
  const { dataDir, child } = startMain(t);

  const listening = await waitForLog(child, /sqlgate listening on/, 60_000);
  const baseUrl = /(http:\/\/[\d.]+:\d+)/.exec(listening)?.[1];
  assert.ok(baseUrl, listening);
  const pidFile = path.join(dataDir, "mysql", "mysqld.pid");
  assert.ok(existsSync(pidFile), "the embedded server writes its pid under the data directory");
  const mysqlPid = Number(readFileSync(pidFile, "utf8"));
  assert.ok(isAlive(mysqlPid));

  const execute = `${baseUrl}/sqlgate.v1.DatabaseService/Execute`;
  assert.deepEqual(
    ((await curlJson(execute, { sql: "SELECT ? + 1 AS n", params: [41] })) as { rows: unknown })
      .rows,
    [{ values: [{ int64Value: "42" }] }],
  );
  assert.deepEqual(
    (
      (await curlJson(execute, { sql: "SELECT :name AS s", namedParams: { name: "x" } })) as {
        rows: unknown;
      }
    ).rows,
    [{ values: [{ stringValue: "x" }] }],
  );
  // The default database exists, so a new user can create tables at once.
  await curlJson(execute, {
    sql: "CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT)",
  });
  const inserted = (await curlJson(execute, {
    sql: "INSERT INTO notes VALUES (?, ?)",
    params: [1, "hello"],
  })) as { rowsAffected?: string };
  assert.equal(inserted.rowsAffected, "1");
  // The README's ingest example: applied once, then acknowledged as a duplicate.
  const write = `${baseUrl}/sqlgate.v1.IngestService/Write`;
  const rows = {
    table: "notes",
    columns: ["body"],
    rows: [{ values: [{ stringValue: "first" }] }, { values: [{ stringValue: "second" }] }],
    idempotencyKey: "import-42",
  };
  const written = (await curlJson(write, rows)) as { position?: string };
  assert.deepEqual(written, { rowsWritten: "2", batches: 1, position: written.position });
  assert.match(written.position ?? "", /^\d+-\d+-\d+$/);
  assert.deepEqual(await curlJson(write, rows), { duplicateBatches: 1 });

  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  child.kill("SIGTERM");
  assert.equal(await exited, 0);
  assert.equal(isAlive(mysqlPid), false, "the embedded server stops with the gateway");
});

test("a configuration error is reported in full and exits 2", async () => {
  await assert.rejects(
    run(process.execPath, ["--import", "tsx", "server/main.ts"], {
      env: { ...process.env, SQLGATE_LISTEN: "nope", SQLGATE_POOL_SIZE: "-1" },
    }),
    (err: { code?: number; stderr?: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr ?? "", /SQLGATE_LISTEN/);
      assert.match(err.stderr ?? "", /SQLGATE_POOL_SIZE/);
      return true;
    },
  );
});

test("SIGTERM during start-up stops the embedded database too", async (t) => {
  const { dataDir, child } = startMain(t);
  await waitForLog(child, /initialising a new embedded database/, 60_000);
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  child.kill("SIGTERM");
  assert.equal(await exited, 0);
  const pidFile = path.join(dataDir, "mysql", "mysqld.pid");
  if (existsSync(pidFile)) {
    assert.equal(
      isAlive(Number(readFileSync(pidFile, "utf8"))),
      false,
      "no database server left running",
    );
  }
  const running = readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(`--datadir=${dataDir}`);
      } catch {
        return false; // the process ended while we looked
      }
    })
    .join(",");
  assert.equal(running, "", "no mariadbd for this data directory");
});
