/**
 * The JetStream change sink against a real NATS server and the suite's
 * MariaDB: each transaction is published per table on its subject, with its
 * position as Nats-Msg-Id, DDL on the schema subject, the gateway's own
 * tables never; a restart resumes from the position kept in MySQL; and with
 * two gateway processes, a SIGKILL of the publisher and a graceful stop of
 * the next hand over with every transaction in the stream exactly once.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { fromBinary } from "@bufbuild/protobuf";
import { jetstreamManager, type StoredMsg } from "@nats-io/jetstream";
import {
  ChangeOp,
  SchemaChangeSchema,
  type Transaction,
  TransactionSchema,
} from "../gen/sqlgate/v1/changes_pb.js";
import { startGateway, type TestGateway } from "./support/gateway.js";
import { type GatewayChild, startGatewayChild } from "./support/gateway-process.js";
import { createTestDatabase } from "./support/mysql.js";
import { connectNats, natsStreamInfo, startNats } from "./support/nats.js";

async function until(what: string, done: () => boolean | Promise<boolean>, withinMs = 20_000) {
  const deadline = Date.now() + withinMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}

/** Every message of `stream`, in order. */
async function storedMessages(
  t: { after(fn: () => unknown): void },
  servers: string,
  stream: string,
): Promise<StoredMsg[]> {
  const jsm = await jetstreamManager(await connectNats(t, servers));
  const { state } = await jsm.streams.info(stream);
  const messages: StoredMsg[] = [];
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
    const message = await jsm.streams.getMessage(stream, { seq });
    if (message !== null) messages.push(message);
  }
  return messages;
}

const streamName = () => `CHANGES_${randomBytes(4).toString("hex")}`;

test("each transaction is published per table with its position as Nats-Msg-Id; a restart resumes where it was", async (t) => {
  const nats = await startNats(t);
  const { url, name: db, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20))");
  await admin.query("CREATE TABLE b (id INT PRIMARY KEY)");
  const stream = streamName();
  const env = {
    SQLGATE_CHANGES_SINK: nats.serversOption,
    SQLGATE_CHANGES_SINK_STREAM: stream,
    SQLGATE_CHANGES_SINK_TABLES: `${db}.*`,
  };
  let gateway: TestGateway | undefined = await startGateway(t, url, { env });
  await until("the gateway to publish", () => gateway?.changeSink()?.status().leader === true);
  const lastGtid = async () =>
    ((await admin.query("SELECT @@last_gtid AS p")) as unknown as [[{ p: string }]])[0][0].p;

  await admin.query("BEGIN");
  await admin.query("INSERT INTO a VALUES (1, 'one')");
  await admin.query("INSERT INTO b VALUES (1)");
  await admin.query("COMMIT");
  const both = await lastGtid();
  await admin.query("UPDATE a SET v = 'uno' WHERE id = 1");
  const updated = await lastGtid();
  await admin.query(
    `INSERT INTO b VALUES ${Array.from({ length: 2500 }, (_, i) => `(${i + 2})`).join(",")}`,
  );
  const big = await lastGtid();
  await admin.query("ALTER TABLE a ADD COLUMN c INT");
  const ddl = await lastGtid();
  await admin.query("DELETE FROM a WHERE id = 1");
  const deleted = await lastGtid();

  const expected: [string, string, string][] = [
    [`sqlgate.changes.${db}.a`, both, `${both}/${db}.a/0`],
    [`sqlgate.changes.${db}.b`, both, `${both}/${db}.b/0`],
    [`sqlgate.changes.${db}.a`, updated, `${updated}/${db}.a/0`],
    [`sqlgate.changes.${db}.b`, big, `${big}/${db}.b/1`],
    [`sqlgate.changes.${db}.b`, big, `${big}/${db}.b/2`],
    [`sqlgate.changes.${db}.b`, big, `${big}/${db}.b/3`],
    [`sqlgate.schema.${db}`, ddl, `${ddl}/schema`],
    [`sqlgate.changes.${db}.a`, deleted, `${deleted}/${db}.a/0`],
  ];
  await until(
    "every message",
    async () =>
      (await natsStreamInfo(nats.serversOption, stream)).state.messages >= expected.length,
  );
  const messages = await storedMessages(t, nats.serversOption, stream);
  assert.deepEqual(
    messages.map((m) => [
      m.subject,
      m.header?.get("Sqlgate-Position"),
      m.header?.get("Nats-Msg-Id"),
    ]),
    expected,
  );
  const tx = (i: number): Transaction =>
    fromBinary(TransactionSchema, messages[i]?.data ?? new Uint8Array());
  assert.deepEqual(
    [
      tx(0).position,
      tx(0).changes.map((c) => [c.table, c.op, c.after?.values.map((v) => v.kind.value)]),
    ],
    [both, [["a", ChangeOp.INSERT, [1n, "one"]]]],
  );
  // The sink carries the row before an update.
  assert.deepEqual(
    [
      tx(2).changes[0]?.before?.values[1]?.kind.value,
      tx(2).changes[0]?.after?.values[1]?.kind.value,
    ],
    ["one", "uno"],
  );
  assert.deepEqual(
    [3, 4, 5].map((i) => [tx(i).part, tx(i).lastPart, tx(i).changes.length]),
    [
      [1, false, 1000],
      [2, false, 1000],
      [3, true, 500],
    ],
  );
  const schema = fromBinary(SchemaChangeSchema, messages[6]?.data ?? new Uint8Array());
  assert.match(schema.sql, /ADD COLUMN c/);
  assert.equal(tx(7).changes[0]?.op, ChangeOp.DELETE);

  // Stopped, it keeps the position in MySQL; started again, it goes on from there.
  await until("the position saved", () => gateway?.changeSink()?.status().position === deleted);
  await gateway.close();
  gateway = undefined;
  const [[saved]] = (await admin.query("SELECT position FROM sqlgate_changes_sink WHERE sink = ?", [
    stream,
  ])) as unknown as [[{ position: string }]];
  assert.equal(saved.position, deleted);
  await admin.query("INSERT INTO b VALUES (9999)");
  const whileAway = await lastGtid();
  const again = await startGateway(t, url, { env });
  await admin.query("INSERT INTO a VALUES (2, 'two', NULL)");
  const after = await lastGtid();
  await until(
    "the later messages",
    async () =>
      (await natsStreamInfo(nats.serversOption, stream)).state.messages >= expected.length + 2,
  );
  const later = (await storedMessages(t, nats.serversOption, stream)).slice(expected.length);
  assert.deepEqual(
    later.map((m) => m.header?.get("Sqlgate-Position")),
    [whileAway, after],
  );
  assert.equal(again.changeSink()?.status().duplicates, 0);
});

