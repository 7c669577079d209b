/**
 * The SDK's ingest writer against a real gateway and MariaDB: rows from
 * concurrent appenders land exactly once, values arrive exactly, errors that
 * a retry cannot fix surface at once, and retries after a lost answer or a
 * gateway restart apply every chunk exactly once (same idempotency keys).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { crc32 } from "node:zlib";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  createClient,
  decimal,
  json,
  type RetryEvent,
  temporal,
  valueFromJs,
} from "../client/src/index.js";
import { startGateway } from "./support/gateway.js";
import { connectDirect, createTestDatabase } from "./support/mysql.js";

type Context = Parameters<typeof createTestDatabase>[0];

async function setup(t: Context, ddl: string) {
  const db = await createTestDatabase(t);
  await db.admin.query(ddl);
  return db;
}

async function queryOne(db: { admin: { query(sql: string): Promise<unknown> } }, sql: string) {
  const [rows] = (await db.admin.query(sql)) as [Record<string, unknown>[]];
  return rows[0] ?? {};
}

const eventsTable =
  "CREATE TABLE events (id INT PRIMARY KEY, appender INT NOT NULL, payload VARCHAR(64) NOT NULL)";

/** COUNT, SUM(id) and an order-free checksum of `events`, as MySQL computes them. */
async function eventsDigest(db: Parameters<typeof queryOne>[0]) {
  const row = await queryOne(
    db,
    "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids, CAST(SUM(id) AS CHAR) AS sum," +
      " CAST(BIT_XOR(CRC32(CONCAT_WS(':', id, appender, payload))) AS CHAR) AS checksum FROM events",
  );
  return {
    n: Number(row.n),
    ids: Number(row.ids),
    sum: String(row.sum ?? "0"),
    checksum: String(row.checksum ?? "0"),
  };
}

/** The same digest computed from the rows that were appended. */
function expectedDigest(rows: [number, number, string][]) {
  let sum = 0;
  let checksum = 0;
  for (const [id, appender, payload] of rows) {
    sum += id;
    checksum ^= crc32(`${id}:${appender}:${payload}`);
  }
  return { n: rows.length, ids: rows.length, sum: String(sum), checksum: String(checksum >>> 0) };
}

const eventRow = (id: number, appender: number): [number, number, string] => [
  id,
  appender,
  `event ${id} from appender ${appender}`,
];

for (const httpVersion of ["2", "1.1"] as const) {
  test(`HTTP/${httpVersion}: 10,000 rows from 8 concurrent appenders land exactly once`, async (t) => {
    const db = await setup(t, eventsTable);
    const gateway = await startGateway(t, db.url);
    const client = createClient({ url: gateway.baseUrl, httpVersion });
    t.after(() => client.close());
    // Small chunks and streams, so that the 10,000 rows cross many of both.
    const writer = client.ingest.writer("events", ["id", "appender", "payload"], {
      maxChunkRows: 200,
      maxStreamChunks: 8,
    });
    const appended: [number, number, string][] = [];
    const appenders = 8;
    const perAppender = 1250;
    await Promise.all(
      Array.from({ length: appenders }, async (_, a) => {
        for (let i = 0; i < perAppender; i++) {
          const row = eventRow(a * perAppender + i, a);
          appended.push(row);
          await writer.append(row);
          // Yield to the event loop now and then, as a real producer would.
          if (i % 97 === 0) await sleep(1);
        }
      }),
    );
    const summary = await writer.close();

    assert.deepEqual(await eventsDigest(db), expectedDigest(appended));
    assert.equal(summary.rowsWritten, 10_000);
    assert.equal(summary.rowsAcknowledged, 10_000);
    assert.equal(summary.duplicateBatches, 0);
    assert.equal(summary.retries, 0);
    assert.ok(summary.batches >= 1);
  });
}

