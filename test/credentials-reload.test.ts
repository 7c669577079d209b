/**
 * SIGHUP re-reads the credentials file in the running process: a new
 * credential works at once, a broken file is refused and the credentials in
 * use stay.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { connect, type DatabaseError } from "@planetscale/database";
import { createCredential } from "../server/auth/credential-tool.js";
import { startGatewayChild, waitForLog } from "./support/gateway-process.js";
import { createTestDatabase } from "./support/mysql.js";

test("SIGHUP reloads the credentials file; a broken one is refused", async (t) => {
  const db = await createTestDatabase(t);
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-reload-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "credentials.yaml");
  const first = await createCredential(file, {
    name: "first",
    role: "read_write",
    database: undefined,
    replace: false,
  });
  const gateway = await startGatewayChild(t, {
    SQLGATE_MYSQL_URL: db.url,
    SQLGATE_CREDENTIALS_FILE: file,
    SQLGATE_DATA_DIR: dir,
  });
  const as = (name: string, password: string) =>
    connect({ url: gateway.baseUrl.replace("http://", `http://${name}:${password}@`) });
  assert.deepEqual((await as("first", first).execute("SELECT 1 AS a")).rows, [{ a: 1 }]);

  const second = await createCredential(file, {
    name: "second",
    role: "read_only",
    database: undefined,
    replace: false,
  });
  const refusedBefore = await as("second", second)
    .execute("SELECT 1")
    .then(
      () => assert.fail("not loaded yet, yet accepted"),
      (e: DatabaseError) => e,
    );
  assert.equal(refusedBefore.status, 401);
  const seen = { text: gateway.output() };
  const reloaded = waitForLog(gateway.child, /credentials reloaded/, 10_000, seen);
  gateway.child.kill("SIGHUP");
  assert.match(await reloaded, /"credentials":2/);
  assert.deepEqual((await as("second", second).execute("SELECT 2 AS b")).rows, [{ b: 2 }]);

  writeFileSync(file, "credentials: not a list\n");
  const refused = waitForLog(gateway.child, /credentials not reloaded/, 10_000, { text: "" });
  gateway.child.kill("SIGHUP");
  await refused;
  assert.deepEqual((await as("first", first).execute("SELECT 3 AS c")).rows, [{ c: 3 }]);
});
