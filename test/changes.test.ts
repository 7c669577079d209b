/**
 * ChangeService.Subscribe against the real gateway and the suite's MariaDB
 * (row-based binlog): every golden type arrives exactly as the gateway reads
 * it, each transaction with the position its write returned; resuming from
 * any position gives exactly the later transactions; names come from the
 * binlog; large transactions arrive in parts; a stalled subscriber is ended
 * with the position to resume from while a hundred others keep up; a
 * credential sees only what it may read; a server without a binary log is
 * refused, naming the setting. (The binlog reader alone, and a MariaDB
 * restart under it: binlog-reader.test.ts; a restart under the gateway:
 * changes-restart.test.ts.)
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  ChangeOp,
  ChangeService,
  type SubscribeRequest,
  type SubscribeResponse,
  type Transaction,
  TransactionSchema,
} from "../gen/sqlgate/v1/changes_pb.js";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { ColumnType, type Row, RowSchema } from "../gen/sqlgate/v1/value_pb.js";
import { hashPassword } from "../server/auth/password-hash.js";
import { startEmbeddedMysql } from "../server/devdb/embedded-mysql.js";
import { startGateway, type TestGateway } from "./support/gateway.js";
import {
  columns as goldenColumns,
  rows as goldenRows,
  schema as goldenSchema,
} from "./support/golden.js";
import { createTestDatabase } from "./support/mysql.js";

type Init = Partial<Pick<SubscribeRequest, "tables" | "from" | "includeBefore" | "heartbeatMs">>;

/** A subscription that the test ends (clients must cancel: breaking out of a loop does not). */
function subscribe(
  client: ReturnType<typeof createClient<typeof ChangeService>>,
  request: Init,
  t: { after(fn: () => unknown): void },
) {
  const stop = new AbortController();
  t.after(() => stop.abort());
  // Idle streams say so quickly: heartbeats mark "caught up" in these tests.
  const messages = client
    .subscribe({ heartbeatMs: 200, ...request }, { signal: stop.signal })
    [Symbol.asyncIterator]();
  return {
    /** The next `count` transactions (heartbeats and schema changes skipped). */
    async transactions(count: number): Promise<Transaction[]> {
      const seen: Transaction[] = [];
      while (seen.length < count) {
        const next = await messages.next();
        if (next.done) throw new Error(`the stream ended after ${seen.length} of ${count}`);
        if (next.value.event.case === "transaction") seen.push(next.value.event.value);
      }
      return seen;
    },
    /** Messages up to and including the first heartbeat: what arrived before it went idle. */
    async untilIdle(): Promise<SubscribeResponse[]> {
      const seen: SubscribeResponse[] = [];
      for (;;) {
        const next = await messages.next();
        if (next.done) throw new Error("the stream ended");
        seen.push(next.value);
        if (next.value.event.case === "heartbeat") return seen;
      }
    },
    next: () => messages.next(),
    stop: () => stop.abort(),
  };
}

function clientsOf(gateway: TestGateway, authorization?: string) {
  const interceptors: Interceptor[] =
    authorization === undefined
      ? []
      : [
          (next) => (req) => {
            req.header.set("authorization", authorization);
            return next(req);
          },
        ];
  const transport = createConnectTransport({
    baseUrl: gateway.baseUrl,
    httpVersion: "2",
    interceptors,
  });
  return {
    changes: createClient(ChangeService, transport),
    database: createClient(DatabaseService, transport),
  };
}