test("valueFromJs: the kind each JavaScript value takes, and what is refused", () => {
  const kind = (v: unknown) => {
    const { case: c, value } = valueFromJs(v).kind;
    return [c, value];
  };
  assert.deepEqual(kind(null), ["nullValue", 0]);
  assert.deepEqual(kind(undefined), ["nullValue", 0]);
  assert.deepEqual(kind(42), ["int64Value", 42n]);
  assert.deepEqual(kind(-0), ["int64Value", 0n]);
  assert.deepEqual(kind(2 ** 60), ["int64Value", 2n ** 60n]);
  assert.deepEqual(kind(2 ** 63), ["float64Value", 2 ** 63]);
  assert.deepEqual(kind(1.5), ["float64Value", 1.5]);
  assert.deepEqual(kind(-(2n ** 63n)), ["int64Value", -(2n ** 63n)]);
  assert.deepEqual(kind(2n ** 63n), ["uint64Value", 2n ** 63n]);
  assert.deepEqual(kind("12.50"), ["stringValue", "12.50"]);
  assert.deepEqual(kind(true), ["boolValue", true]);
  assert.deepEqual(kind(new Uint8Array([1, 2])), ["bytesValue", new Uint8Array([1, 2])]);
  assert.deepEqual(kind(new Uint8Array([3]).buffer), ["bytesValue", new Uint8Array([3])]);
  assert.deepEqual(kind(new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6))), [
    "temporalValue",
    "2024-01-02 03:04:05.006000",
  ]);
  assert.deepEqual(kind({ a: 1 }), ["jsonValue", '{"a":1}']);
  assert.deepEqual(kind(Object.assign(Object.create(null), { b: [true] })), [
    "jsonValue",
    '{"b":[true]}',
  ]);
  assert.deepEqual(kind([1, null]), ["jsonValue", "[1,null]"]);
  assert.deepEqual(kind(decimal("-0.5")), ["decimalValue", "-0.5"]);
  for (const refused of [
    2n ** 64n,
    -(2n ** 63n) - 1n,
    Symbol("s"),
    () => 1,
    new Map(),
    new Date(Number.NaN),
    { big: 1n },
  ]) {
    assert.throws(() => valueFromJs(refused), { code: Code.InvalidArgument });
  }
});

test("values arrive exactly: 64-bit integers, bytes, NULL, DECIMAL text, Dates, JSON", async (t) => {
  const db = await setup(
    t,
    `CREATE TABLE vals (
      id INT PRIMARY KEY, big BIGINT, ubig BIGINT UNSIGNED, bin VARBINARY(16), maybe VARCHAR(10),
      amount DECIMAL(30,10), at DATETIME(6), doc JSON, ratio DOUBLE, flag BOOLEAN, txt VARCHAR(20))`,
  );
  const gateway = await startGateway(t, db.url);
  const client = createClient({ url: gateway.baseUrl });
  t.after(() => client.close());
  const columns = [
    "id",
    "big",
    "ubig",
    "bin",
    "maybe",
    "amount",
    "at",
    "doc",
    "ratio",
    "flag",
    "txt",
  ];
  const writer = client.ingest.writer("vals", columns);
  await writer.append([
    1,
    2n ** 62n + 1n,
    2n ** 64n - 1n,
    Buffer.from([0, 255, 0x80, 10, 13]),
    null,
    "12345678901234567890.0123456789",
    new Date(Date.UTC(2024, 1, 29, 23, 59, 59, 123)),
    { a: [1, 2, { b: null }], s: "ü" },
    0.1,
    true,
    "héllo 🌍",
  ]);
  await writer.append([
    2,
    -(2n ** 63n),
    0n,
    new Uint8Array(0),
    "",
    "-0.0000000001",
    new Date(Date.UTC(1999, 11, 31, 0, 0, 0, 1)),
    [1, "x"],
    -1.5e300,
    false,
    "",
  ]);
  await writer.append([
    3,
    Number.MAX_SAFE_INTEGER,
    undefined,
    new TextEncoder().encode("abc"),
    "x",
    decimal("1.5"),
    temporal("2024-01-01 00:00:00.000001"),
    json('{"k": 1}'),
    7,
    null,
    null,
  ]);
  // A row that has no SQL form is refused by append alone; the writer goes on.
  const noSqlForm = [4, Symbol("no"), ...Array.from({ length: 9 }, () => null)];
  await assert.rejects(writer.append(noSqlForm), (err: unknown) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.message, /column big/);
    return true;
  });
  await assert.rejects(writer.append([4]), /1 values for 11 columns/);
  const summary = await writer.close();
  assert.equal(summary.rowsWritten, 3);

  const direct = await connectDirect(db.url, {
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: true,
  });
  t.after(() => direct.end());
  const [rows] = (await direct.query("SELECT * FROM vals ORDER BY id")) as unknown as [
    Record<string, unknown>[],
  ];
  // MariaDB's JSON is LONGTEXT (text back); MySQL's is parsed by mysql2.
  const doc = (v: unknown) => (typeof v === "string" ? JSON.parse(v) : v);
  assert.deepEqual(
    rows.map((r) => ({ ...r, doc: doc(r.doc) })),
    [
      {
        id: 1,
        big: "4611686018427387905",
        ubig: "18446744073709551615",
        bin: Buffer.from([0, 255, 0x80, 10, 13]),
        maybe: null,
        amount: "12345678901234567890.0123456789",
        at: "2024-02-29 23:59:59.123000",
        doc: { a: [1, 2, { b: null }], s: "ü" },
        ratio: 0.1,
        flag: 1,
        txt: "héllo 🌍",
      },
      {
        id: 2,
        big: "-9223372036854775808",
        ubig: "0",
        bin: Buffer.alloc(0),
        maybe: "",
        amount: "-0.0000000001",
        at: "1999-12-31 00:00:00.001000",
        doc: [1, "x"],
        ratio: -1.5e300,
        flag: 0,
        txt: "",
      },
      {
        id: 3,
        big: String(Number.MAX_SAFE_INTEGER),
        ubig: null,
        bin: Buffer.from("abc"),
        maybe: "x",
        amount: "1.5000000000",
        at: "2024-01-01 00:00:00.000001",
        doc: { k: 1 },
        ratio: 7,
        flag: null,
        txt: null,
      },
    ],
  );
});

