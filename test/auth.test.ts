/**
 * Credentials against the real gateway and MariaDB: HTTP Basic (percent-encoded
 * too, as @planetscale/database sends it from a URL) and Bearer, each role's
 * refusals, a credential's own database, sessions bound to their credential,
 * and a reload that takes effect without dropping calls.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { connect, DatabaseError } from "@planetscale/database";
import type mysql from "mysql2/promise";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { IngestService } from "../gen/sqlgate/v1/ingest_pb.js";
import { LimitExceededSchema, ValueSchema } from "../gen/sqlgate/v1/value_pb.js";
import { createCredential } from "../server/auth/credential-tool.js";
import { CredentialsFileError, parseCredentials } from "../server/auth/credentials.js";
import { hashPassword } from "../server/auth/password-hash.js";
import { ConfigError, loadConfig } from "../server/config.js";
import { refusal } from "./support/clients.js";
import { startGateway, type TestGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

/** A password with every character a URL must percent-encode. */
const awkwardPassword = "p@ss:w/rd%?#";

function clients(gateway: TestGateway, authorization: string | undefined) {
  const setHeader: Interceptor = (next) => (req) => {
    if (authorization !== undefined) req.header.set("authorization", authorization);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: gateway.baseUrl,
    httpVersion: "1.1",
    interceptors: [setHeader],
  });
  return {
    database: createClient(DatabaseService, transport),
    ingest: createClient(IngestService, transport),
    health: createClient(Health, transport),
  };
}

const basic = (name: string, password: string) =>
  `Basic ${Buffer.from(`${name}:${password}`).toString("base64")}`;

