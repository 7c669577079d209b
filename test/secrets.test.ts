/**
 * Secrets stay out of what the gateway prints and serves: the MySQL URL's
 * password, credential passwords (right and wrong ones, Basic and Bearer) and
 * Authorization headers never appear in its logs (at trace level), on
 * stderr, in error messages or in /metrics.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { connect } from "@planetscale/database";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { createCredential } from "../server/auth/credential-tool.js";
import { waitForLog } from "./support/gateway-process.js";
import { connectDirect, createTestDatabase, serverUrl } from "./support/mysql.js";

const mysqlPassword = "Mysql-Secret-7f3a9c";
const wrongPassword = "Wrong-Guess-51be20";

/** Runs server/main.ts with `env`; collects stdout and stderr. */
function gatewayProcess(t: { after(fn: () => unknown): void }, env: Record<string, string>) {
  const child = spawn(process.execPath, ["--import", "tsx", "server/main.ts"], {
    env: { ...process.env, SQLGATE_LISTEN: "127.0.0.1:0", SQLGATE_LOG_LEVEL: "trace", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.after(() => child.kill("SIGKILL"));
  const output = { text: "" };
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    output.text += chunk;
  });
  return { child, output };
}

test("no secret reaches the logs, stderr, error messages or /metrics", async (t) => {
  const db = await createTestDatabase(t);
  await db.admin.query(`CREATE USER 'sg_secret'@'%' IDENTIFIED BY '${mysqlPassword}'`);
  // Hooks run in order: the admin connection is closed by then.
  t.after(async () => {
    const admin = await connectDirect(serverUrl());
    await admin.query("DROP USER IF EXISTS 'sg_secret'@'%'");
    await admin.end();
  });
  await db.admin.query(`GRANT ALL ON ${db.name}.* TO 'sg_secret'@'%'`);
  const url = new URL(db.url);
  url.username = "sg_secret";
  url.password = mysqlPassword;

  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-secrets-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "credentials.yaml");
  const password = await createCredential(file, {
    name: "app",
    role: "read_write",
    database: undefined,
    replace: false,
  });

  const { child, output } = gatewayProcess(t, {
    SQLGATE_MYSQL_URL: url.toString(),
    SQLGATE_CREDENTIALS_FILE: file,
    SQLGATE_DATA_DIR: dir,
  });
  const listening = await waitForLog(child, /sqlgate listening on/, 60_000, output);
  child.stdout?.on("data", (chunk: string) => {
    output.text += chunk;
  });
  const baseUrl = /(http:\/\/[\d.]+:\d+)/.exec(listening)?.[1] ?? "";

  const clientWith = (authorization: string) =>
    createClient(
      DatabaseService,
      createConnectTransport({
        baseUrl,
        httpVersion: "1.1",
        interceptors: [
          (next) => (req) => {
            req.header.set("authorization", authorization);
            return next(req);
          },
        ],
      }),
    );
  const basic = (secret: string) => `Basic ${Buffer.from(`app:${secret}`).toString("base64")}`;
  const messages: string[] = [];
  const expectRefusal = async (promise: Promise<unknown>, code: Code) => {
    const err = await promise.then(
      () => assert.fail("the call succeeded"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(err.code, code);
    messages.push(err.message);
  };

  await clientWith(basic(password)).execute({ sql: "SELECT 1" });
  await expectRefusal(
    clientWith(basic(wrongPassword)).execute({ sql: "SELECT 1" }),
    Code.Unauthenticated,
  );
  await expectRefusal(
    clientWith(`Bearer app.${wrongPassword}`).execute({ sql: "SELECT 1" }),
    Code.Unauthenticated,
  );
  await expectRefusal(
    clientWith(basic(password)).execute({ sql: "SELEC oops" }),
    Code.InvalidArgument,
  );
  const psdbError = await connect({ url: `http://app:${wrongPassword}@${baseUrl.slice(7)}` })
    .execute("SELECT 1")
    .then(
      () => assert.fail("a wrong password was accepted"),
      (e: Error) => e,
    );
  messages.push(psdbError.message);
  const metrics = await (await fetch(`${baseUrl}/metrics`)).text();

  child.kill("SIGTERM");
  await once(child, "exit");

  const everything = [output.text, metrics, ...messages].join("\n");
  assert.match(output.text, /sqlgate listening on/, "the logs were captured");
  assert.match(output.text, /"level":10|"level":20|"level":30/, "JSON log lines");
  for (const secret of [
    mysqlPassword,
    password,
    wrongPassword,
    Buffer.from(`app:${password}`).toString("base64"),
    Buffer.from(`app:${wrongPassword}`).toString("base64"),
  ]) {
    assert.ok(!everything.includes(secret), `a secret appeared: ${secret.slice(0, 4)}...`);
  }
});

test("a bad MySQL URL is reported without its password", async (t) => {
  const { child, output } = gatewayProcess(t, {
    SQLGATE_MYSQL_URL: `mysql://someone:${mysqlPassword}@127.0.0.1:99999/db`,
  });
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    output.text += chunk;
  });
  const [code] = (await once(child, "exit")) as [number | null];
  assert.notEqual(code, 0);
  assert.match(output.text, /SQLGATE_MYSQL_URL/);
  assert.ok(!output.text.includes(mysqlPassword));
});