test("a missing table surfaces not_found from close() at once, without retrying", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url);
  const client = createClient({ url: gateway.baseUrl });
  t.after(() => client.close());
  const retries: RetryEvent[] = [];
  const writer = client.ingest.writer("no_such_table", ["id"], {
    onRetry: (event) => retries.push(event),
  });
  const started = Date.now();
  await writer.append([1]);
  await writer.append([2]);
  await assert.rejects(writer.close(), (err: unknown) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.NotFound, err.message);
    return true;
  });
  assert.deepEqual(retries, []);
  assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
  // The writer stays failed: later calls give the same error.
  await assert.rejects(writer.append([3]), { code: Code.NotFound });
  await assert.rejects(writer.flush(), { code: Code.NotFound });
});

test("write: one unary call; the same idempotency key again is a duplicate", async (t) => {
  const db = await setup(t, eventsTable);
  const gateway = await startGateway(t, db.url);
  const client = createClient({ url: gateway.baseUrl, httpVersion: "1.1" });
  t.after(() => client.close());
  const rows = [eventRow(1, 0), eventRow(2, 0), eventRow(3, 0)];
  const first = await client.ingest.write("events", ["id", "appender", "payload"], rows, {
    idempotencyKey: "unary-1",
  });
  assert.deepEqual(first, {
    rowsWritten: 3,
    batches: first.batches,
    duplicateBatches: 0,
    position: first.position,
  });
  assert.match(first.position, /^\d+-\d+-\d+$/, "the write's binlog position");
  assert.ok(first.batches >= 1);
  const again = await client.ingest.write("events", ["id", "appender", "payload"], rows, {
    idempotencyKey: "unary-1",
  });
  assert.equal(again.rowsWritten, 0);
  assert.equal(again.duplicateBatches, 1);
  assert.deepEqual(await eventsDigest(db), expectedDigest(rows));
});

/**
 * A TCP proxy in front of a gateway that can drop every connection, or the
 * connection carrying the next response at its first byte: over HTTP/1.1 the
 * gateway answers a WriteStream only once every chunk is committed, so the
 * client then loses the summary of chunks that were applied.
 */
async function startCuttingProxy(t: Context, targetPort: number) {
  const sockets = new Set<net.Socket>();
  let cutsLeft = 0;
  let cuts = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
    }
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream);
    upstream.on("data", (data: Buffer) => {
      if (cutsLeft > 0) {
        cutsLeft--;
        cuts++;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(data);
    });
    upstream.on("end", () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    cutNextResponses(n: number) {
      cutsLeft = n;
    },
    /** Drops every connection now, as a NAT or a crashed load balancer would. */
    cutAll() {
      cuts++;
      for (const s of sockets) s.destroy();
    },
    cuts: () => cuts,
  };
}