describe("change streams", () => {
  let gateway: TestGateway;
  let client: ReturnType<typeof clientsOf>;
  let dbName: string;
  let url: string;
  let admin: Awaited<ReturnType<typeof createTestDatabase>>["admin"];
  const cleanups: (() => unknown)[] = [];
  const suite = { after: (fn: () => unknown) => cleanups.push(fn) };
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  before(async () => {
    const db = await createTestDatabase(suite);
    dbName = db.name;
    url = db.url;
    admin = db.admin;
    // Small enough for the stalled subscriber below to overflow, large enough
    // for 100 readers on a busy machine to keep within it.
    gateway = await startGateway(suite, db.url, { env: { SQLGATE_CHANGES_BUFFER: "60" } });
    client = clientsOf(gateway);
  });

  /** Runs `sql` through the gateway; its position. */
  const write = async (sql: string) => (await client.database.execute({ sql })).position;

  test("every golden type arrives exactly as the gateway reads it, each transaction with its write's position", async (t) => {
    await admin.query(goldenSchema);
    const stream = subscribe(client.changes, { tables: ["golden"], includeBefore: true }, t);
    // Binary responses are written straight to wire format: they must read the same.
    const binary = subscribe(
      createClient(
        ChangeService,
        createConnectTransport({
          baseUrl: gateway.baseUrl,
          httpVersion: "2",
          useBinaryFormat: true,
        }),
      ),
      { tables: ["golden"], includeBefore: true },
      t,
    );
    await Promise.all([stream.untilIdle(), binary.untilIdle()]);
    const read = async () =>
      (await client.database.execute({ sql: "SELECT * FROM golden ORDER BY id" })).rows;
    const { fields } = await client.database.execute({ sql: "SELECT * FROM golden LIMIT 0" });

    const inserted = await write(
      `INSERT INTO golden VALUES ${goldenRows.map((r) => `(${r.join(",")})`).join(",")}`,
    );
    const afterInsert = await read();
    const tx = await client.database.beginTransaction({});
    for (const sql of [
      "UPDATE golden SET biu = 0, vc = 'naïve 🎉', dec65 = -dec65, tm = '-00:00:00.000001' WHERE id = 1",
      "UPDATE golden SET vb = x'ff', js = '[1, 1e400]' WHERE id = 2",
    ]) {
      await client.database.execute({ sql, session: tx.session });
    }
    const updated = (await client.database.commitTransaction({ session: tx.session })).position;
    const afterUpdate = await read();
    const deleted = await write("DELETE FROM golden WHERE id = 3");

    const [insert, update, remove] = (await stream.transactions(3)) as [
      Transaction,
      Transaction,
      Transaction,
    ];
    assert.deepEqual(
      (await binary.transactions(3)).map((tx) => toJson(TransactionSchema, tx)),
      [insert, update, remove].map((tx) => toJson(TransactionSchema, tx)),
      "binary and JSON responses carry the same transactions",
    );
    assert.notEqual(inserted, "");
    assert.deepEqual(
      [insert.position, update.position, remove.position],
      [inserted, updated, deleted],
    );
    assert.ok(Math.abs(Number(insert.commitTime?.seconds) * 1000 - Date.now()) < 60_000);
    // Compared as JSON, which names the column (by index) and both values when one differs.
    // MariaDB's JSON is LONGTEXT to its binlog, which has no mark of JSON: the
    // text arrives exact, as a string.
    const asRead = (row: Row) =>
      toJson(RowSchema, row, { alwaysEmitImplicit: false }) as { values: object[] };
    const sameRow = (actual: unknown, expected: unknown, what: string) =>
      assert.deepEqual(
        actual === undefined ? undefined : asRead(actual as Row),
        expected === undefined
          ? undefined
          : {
              values: asRead(expected as Row).values.map((v) =>
                "jsonValue" in v ? { stringValue: v.jsonValue } : v,
              ),
            },
        what,
      );

    assert.equal(insert.changes.length, goldenRows.length);
    // Column types as a query reports them (MariaDB's JSON is TEXT to its binlog).
    assert.deepEqual(
      insert.changes[0]?.types,
      fields.map((f) => (f.type === ColumnType.JSON ? ColumnType.TEXT : f.type)),
    );
    insert.changes.forEach((change, i) => {
      assert.deepEqual(
        [change.database, change.table, change.op, change.columns],
        [dbName, "golden", ChangeOp.INSERT, goldenColumns],
      );
      assert.equal(change.before, undefined);
      sameRow(change.after, afterInsert[i], `inserted row ${i + 1}`);
    });
    assert.deepEqual(
      update.changes.map((c) => c.op),
      [ChangeOp.UPDATE, ChangeOp.UPDATE],
    );
    update.changes.forEach((change, i) => {
      sameRow(change.before, afterInsert[i], `row ${i + 1} before its update`);
      sameRow(change.after, afterUpdate[i], `row ${i + 1} after its update`);
    });
    const [gone] = remove.changes;
    assert.equal(gone?.op, ChangeOp.DELETE);
    assert.equal(gone?.after, undefined);
    sameRow(gone?.before, afterUpdate[2], "the deleted row");
  });

  test("resuming from any position delivers exactly the later transactions", async (t) => {
    await admin.query("CREATE TABLE resume (id INT PRIMARY KEY)");
    const positions = [];
    for (let id = 1; id <= 5; id++)
      positions.push(await write(`INSERT INTO resume VALUES (${id})`));
    for (const [i, from] of positions.entries()) {
      const stream = subscribe(client.changes, { tables: ["resume"], from, heartbeatMs: 200 }, t);
      const before = await stream.untilIdle();
      const delivered = before.flatMap((m) =>
        m.event.case === "transaction"
          ? [[m.event.value.position, m.event.value.changes[0]?.after?.values[0]?.kind.value]]
          : [],
      );
      assert.deepEqual(
        delivered,
        positions.slice(i + 1).map((position, j) => [position, BigInt(i + j + 2)]),
        `from ${from}`,
      );
      // Idle, it names the position it stands at: the last one, or past it
      // where other tests' transactions (other tables) came after.
      const idle = before.at(-1)?.event;
      const sequence = (position: string | undefined) => BigInt(position?.split("-")[2] ?? -1);
      assert.ok(
        sequence(idle?.case === "heartbeat" ? idle.value.position : "") >=
          sequence(positions.at(-1)),
        "the heartbeat stands at or past the last transaction",
      );
      stream.stop();
    }
  });

  test("a column renamed after a write keeps its old name for that write, and the DDL arrives", async (t) => {
    await admin.query("CREATE TABLE renamed (id INT PRIMARY KEY, old_name VARCHAR(10))");
    const from = await write("INSERT INTO renamed VALUES (0, 'before')");
    await write("INSERT INTO renamed VALUES (1, 'one')");
    await admin.query("ALTER TABLE renamed RENAME COLUMN old_name TO new_name");
    await write("INSERT INTO renamed VALUES (2, 'two')");
    const stream = subscribe(client.changes, { tables: [`${dbName}.renamed`], from }, t);
    const messages = [];
    while (messages.length < 3) {
      const next = await stream.next();
      if (next.done) assert.fail("the stream ended");
      if (next.value.event.case !== "heartbeat") messages.push(next.value.event);
    }
    const [first, ddl, second] = messages;
    assert.deepEqual(first?.case === "transaction" && first.value.changes[0]?.columns, [
      "id",
      "old_name",
    ]);
    assert.equal(ddl?.case, "schemaChange");
    assert.equal(ddl?.case === "schemaChange" && ddl.value.database, dbName);
    assert.match(ddl?.case === "schemaChange" ? ddl.value.sql : "", /RENAME COLUMN old_name/);
    assert.deepEqual(second?.case === "transaction" && second.value.changes[0]?.columns, [
      "id",
      "new_name",
    ]);
  });

  test("a large transaction arrives in ordered parts sharing its position", async (t) => {
    await admin.query("CREATE TABLE big (id INT PRIMARY KEY)");
    const stream = subscribe(client.changes, { tables: ["big"] }, t);
    await stream.untilIdle();
    const values = Array.from({ length: 2500 }, (_, i) => `(${i})`).join(",");
    const position = await write(`INSERT INTO big VALUES ${values}`);
    const parts = await stream.transactions(3);
    assert.deepEqual(
      parts.map((p) => [p.position, p.part, p.lastPart, p.changes.length]),
      [
        [position, 1, false, 1000],
        [position, 2, false, 1000],
        [position, 3, true, 500],
      ],
    );
    const ids = parts.flatMap((p) => p.changes.map((c) => c.after?.values[0]?.kind.value));
    assert.deepEqual(
      ids,
      Array.from({ length: 2500 }, (_, i) => BigInt(i)),
    );
  });

  test("a stalled subscriber is ended with the position to resume from, while 100 others keep up", async (t) => {
    await admin.query("CREATE TABLE burst (id INT PRIMARY KEY, pad VARCHAR(4000))");
    const others = Array.from({ length: 100 }, () =>
      subscribe(client.changes, { tables: ["burst"] }, t),
    );
    await Promise.all(others.map((s) => s.untilIdle()));
    const stalled = await stalledSubscriber(gateway, ["burst"]);
    t.after(() => stalled.close());
    const count = 150;
    // The others read as the writes go on, as live subscribers do.
    const reading = Promise.all(others.map((s) => s.transactions(count)));
    const positions: string[] = [];
    for (let id = 1; id <= count; id++) {
      positions.push(await write(`INSERT INTO burst VALUES (${id}, REPEAT('x', 4000))`));
    }
    const received = await reading;
    for (const seen of received)
      assert.deepEqual(
        seen.map((tx) => tx.position),
        positions,
      );

    const { delivered, error } = await stalled.readAll();
    assert.equal(error?.code, "resource_exhausted");
    assert.match(error?.message ?? "", /SQLGATE_CHANGES_BUFFER/);
    const resumeFrom = error?.metadata?.["sqlgate-resume-from"]?.[0] ?? "";
    assert.ok(delivered.length < count, "the stalled subscriber was ended early");
    assert.equal(resumeFrom, delivered.at(-1) ?? "");
    // Resuming where it was told gets the rest: all of them, once each.
    const resumed = subscribe(client.changes, { tables: ["burst"], from: resumeFrom }, t);
    const rest = await resumed.transactions(count - delivered.length);
    assert.deepEqual([...delivered, ...rest.map((tx) => tx.position)], positions);
  });

  test("a credential sees only the tables its MySQL account may read", async (t) => {
    await admin.query("CREATE TABLE open_t (id INT PRIMARY KEY)");
    await admin.query("CREATE TABLE closed_t (id INT PRIMARY KEY)");
    const user = `cdc_${dbName.slice(-8)}`;
    await admin.query(`CREATE USER '${user}'@'%' IDENTIFIED BY 'reader-pass'`);
    t.after(() => admin.query(`DROP USER IF EXISTS '${user}'@'%'`));
    await admin.query(`GRANT SELECT ON ${dbName}.open_t TO '${user}'@'%'`);
    const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-cdc-auth-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, "credentials.yaml");
    const entry = async (name: string, role: string, extra = "") =>
      `  - name: ${name}\n    password_hash: "${await hashPassword(`${name}-pw`)}"\n    role: ${role}\n${extra}`;
    writeFileSync(
      file,
      `credentials:\n${await entry("mapped", "read_only", `    mysql_user: ${user}\n    mysql_password: reader-pass\n`)}${await entry("ingester", "ingest_only")}${await entry("writer", "read_write")}`,
    );
    const secured = await startGateway(t, url, {
      env: { SQLGATE_CREDENTIALS_FILE: file },
    });
    const as = (name: string) =>
      clientsOf(secured, `Basic ${Buffer.from(`${name}:${name}-pw`).toString("base64")}`);

    const mapped = subscribe(as("mapped").changes, { tables: ["*"] }, t);
    const writer = subscribe(as("writer").changes, { tables: ["open_t", "closed_t"] }, t);
    await Promise.all([mapped.untilIdle(), writer.untilIdle()]);
    await write("INSERT INTO closed_t VALUES (1)");
    const last = await write("INSERT INTO open_t VALUES (1)");
    const [seen] = await mapped.transactions(1);
    assert.deepEqual([seen?.position, seen?.changes.map((c) => c.table)], [last, ["open_t"]]);
    const both = await writer.transactions(2);
    assert.deepEqual(
      both.map((tx) => tx.changes[0]?.table),
      ["closed_t", "open_t"],
    );
    const refused = await subscribe(as("ingester").changes, {}, t)
      .next()
      .then(
        () => assert.fail("an ingest_only credential subscribed"),
        (e: unknown) => ConnectError.from(e),
      );
    assert.equal(refused.code, Code.PermissionDenied);
    // Streams end before their gateway closes (it would wait for them).
    mapped.stop();
    writer.stop();
  });

  test("bad requests: a malformed position and a table pattern", async (t) => {
    const malformed = await subscribe(client.changes, { from: "not a position" }, t)
      .next()
      .then(
        () => assert.fail("subscribed"),
        (e: unknown) => ConnectError.from(e),
      );
    assert.equal(malformed.code, Code.InvalidArgument);
    const pattern = await subscribe(client.changes, { tables: ["db."] }, t)
      .next()
      .then(
        () => assert.fail("subscribed"),
        (e: unknown) => ConnectError.from(e),
      );
    assert.equal(pattern.code, Code.InvalidArgument);
  });
});