describe("credentials", () => {
  let gateway: TestGateway;
  let admin: mysql.Connection;
  let file: string;
  const passwords = new Map<string, string>();
  let otherDatabase: string;
  let database: string;
  const cleanups: (() => unknown)[] = [];
  const t = { after: (fn: () => unknown) => cleanups.push(fn) };
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  const driver = (name: string, password = passwords.get(name) ?? "") =>
    connect({ url: `http://${name}:${encodeURIComponent(password)}@127.0.0.1:${gateway.port}` });
  const as = (name: string) => clients(gateway, basic(name, passwords.get(name) ?? ""));

  before(async () => {
    const db = await createTestDatabase(t);
    admin = db.admin;
    database = db.name;
    otherDatabase = `${db.name}_other`;
    await admin.query(`CREATE DATABASE ${otherDatabase}`);
    t.after(() => admin.query(`DROP DATABASE IF EXISTS ${otherDatabase}`));
    await admin.query("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20))");
    await admin.query("INSERT INTO items VALUES (1, 'one')");
    await admin.query(`CREATE TABLE ${otherDatabase}.secrets (id INT PRIMARY KEY)`);

    const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-auth-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    file = path.join(dir, "credentials.yaml");
    for (const [name, role, database] of [
      ["rw", "read_write", undefined],
      ["ro", "read_only", undefined],
      ["ing", "ingest_only", undefined],
      ["other", "read_write", otherDatabase],
    ] as const) {
      passwords.set(name, await createCredential(file, { name, role, database, replace: false }));
    }
    let extra = `  - name: awkward\n    password_hash: "${await hashPassword(awkwardPassword)}"\n`;
    passwords.set("awkward", awkwardPassword);
    for (const [name, limit] of [
      ["busy", "max_calls: 2"],
      ["tx1", "max_transactions: 1"],
      ["slow", "calls_per_second: 3"],
    ] as const) {
      passwords.set(name, `${name}-password`);
      extra += `  - name: ${name}\n    password_hash: "${await hashPassword(`${name}-password`)}"\n    ${limit}\n`;
    }
    await admin.query("CREATE USER 'sg_reader'@'%' IDENTIFIED BY 'reader-pass'");
    t.after(() => admin.query("DROP USER IF EXISTS 'sg_reader'@'%'"));
    await admin.query(`GRANT SELECT ON ${db.name}.* TO 'sg_reader'@'%'`);
    passwords.set("mapped", "mapped-password");
    extra += `  - name: mapped\n    password_hash: "${await hashPassword("mapped-password")}"\n    mysql_user: sg_reader\n    mysql_password: reader-pass\n`;
    writeFileSync(file, readFileSync(file, "utf8") + extra);
    gateway = await startGateway(t, db.url, { env: { SQLGATE_CREDENTIALS_FILE: file } });
  });

  test("the file holds hashes only, and the gateway refuses calls without a credential", async () => {
    const text = readFileSync(file, "utf8");
    for (const password of passwords.values()) assert.ok(!text.includes(password));
    const anonymous = clients(gateway, undefined);
    const err = await refusal(anonymous.database.execute({ sql: "SELECT 1" }));
    assert.equal(err.code, Code.Unauthenticated);
    const wrong = clients(gateway, basic("rw", "guess"));
    assert.equal(
      (await refusal(wrong.database.execute({ sql: "SELECT 1" }))).code,
      Code.Unauthenticated,
    );
    const unknown = clients(gateway, basic("nobody", "guess"));
    assert.equal(
      (await refusal(unknown.database.execute({ sql: "SELECT 1" }))).code,
      Code.Unauthenticated,
    );
    // Load balancers probe health without credentials.
    assert.equal((await anonymous.health.check({})).status, 1);
  });

  test("Basic and Bearer both authenticate", async () => {
    const viaBasic = await as("rw").database.execute({ sql: "SELECT name FROM items" });
    assert.equal(viaBasic.rows[0]?.values[0]?.kind.value, "one");
    const bearer = clients(gateway, `Bearer rw.${passwords.get("rw")}`);
    const viaBearer = await bearer.database.execute({ sql: "SELECT COUNT(*) FROM items" });
    assert.equal(viaBearer.rows[0]?.values[0]?.kind.value, 1n);
  });

  test("@planetscale/database: URL credentials, percent-encoded ones, and a clear 401", async () => {
    assert.deepEqual((await driver("rw").execute("SELECT name FROM items")).rows, [
      { name: "one" },
    ]);
    // The driver sends a URL's user info without decoding it: p%40ss%3A...
    assert.deepEqual((await driver("awkward").execute("SELECT 2 AS two")).rows, [{ two: 2 }]);
    try {
      await driver("rw", "wrong").execute("SELECT 1");
      assert.fail("a wrong password was accepted");
    } catch (err) {
      assert.ok(err instanceof DatabaseError && err.name === "DatabaseError", String(err));
      assert.equal(err.status, 401);
      assert.equal(err.body.code, "UNAUTHENTICATED");
      assert.match(err.message, /wrong password/);
    }
  });

  test("a credential works on its own database and may not USE another", async () => {
    const other = driver("other");
    assert.deepEqual((await other.execute("SELECT DATABASE() AS db")).rows, [
      { db: otherDatabase },
    ]);
    assert.deepEqual((await other.execute("SELECT COUNT(*) AS n FROM secrets")).rows, [{ n: "0" }]);
    const err = await other.execute(`USE ${database}`).then(
      () => assert.fail("USE was allowed"),
      (e: DatabaseError) => e,
    );
    assert.equal(err.body.code, "PERMISSION_DENIED");
    const viaConnect = await refusal(as("other").database.execute({ sql: `USE ${database}` }));
    assert.equal(viaConnect.code, Code.PermissionDenied);
    const [rw] = (await driver("rw").execute("SELECT DATABASE() AS db")).rows as { db: string }[];
    assert.equal(rw?.db, database);
    // Ingest writes to the URL's database, which this credential may not reach.
    const ingest = await refusal(
      as("other").ingest.write({ table: "secrets", columns: ["id"], rows: [] }),
    );
    assert.equal(ingest.code, Code.FailedPrecondition);
  });

  test("a credential mapped to a MySQL account runs as it: MySQL's privileges confine it", async () => {
    const mapped = driver("mapped");
    assert.deepEqual((await mapped.execute("SELECT CURRENT_USER() AS u")).rows, [
      { u: "sg_reader@%" },
    ]);
    assert.deepEqual((await mapped.execute("SELECT name FROM items WHERE id = 1")).rows, [
      { name: "one" },
    ]);
    const write = await mapped.execute("UPDATE items SET name = 'x'").then(
      () => assert.fail("the update ran"),
      (e: DatabaseError) => e,
    );
    assert.match(write.message, /\(errno 1142\)/);
    assert.equal(write.body.code, "PERMISSION_DENIED");
    // Qualified names reach no further than the account's grants.
    const elsewhere = await refusal(
      as("mapped").database.execute({ sql: `SELECT * FROM ${otherDatabase}.secrets` }),
    );
    assert.equal(elsewhere.code, Code.PermissionDenied);
    const [rows] = (await admin.query("SELECT name FROM items WHERE id = 1")) as unknown as [
      { name: string }[],
    ];
    assert.equal(rows[0]?.name, "one");
  });

  test("read_only: MySQL refuses its writes, and it may not make a session writable", async () => {
    const ro = as("ro");
    const insert = await refusal(
      ro.database.execute({ sql: "INSERT INTO items VALUES (2, 'two')" }),
    );
    assert.equal(insert.code, Code.PermissionDenied);
    const { session } = await ro.database.beginTransaction({ readOnly: false });
    const inTx = await refusal(
      ro.database.execute({ session, sql: "UPDATE items SET name = 'x' WHERE id = 1" }),
    );
    assert.equal(inTx.code, Code.PermissionDenied);
    await ro.database.rollbackTransaction({ session }).catch(() => {});
    for (const sql of [
      "SET SESSION TRANSACTION READ WRITE",
      "SET @@session.transaction_read_only = 0",
    ]) {
      assert.equal((await refusal(ro.database.execute({ sql }))).code, Code.PermissionDenied, sql);
    }
    const viaDriver = driver("ro");
    const err = await viaDriver
      .transaction(async (tx) => {
        await tx.execute("DELETE FROM items");
      })
      .then(
        () => assert.fail("the delete ran"),
        (e: DatabaseError) => e,
      );
    assert.match(err.message, /\(errno 1792\)/);
    const writable = await viaDriver.execute("START TRANSACTION READ WRITE").then(
      () => assert.fail("READ WRITE was allowed"),
      (e: DatabaseError) => e,
    );
    assert.equal(writable.body.code, "PERMISSION_DENIED");
    assert.deepEqual((await viaDriver.execute("SELECT COUNT(*) AS n FROM items")).rows, [
      { n: "1" },
    ]);
    assert.equal(
      (await refusal(ro.ingest.write({ table: "items", columns: ["id"], rows: [] }))).code,
      Code.PermissionDenied,
    );
    const [rows] = (await admin.query("SELECT id, name FROM items")) as unknown as [unknown[]];
    assert.deepEqual(rows, [{ id: 1, name: "one" }]);
  });

  test("ingest_only: IngestService only", async () => {
    const ing = as("ing");
    const err = await refusal(ing.database.execute({ sql: "SELECT 1" }));
    assert.equal(err.code, Code.PermissionDenied);
    assert.match(err.message, /ingest_only/);
    const written = await ing.ingest.write({
      table: "items",
      columns: ["id", "name"],
      rows: [
        {
          values: [
            create(ValueSchema, { kind: { case: "int64Value", value: 5n } }),
            create(ValueSchema, { kind: { case: "stringValue", value: "five" } }),
          ],
        },
      ],
    });
    assert.equal(written.rowsWritten, 1n);
    await admin.query("DELETE FROM items WHERE id = 5");
    const psdb = await driver("ing")
      .execute("SELECT 1")
      .then(
        () => assert.fail("psdb was allowed"),
        (e: DatabaseError) => e,
      );
    assert.equal(psdb.status, 403);
    assert.equal(psdb.body.code, "PERMISSION_DENIED");
  });

  test("transactions and sessions belong to the credential that opened them", async () => {
    const { session } = await as("rw").database.beginTransaction({});
    const stolen = await refusal(as("other").database.execute({ session, sql: "SELECT 1" }));
    assert.equal(stolen.code, Code.PermissionDenied);
    const rollback = await refusal(as("other").database.rollbackTransaction({ session }));
    assert.equal(rollback.code, Code.PermissionDenied);
    await as("rw").database.commitTransaction({ session });

    // A psdb session signed for rw does not verify for another credential.
    const pinned = await fetch(`${gateway.baseUrl}/psdb.v1alpha1.Database/Execute`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: basic("rw", passwords.get("rw") ?? ""),
      },
      body: JSON.stringify({ query: "SET @mine = 1" }),
    }).then((r) => r.json() as Promise<{ session: unknown }>);
    const replayed = await fetch(`${gateway.baseUrl}/psdb.v1alpha1.Database/Execute`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: basic("other", passwords.get("other") ?? ""),
      },
      body: JSON.stringify({ query: "SELECT @mine", session: pinned.session }),
    }).then((r) => r.json() as Promise<{ error?: { code: string } }>);
    assert.equal(replayed.error?.code, "INVALID_ARGUMENT");
  });

  test("per-credential limits: calls in progress, open transactions, calls per second", async () => {
    const limitOf = (err: ConnectError) =>
      err.findDetails(LimitExceededSchema)[0]?.setting ?? "(no LimitExceeded detail)";
    const busy = as("busy").database;
    const calls = await Promise.allSettled(
      [1, 2, 3].map(() => busy.execute({ sql: "SELECT SLEEP(0.5)" })),
    );
    const refused = calls.flatMap((c) =>
      c.status === "rejected" ? [ConnectError.from(c.reason)] : [],
    );
    assert.equal(refused.length, 1);
    assert.equal(refused[0]?.code, Code.ResourceExhausted);
    assert.equal(limitOf(refused[0] as ConnectError), "SQLGATE_CREDENTIAL_MAX_CALLS");
    await busy.execute({ sql: "SELECT 1" }); // the slots came back

    const tx1 = as("tx1").database;
    const first = await tx1.beginTransaction({});
    const second = await refusal(tx1.beginTransaction({}));
    assert.equal(limitOf(second), "SQLGATE_CREDENTIAL_MAX_TRANSACTIONS");
    // Other credentials are not held back by it.
    const other = await as("rw").database.beginTransaction({});
    await as("rw").database.rollbackTransaction({ session: other.session });
    await tx1.commitTransaction({ session: first.session });
    const again = await tx1.beginTransaction({});
    await tx1.rollbackTransaction({ session: again.session });

    const slow = as("slow").database;
    const burst = await Promise.allSettled(
      Array.from({ length: 6 }, () => slow.execute({ sql: "SELECT 1" })),
    );
    const limited = burst.flatMap((c) =>
      c.status === "rejected" ? [ConnectError.from(c.reason)] : [],
    );
    assert.ok(limited.length >= 2, `${limited.length} of 6 refused`);
    assert.equal(limitOf(limited[0] as ConnectError), "SQLGATE_CREDENTIAL_CALLS_PER_SECOND");
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await slow.execute({ sql: "SELECT 1" });
  });

  test("a reload adds and removes credentials without dropping calls in flight", async () => {
    const slow = as("rw").database.execute({ sql: "SELECT SLEEP(1) AS s" });
    const added = await createCredential(file, {
      name: "late",
      role: "read_write",
      database: undefined,
      replace: false,
    });
    const text = readFileSync(file, "utf8").replace(/ {2}- name: ro\n(?: {4}.*\n)+/, "");
    writeFileSync(file, text);
    assert.equal(await gateway.reloadCredentials(), passwords.size); // ro out, late in
    passwords.set("late", added);
    assert.equal((await slow).rows[0]?.values[0]?.kind.value, 0n);
    assert.deepEqual((await driver("late").execute("SELECT 1 AS a")).rows, [{ a: 1 }]);
    const removed = await refusal(as("ro").database.execute({ sql: "SELECT 1" }));
    assert.equal(removed.code, Code.Unauthenticated);
    // A broken file is refused and the credentials in use stay.
    writeFileSync(file, "credentials: [ {name: x} ]");
    await assert.rejects(gateway.reloadCredentials(), /password_hash/);
    assert.deepEqual((await driver("late").execute("SELECT 1 AS a")).rows, [{ a: 1 }]);
  });
});