test("a SIGKILL of the publisher and a graceful stop of the next: every transaction in the stream exactly once", async (t) => {
  const nats = await startNats(t);
  const { url, name: db, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE ticks (id INT PRIMARY KEY)");
  const stream = streamName();
  const env = {
    SQLGATE_MYSQL_URL: url,
    SQLGATE_CHANGES_SINK: nats.serversOption,
    SQLGATE_CHANGES_SINK_STREAM: stream,
    SQLGATE_CHANGES_SINK_TABLES: `${db}.ticks`,
    SQLGATE_LOG_LEVEL: "info",
  };
  const isLeader = async (g: GatewayChild) => {
    const text = await fetch(`${g.baseUrl}/metrics`).then(
      (r) => r.text(),
      () => "",
    );
    return /^sqlgate_changes_sink_leader 1$/m.test(text);
  };
  const first = await startGatewayChild(t, env);
  const second = await startGatewayChild(t, env);
  await until("a publisher", async () => (await isLeader(first)) || (await isLeader(second)));
  const [leader, standby] = (await isLeader(first)) ? [first, second] : [second, first];
  assert.equal(await isLeader(standby), false, "one publisher at a time");

  let written = 0;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      written += 1;
      await admin.query("INSERT INTO ticks VALUES (?)", [written]);
    }
  })();
  const published = async () => (await natsStreamInfo(nats.serversOption, stream)).state.messages;
  await until("some published", async () => (await published()) >= 100);
  leader.child.kill("SIGKILL");
  await leader.exited;
  await until("the standby to take over", () => isLeader(standby));
  const afterKill = written;
  await until("more published", async () => (await published()) >= afterKill + 50);

  // A third gateway waits; the second stops gracefully and hands over.
  const third = await startGatewayChild(t, env);
  standby.child.kill("SIGTERM");
  assert.equal(await standby.exited, 0);
  await until("the third to take over", () => isLeader(third));
  const target = written + 100;
  await until("more published", async () => (await published()) >= target);
  writing = false;
  await writer;
  await until("every row published", async () => (await published()) >= written, 30_000);
  await delay(500);

  const messages = (await storedMessages(t, nats.serversOption, stream)).filter((m) =>
    m.subject.startsWith("sqlgate.changes."),
  );
  const ids = messages.map(
    (m) => fromBinary(TransactionSchema, m.data).changes[0]?.after?.values[0]?.kind.value,
  );
  assert.deepEqual(
    ids,
    Array.from({ length: written }, (_, i) => BigInt(i + 1)),
    "every row once, in commit order",
  );
  assert.equal(new Set(messages.map((m) => m.header?.get("Nats-Msg-Id"))).size, written);
});