test("a stream whose client never reads does not keep the gateway open past its grace period", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGateway({ after() {} }, db.url, {
    env: { SQLGATE_SHUTDOWN_GRACE_MS: "300" },
  });
  const stalled = await stalledSubscriber(gateway, ["*"]);
  t.after(() => stalled.close());
  const closed = gateway.close().then(() => "closed");
  const stuck = new Promise((resolve) => setTimeout(() => resolve("still open"), 10_000).unref());
  assert.equal(await Promise.race([closed, stuck]), "closed");
  assert.equal(gateway.app.server.listening, false);
});

test("a server without a binary log: failed_precondition naming the setting", async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-nobinlog-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const mysql = await startEmbeddedMysql({ dataDir });
  t.after(() => mysql.stop());
  const gateway = await startGateway(t, mysql.url);
  const err = await subscribe(clientsOf(gateway).changes, {}, t)
    .next()
    .then(
      () => assert.fail("subscribed"),
      (e: unknown) => ConnectError.from(e),
    );
  assert.equal(err.code, Code.FailedPrecondition);
  assert.match(err.message, /log_bin/);
});

/** What a Connect end-of-stream message carries. */
interface EndOfStream {
  readonly error?: { readonly code: string; readonly message: string };
  readonly metadata?: Record<string, string[]>;
}