test("without credentials the gateway may listen on loopback only, unless told otherwise", () => {
  assert.throws(
    () => loadConfig({ SQLGATE_LISTEN: "0.0.0.0:8080" }),
    (err: unknown) => err instanceof ConfigError && /SQLGATE_CREDENTIALS_FILE/.test(err.message),
  );
  assert.equal(loadConfig({ SQLGATE_LISTEN: "127.0.0.1:8080" }).auth.credentialsFile, undefined);
  assert.equal(
    loadConfig({ SQLGATE_LISTEN: "0.0.0.0:8080", SQLGATE_ALLOW_INSECURE: "true" }).auth
      .allowInsecure,
    true,
  );
  assert.equal(
    loadConfig({ SQLGATE_LISTEN: "0.0.0.0:8080", SQLGATE_CREDENTIALS_FILE: "/etc/c.yaml" }).auth
      .credentialsFile,
    "/etc/c.yaml",
  );
});

test("credentials file: a MySQL account's password from the environment, and every problem at once", async () => {
  const hash = await hashPassword("x");
  const text = `credentials:
  - name: svc
    password_hash: "${hash}"
    mysql_user: svc_rw
    mysql_password_env: SVC_RW_PASSWORD
`;
  const [svc] = parseCredentials(text, { SVC_RW_PASSWORD: "from-env" });
  assert.deepEqual(svc?.account, { user: "svc_rw", password: "from-env" });
  assert.throws(() => parseCredentials(text, {}), /SVC_RW_PASSWORD is not set/);
  assert.throws(
    () =>
      parseCredentials(
        `credentials:\n  - name: "bad name"\n    password_hash: nope\n    role: admin\n    max_calls: -1\n`,
      ),
    (err: unknown) =>
      err instanceof CredentialsFileError &&
      ["name", "password_hash", "role", "max_calls"].every((field) =>
        err.message.includes(`credentials[0].${field}`),
      ),
  );
});
