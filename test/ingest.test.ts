/**
 * IngestService against real MariaDB and the real gateway: values land
 * exactly, calls are merged into few transactions, one bad call among many
 * fails alone, conflict policies, idempotency keys, retries after a timeout,
 * client streaming, and the bounded buffer.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import {
  Durability,
  IngestService,
  OnConflict,
  type WriteRequestSchema,
  type WriteStreamRequest,
  WriteStreamRequestSchema,
} from "../gen/sqlgate/v1/ingest_pb.js";
import { LimitExceededSchema, type RowSchema, SqlErrorSchema } from "../gen/sqlgate/v1/value_pb.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

type RowInit = MessageInitShape<typeof RowSchema>;

const int = (n: number | bigint) => ({ kind: { case: "int64Value" as const, value: BigInt(n) } });
const str = (s: string) => ({ kind: { case: "stringValue" as const, value: s } });

function ingestClient(baseUrl: string, httpVersion: "1.1" | "2" = "2") {
  return createClient(IngestService, createConnectTransport({ baseUrl, httpVersion }));
}

async function count(
  admin: { query(sql: string): Promise<unknown> },
  sql: string,
): Promise<number> {
  const [rows] = (await admin.query(sql)) as [{ n: number | string }[]];
  return Number(rows[0]?.n);
}

test("Write stores every kind of value exactly", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query(`CREATE TABLE everything (
    id BIGINT UNSIGNED PRIMARY KEY, big BIGINT, s VARCHAR(100), b VARBINARY(20), d DECIMAL(30,10),
    f DOUBLE, dt DATETIME(6), j JSON, flag BOOLEAN, n INT NULL)`);
  const gateway = await startGateway(t, url);
  for (const client of [
    ingestClient(gateway.baseUrl, "1.1"),
    createClient(IngestService, createGrpcTransport({ baseUrl: gateway.baseUrl })),
    createClient(
      IngestService,
      createConnectTransport({
        baseUrl: gateway.baseUrl,
        httpVersion: "1.1",
        useBinaryFormat: false,
      }),
    ),
  ]) {
    await admin.query("DELETE FROM everything");
    const tricky = "it's a \\ back'slash\u0000 and ünïcødé 🚀 '); DROP TABLE everything; --";
    const response = await client.write({
      table: "everything",
      columns: ["id", "big", "s", "b", "d", "f", "dt", "j", "flag", "n"],
      rows: [
        {
          values: [
            { kind: { case: "uint64Value", value: 18446744073709551615n } },
            int(-9223372036854775808n),
            str(tricky),
            { kind: { case: "bytesValue", value: new Uint8Array([0, 39, 92, 255]) } },
            { kind: { case: "decimalValue", value: "12345678901234567890.0123456789" } },
            { kind: { case: "float64Value", value: 0.1 } },
            { kind: { case: "temporalValue", value: "2024-02-29 23:59:59.123456" } },
            { kind: { case: "jsonValue", value: '{"a": [1, "x\'y"]}' } },
            { kind: { case: "boolValue", value: true } },
            { kind: { case: "nullValue", value: 0 } },
          ],
        },
      ],
    });
    assert.equal(response.rowsWritten, 1n);
    assert.equal(response.batches, 1);
    const [rows] = (await admin.query({
      sql: "SELECT CAST(id AS CHAR) id, CAST(big AS CHAR) big, s, HEX(b) b, CAST(d AS CHAR) d, f, CAST(dt AS CHAR) dt, CAST(j AS CHAR) j, flag, n FROM everything",
    })) as unknown as [Record<string, unknown>[]];
    assert.deepEqual(rows[0], {
      id: "18446744073709551615",
      big: "-9223372036854775808",
      s: tricky,
      b: "00275CFF",
      d: "12345678901234567890.0123456789",
      f: 0.1,
      dt: "2024-02-29 23:59:59.123456",
      j: '{"a": [1, "x\'y"]}',
      flag: 1,
      n: null,
    });
  }
});

test("a wrong table, column or row shape is refused before anything is written", async (t) => {
  const { url, admin, name } = await createTestDatabase(t);
  await admin.query("CREATE TABLE points (id INT PRIMARY KEY, v INT, g INT AS (v + 1))");
  const gateway = await startGateway(t, url);
  const client = ingestClient(gateway.baseUrl);
  const cases: [MessageInitShape<typeof WriteRequestSchema>, Code, RegExp][] = [
    [
      { table: "nope", columns: ["id"], rows: [{ values: [int(1)] }] },
      Code.NotFound,
      /does not exist/,
    ],
    [
      { table: "other_db.points", columns: ["id"], rows: [{ values: [int(1)] }] },
      Code.NotFound,
      /does not exist/,
    ],
    [
      { table: "points", columns: ["id", "missing"], rows: [{ values: [int(1), int(2)] }] },
      Code.InvalidArgument,
      /no column `missing`/,
    ],
    [
      { table: "points", columns: ["id", "g"], rows: [{ values: [int(1), int(2)] }] },
      Code.InvalidArgument,
      /generated/,
    ],
    [
      { table: "points", columns: ["id", "ID"], rows: [{ values: [int(1), int(2)] }] },
      Code.InvalidArgument,
      /named twice/,
    ],
    [
      {
        table: "points",
        columns: ["id", "v"],
        rows: [{ values: [int(1), int(2)] }, { values: [int(2)] }],
      },
      Code.InvalidArgument,
      /row 1 has 1 value/,
    ],
    [{ table: "points", columns: ["id"], rows: [] }, Code.InvalidArgument, /no rows/],
    [
      { table: "points", columns: ["id"], rows: [{ values: [{}] }] },
      Code.InvalidArgument,
      /no value set/,
    ],
    [
      {
        table: "points",
        columns: ["id"],
        rows: [{ values: [{ kind: { case: "decimalValue", value: "1; DROP" } }] }],
      },
      Code.InvalidArgument,
      /not a decimal/,
    ],
    [
      { table: "a.b.c", columns: ["id"], rows: [{ values: [int(1)] }] },
      Code.InvalidArgument,
      /malformed table name/,
    ],
    [
      {
        table: "points",
        columns: ["id"],
        rows: [{ values: [int(1)] }],
        idempotencyKey: "k".repeat(256),
      },
      Code.InvalidArgument,
      /longer than 255/,
    ],
  ];
  for (const [request, code, message] of cases) {
    await assert.rejects(client.write(request), (err: unknown) => {
      assert.ok(err instanceof ConnectError);
      assert.equal(err.code, code, `${JSON.stringify(request.table)}: ${err.message}`);
      assert.match(err.message, message);
      return true;
    });
  }
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM points"), 0);
  // Qualified and quoted names work, and a column added later is found.
  await admin.query("ALTER TABLE points ADD COLUMN w INT");
  const ok = await client.write({
    table: `\`${name}\`.\`points\``,
    columns: ["ID", "w"],
    rows: [{ values: [int(7), int(8)] }],
  });
  assert.equal(ok.rowsWritten, 1n);
  assert.equal(await count(admin, "SELECT w n FROM points WHERE id = 7"), 8);
});

test("concurrent single-row Writes are merged into few transactions", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE readings (id INT PRIMARY KEY, device VARCHAR(20), v DOUBLE)");
  const gateway = await startGateway(t, url, { env: { SQLGATE_INGEST_MAX_DELAY_MS: "20" } });
  const client = ingestClient(gateway.baseUrl);
  const calls = 1000;
  const before = gateway.ingest.stats().batches;
  const responses = await Promise.all(
    Array.from({ length: calls }, (_, i) =>
      client.write({
        table: "readings",
        columns: ["id", "device", "v"],
        rows: [
          { values: [int(i), str(`d${i % 7}`), { kind: { case: "float64Value", value: i / 4 } }] },
        ],
      }),
    ),
  );
  assert.ok(responses.every((r) => r.rowsWritten === 1n && r.batches === 1));
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM readings"), calls);
  assert.equal(await count(admin, "SELECT SUM(v * 4) n FROM readings"), (calls * (calls - 1)) / 2);
  const batches = gateway.ingest.stats().batches - before;
  assert.ok(batches <= calls / 10, `${calls} calls took ${batches} batches`);
});

test("one bad call among many fails alone, with MySQL's error; its neighbours are written", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(10) NOT NULL)");
  await admin.query("INSERT INTO items VALUES (5000, 'existing')");
  const gateway = await startGateway(t, url, { env: { SQLGATE_INGEST_MAX_DELAY_MS: "50" } });
  const client = ingestClient(gateway.baseUrl);
  const write = (rows: RowInit[]) =>
    client.write({ table: "items", columns: ["id", "name"], rows });
  const good = Array.from({ length: 300 }, (_, i) =>
    write([{ values: [int(i * 2), str("a")] }, { values: [int(i * 2 + 1), str("b")] }]),
  );
  const duplicate = write([
    { values: [int(9000), str("new")] },
    { values: [int(5000), str("dup")] },
  ]);
  const tooLong = write([{ values: [int(9001), str("far too long for ten")] }]);
  const nullName = write([{ values: [int(9002), { kind: { case: "nullValue", value: 0 } }] }]);
  const results = await Promise.allSettled([...good, duplicate, tooLong, nullName]);
  assert.equal(results.slice(0, 300).filter((r) => r.status === "fulfilled").length, 300);
  const failure = (r: PromiseSettledResult<unknown> | undefined) => {
    assert.equal(r?.status, "rejected");
    return ConnectError.from((r as PromiseRejectedResult).reason);
  };
  const dup = failure(results[300]);
  assert.equal(dup.code, Code.AlreadyExists, dup.message);
  assert.equal(dup.findDetails(SqlErrorSchema)[0]?.errno, 1062);
  const long = failure(results[301]);
  assert.equal(long.code, Code.InvalidArgument, long.message);
  assert.equal(long.findDetails(SqlErrorSchema)[0]?.errno, 1406);
  assert.equal(failure(results[302]).findDetails(SqlErrorSchema)[0]?.errno, 1048);
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM items"), 601);
  assert.equal(
    await count(admin, "SELECT COUNT(*) n FROM items WHERE id >= 9000"),
    0,
    "a failed call writes none of its rows",
  );
});

test("on_conflict: ERROR fails, IGNORE keeps the old row, UPDATE replaces non-key columns", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query(
    "CREATE TABLE kv (k VARCHAR(10) PRIMARY KEY, v INT, note VARCHAR(10), UNIQUE KEY (note))",
  );
  await admin.query("INSERT INTO kv VALUES ('a', 1, 'n1')");
  const gateway = await startGateway(t, url);
  const client = ingestClient(gateway.baseUrl);
  const rows = [
    { values: [str("a"), int(2), str("n1")] },
    { values: [str("b"), int(3), str("n2")] },
  ];
  const base = { table: "kv", columns: ["k", "v", "note"], rows };
  await assert.rejects(client.write(base), (err: ConnectError) => err.code === Code.AlreadyExists);
  await assert.rejects(
    client.write({ ...base, onConflict: OnConflict.ERROR }),
    (err: ConnectError) => err.code === Code.AlreadyExists,
  );
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM kv"), 1);

  const ignored = await client.write({ ...base, onConflict: OnConflict.IGNORE });
  assert.equal(ignored.rowsWritten, 2n);
  const [afterIgnore] = (await admin.query("SELECT k, v, note FROM kv ORDER BY k")) as unknown as [
    unknown[],
  ];
  assert.deepEqual(afterIgnore, [
    { k: "a", v: 1, note: "n1" },
    { k: "b", v: 3, note: "n2" },
  ]);

  await client.write({
    ...base,
    rows: [{ values: [str("a"), int(10), str("n1")] }],
    onConflict: OnConflict.UPDATE,
  });
  const [afterUpdate] = (await admin.query("SELECT k, v, note FROM kv ORDER BY k")) as unknown as [
    unknown[],
  ];
  assert.deepEqual(afterUpdate, [
    { k: "a", v: 10, note: "n1" },
    { k: "b", v: 3, note: "n2" },
  ]);
  // IGNORE is not INSERT IGNORE: a bad value still fails instead of being truncated.
  await assert.rejects(
    client.write({
      table: "kv",
      columns: ["k", "v"],
      rows: [{ values: [str("far too long key"), int(1)] }],
      onConflict: OnConflict.IGNORE,
    }),
    (err: ConnectError) => err.findDetails(SqlErrorSchema)[0]?.errno === 1406,
  );
});

test("an idempotency key applies its batch once, however often and concurrently it is sent", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE events (id INT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(20))");
  const gateway = await startGateway(t, url);
  const client = ingestClient(gateway.baseUrl);
  const request = {
    table: "events",
    columns: ["body"],
    rows: [{ values: [str("x")] }, { values: [str("y")] }],
    idempotencyKey: "batch-1",
  };
  const first = await client.write(request);
  assert.deepEqual([first.rowsWritten, first.batches, first.duplicateBatches], [2n, 1, 0]);
  const again = await client.write(request);
  assert.deepEqual([again.rowsWritten, again.batches, again.duplicateBatches], [0n, 0, 1]);
  const racing = await Promise.all(
    Array.from({ length: 20 }, () => client.write({ ...request, idempotencyKey: "batch-2" })),
  );
  assert.equal(racing.filter((r) => r.duplicateBatches === 0).length, 1);
  assert.equal(racing.filter((r) => r.duplicateBatches === 1).length, 19);
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM events"), 4);
  // A second gateway (another replica) shares the keys through MySQL.
  const other = await startGateway(t, url);
  const fromOther = await ingestClient(other.baseUrl).write(request);
  assert.equal(fromOther.duplicateBatches, 1);
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM events"), 4);
});

test("a retry of a call that timed out after its batch committed is applied once", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(20))");
  const gateway = await startGateway(t, url);
  const client = ingestClient(gateway.baseUrl);
  const request = {
    table: "orders",
    columns: ["item"],
    rows: [{ values: [str("book")] }],
    idempotencyKey: "order-77",
  };
  // Hold the table so that the batch waits, past the caller's deadline.
  await admin.query("LOCK TABLES orders WRITE");
  try {
    await assert.rejects(client.write(request, { timeoutMs: 300 }), (err: ConnectError) => {
      assert.equal(err.code, Code.DeadlineExceeded, err.message);
      return true;
    });
  } finally {
    await admin.query("UNLOCK TABLES");
  }
  for (let i = 0; (await count(admin, "SELECT COUNT(*) n FROM orders")) === 0; i++) {
    assert.ok(i < 100, "the batch never committed");
    await new Promise((r) => setTimeout(r, 50));
  }
  const retry = await client.write(request);
  assert.equal(retry.duplicateBatches, 1);
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM orders"), 1);
});

test("WriteStream writes many chunks in large batches and sums them up", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE samples (id INT PRIMARY KEY, v BIGINT)");
  const gateway = await startGateway(t, url);
  const client = ingestClient(gateway.baseUrl);
  const chunks = 200;
  const perChunk = 500;
  async function* requests(): AsyncGenerator<WriteStreamRequest> {
    for (let c = 0; c < chunks; c++) {
      yield create(WriteStreamRequestSchema, {
        ...(c === 0 ? { table: "samples", columns: ["id", "v"] } : {}),
        rows: Array.from({ length: perChunk }, (_, i) => ({
          values: [int(c * perChunk + i), int(c)],
        })),
        idempotencyKey: `stream-1:${c}`,
      });
    }
  }
  const before = gateway.ingest.stats().batches;
  const summary = await client.writeStream(requests());
  assert.equal(summary.rowsWritten, BigInt(chunks * perChunk));
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM samples"), chunks * perChunk);
  // Chunks share transactions, and the summary counts transactions, not chunks.
  assert.equal(summary.batches, gateway.ingest.stats().batches - before);
  assert.ok(summary.batches < chunks, `${chunks} chunks took ${summary.batches} batches`);
  // The same stream again: every chunk is a duplicate, nothing is written twice.
  const replay = await client.writeStream(requests());
  assert.deepEqual([replay.rowsWritten, replay.duplicateBatches], [0n, chunks]);
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM samples"), chunks * perChunk);
});

test("WriteStream: while MySQL is held up, flow control holds the sender back", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE flow (id INT PRIMARY KEY, pad VARCHAR(200))");
  const gateway = await startGateway(t, url);
  const client = ingestClient(gateway.baseUrl);
  const chunks = 400;
  const perChunk = 500;
  const pad = str("x".repeat(100));
  let produced = 0;
  async function* requests(): AsyncGenerator<WriteStreamRequest> {
    for (let c = 0; c < chunks; c++) {
      produced++;
      yield create(WriteStreamRequestSchema, {
        table: "flow",
        columns: ["id", "pad"],
        rows: Array.from({ length: perChunk }, (_, i) => ({
          values: [int(c * perChunk + i), pad],
        })),
      });
    }
  }
  await admin.query("LOCK TABLES flow WRITE");
  let call: Promise<unknown> | undefined;
  try {
    call = client.writeStream(requests());
    await new Promise((r) => setTimeout(r, 1500));
    // 400 chunks are ~24 MB; while MySQL takes none, the gateway reads only a window of them.
    assert.ok(produced < 150, `the sender produced ${produced} chunks while MySQL was held`);
    assert.ok(gateway.ingest.stats().bufferedBytes < 16 * 1024 * 1024);
  } finally {
    await admin.query("UNLOCK TABLES");
  }
  await call;
  assert.equal(produced, chunks);
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM flow"), chunks * perChunk);
});

test("WriteStream fails with the first bad chunk's error", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE s2 (id INT PRIMARY KEY)");
  const gateway = await startGateway(t, url);
  const client = ingestClient(gateway.baseUrl);
  async function* requests(): AsyncGenerator<WriteStreamRequest> {
    yield create(WriteStreamRequestSchema, {
      table: "s2",
      columns: ["id"],
      rows: [{ values: [int(1)] }],
    });
    yield create(WriteStreamRequestSchema, { rows: [{ values: [int(1)] }] });
  }
  await assert.rejects(
    client.writeStream(requests()),
    (err: ConnectError) => err.code === Code.AlreadyExists,
  );
  async function* unnamed(): AsyncGenerator<WriteStreamRequest> {
    yield create(WriteStreamRequestSchema, { rows: [{ values: [int(1)] }] });
  }
  await assert.rejects(
    client.writeStream(unnamed()),
    (err: ConnectError) => err.code === Code.InvalidArgument,
  );
});

test("a full buffer makes calls wait, then fail with resource_exhausted naming the setting", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE slow (id INT PRIMARY KEY, pad VARCHAR(1000))");
  const gateway = await startGateway(t, url, { env: { SQLGATE_INGEST_BUFFER_BYTES: "4096" } });
  const client = ingestClient(gateway.baseUrl);
  const row = (id: number) => ({ values: [int(id), str("p".repeat(900))] });
  await admin.query("LOCK TABLES slow WRITE");
  let held: Promise<unknown>[] = [];
  try {
    held = Array.from({ length: 4 }, (_, i) =>
      client.write(
        { table: "slow", columns: ["id", "pad"], rows: [row(i)] },
        { timeoutMs: 20_000 },
      ),
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(gateway.ingest.stats().bufferedBytes <= 4096);
    await assert.rejects(
      client.write({ table: "slow", columns: ["id", "pad"], rows: [row(99)] }, { timeoutMs: 500 }),
      (err: ConnectError) => {
        assert.equal(err.code, Code.ResourceExhausted, err.message);
        assert.equal(
          err.findDetails(LimitExceededSchema)[0]?.setting,
          "SQLGATE_INGEST_BUFFER_BYTES",
        );
        return true;
      },
    );
  } finally {
    await admin.query("UNLOCK TABLES");
  }
  await Promise.all(held);
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM slow"), 4);
});

test("BUFFERED writes are acknowledged from the log and reach MySQL exactly once", async (t) => {
  const { url, admin, name } = await createTestDatabase(t);
  await admin.query(
    "CREATE TABLE telemetry (id INT AUTO_INCREMENT PRIMARY KEY, device INT, v INT)",
  );
  const gateway = await startGateway(t, url);
  const client = ingestClient(gateway.baseUrl);
  const calls = 300;
  const responses = await Promise.all(
    Array.from({ length: calls }, (_, i) =>
      client.write({
        table: "telemetry",
        columns: ["device", "v"],
        rows: [{ values: [int(i % 10), int(i)] }],
        durability: Durability.BUFFERED,
        idempotencyKey: i % 3 === 0 ? `buffered-${i}` : "",
      }),
    ),
  );
  assert.ok(responses.every((r) => r.rowsWritten === 1n));
  // The same keyed calls again: applied once when flushed.
  await Promise.all(
    Array.from({ length: calls / 3 }, (_, j) =>
      client.write({
        table: "telemetry",
        columns: ["device", "v"],
        rows: [{ values: [int((j * 3) % 10), int(j * 3)] }],
        durability: Durability.BUFFERED,
        idempotencyKey: `buffered-${j * 3}`,
      }),
    ),
  );
  for (let i = 0; (await count(admin, "SELECT COUNT(*) n FROM telemetry")) < calls; i++) {
    assert.ok(i < 200, "the log was not flushed");
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM telemetry"), calls);
  assert.equal(await count(admin, "SELECT COUNT(DISTINCT v) n FROM telemetry"), calls);
  assert.equal(gateway.ingest.stats().logRecords, 0);
  assert.ok(
    (await count(admin, `SELECT COUNT(*) n FROM \`${name}\`.sqlgate_ingest_log_applied`)) > 0,
  );
});

test("a BUFFERED record MySQL refuses later is kept in the rejected table, not lost or retried forever", async (t) => {
  const { url, admin, name } = await createTestDatabase(t);
  await admin.query("CREATE TABLE uniq (id INT PRIMARY KEY)");
  await admin.query("INSERT INTO uniq VALUES (1)");
  const gateway = await startGateway(t, url);
  const client = ingestClient(gateway.baseUrl);
  const buffered = (id: number) =>
    client.write({
      table: "uniq",
      columns: ["id"],
      rows: [{ values: [int(id)] }],
      durability: Durability.BUFFERED,
    });
  await Promise.all([buffered(2), buffered(1), buffered(3)]);
  for (
    let i = 0;
    (await count(admin, `SELECT COUNT(*) n FROM \`${name}\`.sqlgate_ingest_rejected`)) === 0;
    i++
  ) {
    assert.ok(i < 200, "nothing was rejected");
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(await count(admin, "SELECT COUNT(*) n FROM uniq"), 3);
  const [rejected] = (await admin.query(
    `SELECT errno, target FROM \`${name}\`.sqlgate_ingest_rejected`,
  )) as unknown as [unknown[]];
  assert.deepEqual(rejected, [{ errno: 1062, target: `${name}.uniq` }]);
  // The counter moves just after the rejection commits.
  for (let i = 0; gateway.ingest.stats().rejectedRecords === 0; i++) {
    assert.ok(i < 100, "the rejection was not counted");
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(gateway.ingest.stats().rejectedRecords, 1);
});
