/**
 * StreamExecute: large results in chunks over every protocol, backpressure
 * down to MySQL for a reader that stalls, deadlines and early cancellation.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { DatabaseService, StreamExecuteRequestSchema } from "../gen/sqlgate/v1/database_pb.js";
import { ColumnType } from "../gen/sqlgate/v1/value_pb.js";
import { databaseClient } from "./support/clients.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase, runningStatements, waitUntilGone } from "./support/mysql.js";

test("100,000 rows arrive complete and in order over Connect, gRPC and gRPC-Web", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url);
  const transports: [string, Transport][] = [
    [
      "Connect h2c",
      createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion: "2", useBinaryFormat: true }),
    ],
    [
      "Connect JSON HTTP/1.1",
      createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion: "1.1" }),
    ],
    ["gRPC", createGrpcTransport({ baseUrl: gateway.baseUrl })],
    ["gRPC-Web HTTP/1.1", createGrpcWebTransport({ baseUrl: gateway.baseUrl, httpVersion: "1.1" })],
  ];
  for (const [name, transport] of transports) {
    const client = createClient(DatabaseService, transport);
    let next = 1n;
    let messages = 0;
    for await (const message of client.streamExecute({
      sql: "SELECT seq, CONCAT('row ', seq) AS label FROM seq_1_to_100000",
    })) {
      if (messages === 0) {
        assert.deepEqual(
          message.fields.map((f) => [f.name, f.type]),
          [
            ["seq", ColumnType.BIGINT],
            ["label", ColumnType.VARCHAR],
          ],
          name,
        );
      } else {
        assert.equal(message.fields.length, 0, `${name}: fields only in the first message`);
      }
      messages++;
      for (const row of message.rows) {
        assert.equal(row.values[0]?.kind.value, next, name);
        assert.equal(row.values[1]?.kind.value, `row ${next}`, name);
        next++;
      }
    }
    assert.equal(next, 100_001n, name);
    assert.ok(messages > 10, `${name}: ${messages} messages`);
  }
});

test("DML through StreamExecute reports rows affected in its last message", async (t) => {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)");
  const gateway = await startGateway(t, db.url);
  const client = databaseClient(gateway.baseUrl);
  const messages = [];
  for await (const m of client.streamExecute({
    sql: "INSERT INTO t (v) SELECT seq FROM seq_1_to_5",
  })) {
    messages.push(m);
  }
  assert.equal(messages.at(-1)?.rowsAffected, 5n);
  assert.equal(messages.at(-1)?.lastInsertId, 1n);
});

test("a stalled reader stalls MySQL, not the gateway's heap", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url);
  const client = databaseClient(gateway.baseUrl);
  const abort = new AbortController();
  const stream = client
    .streamExecute(
      { sql: "SELECT seq, REPEAT('x', 100) AS pad, 'stall_marker' FROM seq_1_to_10000000" },
      { signal: abort.signal },
    )
    [Symbol.asyncIterator]();
  const first = await stream.next();
  assert.equal(first.done, false);
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  // Unread, 10 million rows of ~120 bytes would be ~1.2 GB: MySQL must be held back.
  await new Promise((r) => setTimeout(r, 2000));
  const grownMb = (process.memoryUsage().heapUsed - heapBefore) / 1e6;
  assert.ok(grownMb < 100, `heap grew by ${grownMb.toFixed(1)} MB while the reader stalled`);
  assert.equal(
    await runningStatements(db.admin, "stall_marker"),
    1,
    "the statement waits on MySQL",
  );
  // Reading resumes where it stopped.
  const second = await stream.next();
  assert.equal(second.done, false);
  abort.abort();
  await stream.return?.();
  const until = Date.now() + 3000;
  while ((await runningStatements(db.admin, "stall_marker")) > 0) {
    assert.ok(Date.now() < until, "the abandoned statement was killed");
    await new Promise((r) => setTimeout(r, 50));
  }
});

test("a stream's deadline kills its statement", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url);
  const client = databaseClient(gateway.baseUrl);
  const started = Date.now();
  await assert.rejects(
    (async () => {
      for await (const _ of client.streamExecute(
        { sql: "SELECT SLEEP(30) AS stream_deadline_marker" },
        { timeoutMs: 200 },
      )) {
        // no rows expected
      }
    })(),
    (err) => err instanceof ConnectError && err.code === Code.DeadlineExceeded,
  );
  assert.ok(Date.now() - started < 1500);
  const until = Date.now() + 1000;
  while ((await runningStatements(db.admin, "stream_deadline_marker")) > 0) {
    assert.ok(Date.now() < until, "the statement was killed within a second");
    await new Promise((r) => setTimeout(r, 20));
  }
});

test("a stream inside a transaction sees its uncommitted writes", async (t) => {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE t (id INT PRIMARY KEY)");
  const gateway = await startGateway(t, db.url);
  const client = databaseClient(gateway.baseUrl);
  const { session } = await client.beginTransaction({});
  await client.execute({ sql: "INSERT INTO t SELECT seq FROM seq_1_to_3000", session });
  let rows = 0;
  for await (const m of client.streamExecute({ sql: "SELECT id FROM t", session }))
    rows += m.rows.length;
  assert.equal(rows, 3000);
  await client.rollbackTransaction({ session });
});

test("a client that vanishes from a stalled stream gives its connection back", async (t) => {
  const db = await createTestDatabase(t);
  // One pooled connection: the stream holds it; later calls need it back.
  const gateway = await startGateway(t, db.url, { env: { SQLGATE_POOL_SIZE: "1" } });
  const client = databaseClient(gateway.baseUrl);
  const session = http2.connect(gateway.baseUrl);
  session.on("error", () => {});
  const request = create(StreamExecuteRequestSchema, {
    sql: "SELECT seq, REPEAT('x', 500) AS pad FROM seq_1_to_200000",
  });
  const message = toBinary(StreamExecuteRequestSchema, request);
  const envelope = Buffer.alloc(5 + message.length);
  envelope.writeUInt32BE(message.length, 1);
  envelope.set(message, 5);
  const stream = session.request({
    ":method": "POST",
    ":path": "/sqlgate.v1.DatabaseService/StreamExecute",
    "content-type": "application/connect+proto",
    "connect-protocol-version": "1",
  });
  stream.on("error", () => {});
  stream.end(envelope);
  // Read one chunk, then stop reading: the gateway waits on HTTP/2 flow control.
  await new Promise<void>((resolve) => stream.once("data", () => resolve()));
  stream.pause();
  await new Promise((r) => setTimeout(r, 500));
  session.destroy();
  const until = Date.now() + 5000;
  for (;;) {
    try {
      const response = await client.execute({ sql: "SELECT 1" }, { timeoutMs: 1000 });
      assert.equal(response.rows.length, 1);
      break;
    } catch (err) {
      assert.ok(Date.now() < until, `the connection never came back: ${String(err)}`);
    }
  }
  await waitUntilGone(db.admin, "REPEAT('x', 500)");
});
