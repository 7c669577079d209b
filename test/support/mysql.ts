/**
 * The test suite's MySQL: the private server started by scripts/run-tests.ts,
 * with a fresh database per test file so that files can run in parallel.
 */
import { randomBytes } from "node:crypto";
import type { TestContext } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import mysql from "mysql2/promise";
import {
  type EmbeddedMysql,
  type EmbeddedMysqlOptions,
  startEmbeddedMysql,
} from "../../server/devdb/embedded-mysql.js";

/** The server-wide URL that scripts/run-tests.ts exports. */
export function serverUrl(): string {
  const url = process.env.SQLGATE_TEST_MYSQL_URL;
  if (!url) throw new Error("SQLGATE_TEST_MYSQL_URL is not set: run the tests with `npm test`");
  return url;
}

/** `url` with its database replaced by `database`. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A direct mysql2 connection, as a test's independent view of the server. */
export async function connectDirect(url: string, options: mysql.ConnectionOptions = {}) {
  const u = new URL(url);
  return mysql.createConnection({
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    ...(u.pathname.length > 1 ? { database: u.pathname.slice(1) } : {}),
    ...(u.searchParams.get("socket")
      ? { socketPath: u.searchParams.get("socket") ?? "" }
      : { host: u.hostname, port: Number(u.port || 3306) }),
    ...options,
  });
}

/** Creates a new empty database for the calling test file; dropped when the test ends. */
export async function createTestDatabase(
  t: TestContext | { after(fn: () => unknown): void },
): Promise<{
  url: string;
  name: string;
  admin: mysql.Connection;
}> {
  const name = `t_${randomBytes(6).toString("hex")}`;
  const admin = await connectDirect(serverUrl(), { multipleStatements: true });
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.query(`USE ${name}`);
  t.after(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${name}`);
    await admin.end();
  });
  return { url: withDatabase(serverUrl(), name), name, admin };
}

/** How many statements containing `marker` are running on the server. */
export async function runningStatements(admin: mysql.Connection, marker: string): Promise<number> {
  const [rows] = await admin.query(
    "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE ? AND INFO NOT LIKE '%PROCESSLIST%'",
    [`%${marker}%`],
  );
  return Number((rows as { n: number }[])[0]?.n);
}

/** Waits until no statement containing `marker` runs; fails after `withinMs`. Resolves with the wait. */
export async function waitUntilGone(
  admin: mysql.Connection,
  marker: string,
  withinMs = 5000,
): Promise<number> {
  const started = Date.now();
  while ((await runningStatements(admin, marker)) > 0) {
    if (Date.now() - started > withinMs)
      throw new Error(`${marker} still runs on MySQL after ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - started;
}

/** Waits until some transaction waits for a row lock (InnoDB refreshes this view every 0.1 s). */
export async function waitForLockWait(admin: mysql.Connection, withinMs = 5000): Promise<void> {
  const until = Date.now() + withinMs;
  for (;;) {
    const [rows] = await admin.query(
      "SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'",
    );
    if (Number((rows as { n: number }[])[0]?.n) > 0) return;
    if (Date.now() > until) throw new Error("no transaction came to wait for a lock");
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Stops a private server and starts it again on the same files and port
 * (`options` as it was started with), as a MySQL restart under a client.
 */
export async function restartEmbedded(
  server: EmbeddedMysql,
  options: EmbeddedMysqlOptions,
): Promise<EmbeddedMysql> {
  await server.stop();
  // A moment for the port to be free again.
  await delay(300);
  return startEmbeddedMysql({ ...options, port: server.port });
}