/**
 * A subscriber that reads its first message (the stream is up) and then
 * nothing, over a connection of its own, with HTTP/2 flow control holding
 * the gateway back as a slow reader over a slow network would.
 */
async function stalledSubscriber(gateway: TestGateway, tables: string[]) {
  const session = http2.connect(gateway.baseUrl);
  const stream = session.request({
    ":method": "POST",
    ":path": "/sqlgate.v1.ChangeService/Subscribe",
    "content-type": "application/connect+json",
    "connect-protocol-version": "1",
  });
  const body = Buffer.from(JSON.stringify({ tables, heartbeatMs: 100 }));
  const envelope = Buffer.alloc(5 + body.length);
  envelope.writeUInt32BE(body.length, 1);
  body.copy(envelope, 5);
  stream.end(envelope);
  let buffered = Buffer.alloc(0);
  const delivered: string[] = [];
  let end: EndOfStream | undefined;
  const take = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
      const size = buffered.readUInt32BE(1);
      const message = JSON.parse(buffered.subarray(5, 5 + size).toString("utf8"));
      if ((buffered[0] ?? 0) & 0x02) end = message as EndOfStream;
      else if (message.transaction) delivered.push(message.transaction.position);
      buffered = buffered.subarray(5 + size);
    }
  };
  // The first message: a heartbeat once the stream is up.
  await new Promise<void>((resolve, reject) => {
    stream.once("error", reject);
    stream.once("data", (chunk: Buffer) => {
      take(chunk);
      stream.pause();
      resolve();
    });
  });
  return {
    /** Reads what the gateway sent, to the end of the stream. */
    async readAll() {
      stream.on("data", take);
      stream.resume();
      await new Promise((resolve) => stream.once("end", resolve));
      return {
        delivered,
        error: end?.error ? { ...end.error, metadata: end.metadata } : undefined,
      };
    },
    close() {
      session.destroy();
    },
  };
}

test("table patterns: a credential confined to one database names no other", async () => {
  const { tableFilter } = await import("../server/changes/table-filter.js");
  assert.throws(() => tableFilter(["other.t"], "mine", "mine"), /outside database mine/);
  const confined = tableFilter(["*"], "mine", "mine");
  assert.ok(confined.matches("mine", "t") && !confined.matches("other", "t"));
  const open = tableFilter(["a.*", "t"], "mine", undefined);
  assert.ok(open.matches("a", "x") && open.matches("mine", "t") && !open.matches("mine", "u"));
  assert.ok(open.followsDatabase("a") && !open.followsDatabase("b"));
});
