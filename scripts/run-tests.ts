/**
 * Runs the test suite against a private MariaDB/MySQL: starts one embedded
 * server in a temporary directory, runs every test file (in parallel; each
 * file uses its own database), stops the server, and exits with the tests'
 * status. Extra arguments are passed to `node --test` (e.g. a file list).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { binlogServerArgs } from "../server/changes/binlog-settings.js";
import { startEmbeddedMysql } from "../server/devdb/embedded-mysql.js";

function testFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return testFiles(full);
    return name.endsWith(".test.ts") ? [full] : [];
  });
}

const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-test-"));
const mysql = await startEmbeddedMysql({
  dataDir,
  log: (m) => process.stderr.write(`${m}\n`),
  // A binary log, as `npm start`'s database has, for the change-stream tests.
  serverArgs: binlogServerArgs,
});
const args = process.argv.slice(2);
const files = args.length > 0 ? args : testFiles("test").sort();
const concurrency =
  process.env.SQLGATE_TEST_CONCURRENCY ?? String(Math.max(2, os.cpus().length * 2));
const child = spawn(
  process.execPath,
  ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, ...files],
  {
    stdio: "inherit",
    env: { ...process.env, SQLGATE_TEST_MYSQL_URL: mysql.url },
  },
);
// Interrupted (Ctrl-C, CI timeout): stop the tests, then the server below.
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => child.kill(signal));
const code: number = await new Promise((resolve) => child.once("exit", (c) => resolve(c ?? 1)));
await mysql.stop();
rmSync(dataDir, { recursive: true, force: true });
process.exit(code);