test("a summary lost with the connection: the chunks are sent again and apply once", async (t) => {
  const db = await setup(t, eventsTable);
  const gateway = await startGateway(t, db.url);
  const proxy = await startCuttingProxy(t, gateway.port);
  const client = createClient({ url: `http://127.0.0.1:${proxy.port}`, httpVersion: "1.1" });
  t.after(() => client.close());
  const retries: RetryEvent[] = [];
  // onConflict "error" (the default): a chunk applied twice would fail the
  // writer with already_exists instead of passing unnoticed.
  const writer = client.ingest.writer("events", ["id", "appender", "payload"], {
    maxChunkRows: 100,
    maxStreamChunks: 5,
    retryBaseDelayMs: 20,
    onRetry: (event) => retries.push(event),
  });
  const appended: [number, number, string][] = [];
  proxy.cutNextResponses(2);
  for (let id = 0; id < 2000; id++) {
    const row = eventRow(id, 0);
    appended.push(row);
    await writer.append(row);
    if (id % 250 === 0) await sleep(5);
  }
  const summary = await writer.close();

  assert.equal(proxy.cuts(), 2);
  assert.deepEqual(await eventsDigest(db), expectedDigest(appended));
  assert.ok(summary.retries >= 1, `retries: ${summary.retries}`);
  assert.ok(
    retries.every((r) => r.error.code === Code.Aborted || r.error.code === Code.Unavailable),
  );
  // The cut streams had committed their chunks: their retries were duplicates.
  assert.ok(summary.duplicateBatches >= 2, `duplicate batches: ${summary.duplicateBatches}`);
  assert.equal(summary.rowsAcknowledged, 2000);
  // Rows of the cut streams were reported by no summary that arrived.
  assert.ok(summary.rowsWritten < 2000);
  assert.ok(summary.rowsWritten >= 2000 - 100 * summary.duplicateBatches);
});

test("HTTP/2 connections dropped under open streams: retried, every row lands once", async (t) => {
  const db = await setup(t, eventsTable);
  const gateway = await startGateway(t, db.url);
  const proxy = await startCuttingProxy(t, gateway.port);
  const client = createClient({ url: `http://127.0.0.1:${proxy.port}`, httpVersion: "2" });
  t.after(() => client.close());
  const retries: RetryEvent[] = [];
  const writer = client.ingest.writer("events", ["id", "appender", "payload"], {
    maxChunkRows: 50,
    maxStreamMs: 300,
    retryBaseDelayMs: 20,
    onRetry: (event) => retries.push(event),
  });
  const appended: [number, number, string][] = [];
  for (let id = 0; id < 3000; id++) {
    const row = eventRow(id, 0);
    appended.push(row);
    await writer.append(row);
    if (id % 100 === 0) await sleep(3);
    // Twice, while streams are open on the connection.
    if (id === 1000 || id === 2000) proxy.cutAll();
  }
  const summary = await writer.close();

  assert.deepEqual(await eventsDigest(db), expectedDigest(appended));
  assert.equal(summary.rowsAcknowledged, 3000);
  assert.ok(summary.retries >= 2, `retries: ${summary.retries}`);
  // Node resets the streams of a session whose socket closed with CANCEL.
  assert.ok(
    retries.every((r) => [Code.Canceled, Code.Unavailable, Code.Aborted].includes(r.error.code)),
    retries.map((r) => r.error.message).join("; "),
  );
});

test("the gateway stops mid-way and a new one starts on its port: every row lands once", async (t) => {
  const db = await setup(t, eventsTable);
  // The first gateway is closed by the test itself; its t.after runs only if
  // the test fails before that.
  const closeFirst: (() => unknown)[] = [];
  const first = await startGateway({ after: (fn: () => unknown) => closeFirst.push(fn) }, db.url);
  let firstClosed = false;
  const stopFirst = async () => {
    if (firstClosed) return;
    firstClosed = true;
    for (const fn of closeFirst) await fn();
  };
  t.after(stopFirst);

  const client = createClient({ url: first.baseUrl, httpVersion: "2" });
  t.after(() => client.close());
  const retries: RetryEvent[] = [];
  const writer = client.ingest.writer("events", ["id", "appender", "payload"], {
    maxChunkRows: 50,
    maxStreamMs: 200,
    retryMaxDelayMs: 400,
    onRetry: (event) => retries.push(event),
  });
  const appended: [number, number, string][] = [];
  const append = async (from: number, to: number) => {
    for (let id = from; id < to; id++) {
      const row = eventRow(id, 0);
      appended.push(row);
      await writer.append(row);
      if (id % 50 === 0) await sleep(2);
    }
  };

  await append(0, 500);
  await stopFirst();
  // Rows keep coming while no gateway listens; the writer holds and retries them.
  await append(500, 1000);
  const until = Date.now() + 10_000;
  while (retries.length === 0 && Date.now() < until) await sleep(20);
  assert.ok(retries.length > 0, "the writer retried while the gateway was down");
  await startGateway(t, db.url, { port: first.port });
  await append(1000, 1500);
  const summary = await writer.close();

  assert.deepEqual(await eventsDigest(db), expectedDigest(appended));
  assert.ok(summary.retries >= 1);
  assert.equal(summary.rowsAcknowledged, 1500);
  assert.ok(summary.rowsWritten <= 1500);
});
