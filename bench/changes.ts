/**
 * Change streams benchmark, on a private MariaDB with the binlog settings
 * change streams need, in one run:
 *
 * 1. Throughput: a backlog of BENCH_TRANSACTIONS transactions of
 *    BENCH_ROWS_PER_TRANSACTION inserted rows each is written first; then,
 *    alternating, the binlog library alone (@vlasky/zongji, the same
 *    options the gateway's reader uses, counting decoded rows) and a
 *    subscriber through the gateway (a Connect client over h2c, binary,
 *    `Subscribe` from the backlog's first position) read all of it. Row
 *    changes per second for each, and the ratio (goal: >= 0.7x).
 * 2. Latency: single-row autocommit INSERTs at BENCH_LATENCY_RATE per
 *    second from this process, one subscriber from now; for each row the
 *    time from sending the write to its change arriving, through the
 *    gateway and with the library alone reading the same writes (goal
 *    through the gateway: p99 < 10 ms on loopback).
 *
 * The gateway is a separate process (compiled JS).
 *
 *   BENCH_ONLY=changes npm run bench
 *   BENCH_ONLY=changes BENCH_RUNS=1 npm run bench
 *
 * Settings (environment): BENCH_RUNS (3), BENCH_TRANSACTIONS (2000),
 * BENCH_ROWS_PER_TRANSACTION (50), BENCH_LATENCY_WRITES (3000),
 * BENCH_LATENCY_RATE (500 per second). Prints a markdown report and writes
 * it to bench/out/changes.md.
 */
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import ZongJi from "@vlasky/zongji";
import mysql from "mysql2/promise";
import pino from "pino";
import { ChangeService, SubscribeRequestSchema } from "../gen/sqlgate/v1/changes_pb.js";
import { createBinlogReader } from "../server/changes/binlog-reader.js";
import { binlogServerArgs } from "../server/changes/binlog-settings.js";
import { createChangeFeed } from "../server/changes/change-feed.js";
import { tableFilter } from "../server/changes/table-filter.js";
import { connectionOptionsFromUrl } from "../server/mysql/database.js";
import { startGatewayProcess } from "./support/gateway-process.js";
import {
  log,
  machineLine,
  onCleanup,
  runBenchmark,
  setting,
  startBenchDatabase,
  writeReport,
} from "./support/harness.js";
import { median, percentile } from "./support/load.js";
import { ownCpuMicros, processCpuMicros } from "./support/proc-cpu.js";

const runs = Math.round(setting("BENCH_RUNS", 3));
const transactions = Math.round(setting("BENCH_TRANSACTIONS", 2000));
const rowsPerTransaction = Math.round(setting("BENCH_ROWS_PER_TRANSACTION", 50));
const latencyWrites = Math.round(setting("BENCH_LATENCY_WRITES", 3000));
const latencyRate = setting("BENCH_LATENCY_RATE", 500);
/** BENCH_READERS=lean,library: only the readers whose names contain these (for profiling). */
const onlyReaders = process.env.BENCH_READERS?.split(",");

const table = "events";
const ddl = `CREATE TABLE ${table} (
  id BIGINT UNSIGNED PRIMARY KEY, device INT NOT NULL, at DATETIME(6) NOT NULL,
  value DOUBLE NOT NULL, note VARCHAR(64) NOT NULL
)`;

let nextServerId = 0x6000_0000;
/** The HTTP/2 receive window the readers offer (per stream and per connection). */
const receiveWindow = 16 * 1024 * 1024;

await runBenchmark(async () => {
  const { db, dataDir, serverVersion } = await startBenchDatabase(binlogServerArgs);
  const root = await mysql.createConnection({
    socketPath: db.socketPath,
    user: "root",
    database: "bench",
  });
  onCleanup(() => root.end());
  await root.query(ddl);
  const position = async () =>
    String(
      (
        (await root.query("SELECT @@GLOBAL.gtid_binlog_pos AS p")) as unknown as [[{ p: string }]]
      )[0][0].p,
    );

  const from = await position();
  log(`writing ${transactions} transactions of ${rowsPerTransaction} rows`);
  let id = 0;
  for (let t = 0; t < transactions; t++) {
    const values = [];
    for (let r = 0; r < rowsPerTransaction; r++) {
      id += 1;
      values.push(`(${id}, ${id % 1000}, NOW(6), ${id * 0.5}, 'reading ${id}')`);
    }
    await root.query(`INSERT INTO ${table} VALUES ${values.join(",")}`);
  }
  const backlogRows = id;

  const gateway = await startGatewayProcess({
    mysqlUrl: db.url,
    poolSize: 4,
    dataDir,
    // BENCH_CPU_PROF=dir: the gateway writes a CPU profile there when it stops.
    ...(process.env.BENCH_CPU_PROF
      ? { nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] }
      : {}),
  });
  onCleanup(() => gateway.stop());
  const sessionManager = new Http2SessionManager(gateway.baseUrl);
  onCleanup(async () => sessionManager.abort());
  const changes = createClient(
    ChangeService,
    createConnectTransport({
      baseUrl: gateway.baseUrl,
      httpVersion: "2",
      useBinaryFormat: true,
      sessionManager,
    }),
  );
  const connection = connectionOptionsFromUrl(db.url);

  /** Reads the backlog with zongji alone; resolves with rows per second. */
  const libraryAlone = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const zongji = new ZongJi({
        ...connection,
        dateStrings: true,
        jsonStrings: true,
        timezone: "Z",
        supportBigNumbers: true,
        bigNumberStrings: true,
      });
      let rows = 0;
      const started = performance.now();
      zongji.on("binlog", (event) => {
        if (event.getTypeName() !== "WriteRows") return;
        rows += (event as unknown as { rows: unknown[] }).rows.length;
        if (rows >= backlogRows) {
          const elapsed = (performance.now() - started) / 1000;
          zongji.stop();
          resolve(rows / elapsed);
        }
      });
      zongji.on("error", reject);
      zongji.start({
        serverId: nextServerId++,
        gtidSet: from,
        includeEvents: ["mariadbgtid", "tablemap", "writerows", "xid", "rotate"],
      });
    });

  /** Reads the backlog with the gateway's binlog reader (zongji, grouping, exact values), in this process. */
  const readerAlone = (): Promise<number> =>
    new Promise((resolve, reject) => {
      let rows = 0;
      const started = performance.now();
      const reader = createBinlogReader({
        connection,
        serverId: nextServerId++,
        from,
        onTransaction(tx) {
          rows += tx.changes.length;
          if (rows >= backlogRows) {
            const elapsed = (performance.now() - started) / 1000;
            void reader.close();
            resolve(rows / elapsed);
          }
        },
        onError(err) {
          if (err.fatal) reject(err);
        },
      });
    });

  /** Reads the backlog through the gateway's change feed and wire encoding, in this process (no HTTP). */
  const feedAlone = async (): Promise<number> => {
    const feed = createChangeFeed({
      connection,
      query: async (sql) => (await root.query({ sql, rowsAsArray: true }))[0] as unknown[][],
      bufferTransactions: 1000,
      maxChangesPerMessage: 1000,
      logger: pino({ level: "silent" }),
    });
    const stop = new AbortController();
    let rows = 0;
    let bytes = 0;
    const started = performance.now();
    for await (const message of feed.subscribe({
      tables: tableFilter([table], "bench", undefined),
      from,
      includeBefore: false,
      heartbeatMs: 5000,
      signal: stop.signal,
    })) {
      if (message.case !== "transaction") continue;
      bytes += message.value.tx.responseData(message.value).length;
      rows += message.value.changes.length;
      if (rows >= backlogRows) break;
    }
    const elapsed = (performance.now() - started) / 1000;
    stop.abort();
    await feed.close();
    if (bytes === 0) throw new Error("nothing encoded");
    return rows / elapsed;
  };

  /**
   * Reads the backlog through the gateway with a lean subscriber: Connect's
   * streaming protocol on node:http2, binary, no compression, counting the
   * row changes in each message with a minimal wire scan instead of
   * decoding it. What the gateway delivers, with as little of the 2 cores
   * as possible going to the reader.
   */
  const throughGatewayLean = (): Promise<number> =>
    new Promise((resolve, reject) => {
      // A reader that wants throughput offers a large receive window (HTTP/2's
      // default of 64 KiB makes the gateway wait for each window update).
      const session = http2.connect(gateway.baseUrl, {
        settings: { initialWindowSize: receiveWindow },
      });
      session.on("error", reject);
      session.on("connect", () => session.setLocalWindowSize(receiveWindow));
      const stream = session.request({
        ":method": "POST",
        ":path": "/sqlgate.v1.ChangeService/Subscribe",
        "content-type": "application/connect+proto",
        "connect-protocol-version": "1",
      });
      const request = toBinary(
        SubscribeRequestSchema,
        create(SubscribeRequestSchema, { tables: [table], from }),
      );
      const envelope = Buffer.alloc(5 + request.length);
      envelope.writeUInt32BE(request.length, 1);
      envelope.set(request, 5);
      stream.end(envelope);
      const started = performance.now();
      let rows = 0;
      let pending: Buffer = Buffer.alloc(0);
      stream.on("data", (chunk: Buffer) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        let at = 0;
        while (pending.length - at >= 5) {
          const size = pending.readUInt32BE(at + 1);
          if (pending.length - at < 5 + size) break;
          if ((pending[at] ?? 0) === 0)
            rows += countChanges(pending.subarray(at + 5, at + 5 + size));
          at += 5 + size;
        }
        pending = pending.subarray(at);
        if (rows >= backlogRows) {
          const elapsed = (performance.now() - started) / 1000;
          session.destroy();
          resolve(rows / elapsed);
        }
      });
      stream.on("error", reject);
    });

  /** Reads the backlog through the gateway with connect-node's client, decoding every message. */
  const throughGateway = async (): Promise<number> => {
    const stop = new AbortController();
    let rows = 0;
    const started = performance.now();
    for await (const message of changes.subscribe(
      { tables: [table], from },
      { signal: stop.signal },
    )) {
      if (message.event.case !== "transaction") continue;
      rows += message.event.value.changes.length;
      if (rows >= backlogRows) break;
    }
    const elapsed = (performance.now() - started) / 1000;
    stop.abort();
    return rows / elapsed;
  };

  /** CPU per row (microseconds) of the gateway, MariaDB and this process while `read` runs. */
  const cpuPerRow = async (read: () => Promise<number>) => {
    const before = [processCpuMicros(gateway.pid), processCpuMicros(db.pid), ownCpuMicros()];
    const rate = await read();
    const after = [processCpuMicros(gateway.pid), processCpuMicros(db.pid), ownCpuMicros()];
    return { rate, cpu: after.map((a, i) => (a - (before[i] ?? 0)) / backlogRows) };
  };
  const cpuRows: { reader: string; cpu: number[] }[] = [];

  const library: number[] = [];
  const readerRates: number[] = [];
  const feedRates: number[] = [];
  const leanRates: number[] = [];
  const gatewayRates: number[] = [];
  // One of each first, unmeasured: connections, JIT, the binlog in the page cache.
  await libraryAlone();
  await throughGatewayLean();
  await throughGateway();
  for (let run = 1; run <= runs; run++) {
    for (const [reader, read, rates] of (
      [
        ["library alone", libraryAlone, library],
        ["gateway's binlog reader alone", readerAlone, readerRates],
        ["gateway's feed and encoding alone", feedAlone, feedRates],
        ["gateway, lean reader", throughGatewayLean, leanRates],
        ["gateway, connect-node decoding", throughGateway, gatewayRates],
      ] as const
    ).filter(
      ([reader]) => onlyReaders === undefined || onlyReaders.some((r) => reader.includes(r)),
    )) {
      const { rate, cpu } = await cpuPerRow(read);
      rates.push(rate);
      cpuRows.push({ reader, cpu });
    }
    log(
      `run ${run}: library ${Math.round(library.at(-1) ?? 0)} rows/s, gateway ${Math.round(leanRates.at(-1) ?? 0)} rows/s (lean reader), ${Math.round(gatewayRates.at(-1) ?? 0)} rows/s (connect-node, decoding)`,
    );
  }

  // Latency: writes at a steady rate, one subscriber of each kind from now.
  const sentAt = new Map<number, number>();
  const viaGateway: number[] = [];
  const viaLibrary: number[] = [];
  const latencyStop = new AbortController();
  const firstLatencyId = id + 1;
  const lastLatencyId = firstLatencyId + latencyWrites - 1;
  const gatewayReader = (async () => {
    for await (const message of changes.subscribe(
      { tables: [table], heartbeatMs: 100 },
      { signal: latencyStop.signal },
    )) {
      if (message.event.case !== "transaction") continue;
      const now = performance.now();
      for (const change of message.event.value.changes) {
        const rowId = Number(change.after?.values[0]?.kind.value);
        const sent = sentAt.get(rowId);
        if (sent !== undefined) viaGateway.push(now - sent);
      }
      if (viaGateway.length >= latencyWrites) break;
    }
  })().catch((err: unknown) => {
    if (!latencyStop.signal.aborted) throw err;
  });
  const zongji = new ZongJi({ ...connection, supportBigNumbers: true, bigNumberStrings: true });
  zongji.on("binlog", (event) => {
    if (event.getTypeName() !== "WriteRows") return;
    const now = performance.now();
    for (const row of (event as unknown as { rows: { id: string | number }[] }).rows) {
      const sent = sentAt.get(Number(row.id));
      if (sent !== undefined) viaLibrary.push(now - sent);
    }
  });
  zongji.start({
    serverId: nextServerId++,
    gtidSet: await position(),
    includeEvents: ["mariadbgtid", "tablemap", "writerows", "xid", "rotate"],
  });
  await new Promise((r) => setTimeout(r, 1000));
  log(`latency: ${latencyWrites} single-row writes at ${latencyRate}/s`);
  const writer = await mysql.createConnection({
    socketPath: db.socketPath,
    user: "root",
    database: "bench",
  });
  onCleanup(() => writer.end());
  const intervalMs = 1000 / latencyRate;
  const startedWrites = performance.now();
  for (let rowId = firstLatencyId; rowId <= lastLatencyId; rowId++) {
    const due = startedWrites + (rowId - firstLatencyId) * intervalMs;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    sentAt.set(rowId, performance.now());
    await writer.query(`INSERT INTO ${table} VALUES (?, 1, NOW(6), 1.5, 'latency')`, [rowId]);
  }
  const deadline = Date.now() + 30_000;
  while (
    (viaGateway.length < latencyWrites || viaLibrary.length < latencyWrites) &&
    Date.now() < deadline
  ) {
    await new Promise((r) => setTimeout(r, 50));
  }
  latencyStop.abort();
  zongji.stop();
  await gatewayReader;

  const sorted = (values: number[]) => Float64Array.from(values).sort();
  const g = sorted(viaGateway);
  const l = sorted(viaLibrary);
  const ms = (v: number) => `${v.toFixed(2)} ms`;
  const libraryMedian = median(library);
  const gatewayMedian = median(gatewayRates);
  const leanMedian = median(leanRates);
  const report = `# Change streams

${machineLine(serverVersion)}

## Throughput: reading a backlog of ${backlogRows.toLocaleString("en")} inserted rows (${transactions} transactions)

| reader | row changes/s (median of ${runs}) | runs |
|---|---|---|
| @vlasky/zongji alone | ${Math.round(libraryMedian).toLocaleString("en")} | ${library.map((r) => Math.round(r)).join(", ")} |
| the gateway's binlog reader alone (server/changes/binlog-reader.ts, this process) | ${Math.round(median(readerRates)).toLocaleString("en")} | ${readerRates.map((r) => Math.round(r)).join(", ")} |
| the gateway's change feed and wire encoding alone (this process, no HTTP) | ${Math.round(median(feedRates)).toLocaleString("en")} | ${feedRates.map((r) => Math.round(r)).join(", ")} |
| through the gateway, lean reader (h2c, binary, counting) | ${Math.round(leanMedian).toLocaleString("en")} | ${leanRates.map((r) => Math.round(r)).join(", ")} |
| through the gateway, connect-node client decoding every message | ${Math.round(gatewayMedian).toLocaleString("en")} | ${gatewayRates.map((r) => Math.round(r)).join(", ")} |

CPU per row change (microseconds, median over the runs; 2 cores shared by all three):

| reader | gateway | MariaDB | reader process |
|---|---|---|---|
${[
  "library alone",
  "gateway's binlog reader alone",
  "gateway's feed and encoding alone",
  "gateway, lean reader",
  "gateway, connect-node decoding",
]
  .map((reader) => {
    const rows = cpuRows.filter((r) => r.reader === reader);
    const at = (i: number) => median(rows.map((r) => r.cpu[i] ?? 0)).toFixed(2);
    return `| ${reader} | ${at(0)} | ${at(1)} | ${at(2)} |`;
  })
  .join("\n")}

Gateway (lean reader) / library: **${(leanMedian / libraryMedian).toFixed(2)}x** (goal >= 0.7x); with the decoding client: ${(gatewayMedian / libraryMedian).toFixed(2)}x.

## Latency: from sending a single-row write to its change arriving (${latencyWrites} writes at ${latencyRate}/s)

| reader | p50 | p90 | p99 | max | arrived |
|---|---|---|---|---|---|
| through the gateway | ${ms(percentile(g, 50))} | ${ms(percentile(g, 90))} | ${ms(percentile(g, 99))} | ${ms(g.at(-1) ?? Number.NaN)} | ${g.length} |
| @vlasky/zongji alone | ${ms(percentile(l, 50))} | ${ms(percentile(l, 90))} | ${ms(percentile(l, 99))} | ${ms(l.at(-1) ?? Number.NaN)} | ${l.length} |

Goal through the gateway: p99 < 10 ms.
`;
  writeReport("changes.md", report);
});

/** Reads a varint at `at`; returns [value, next offset]. */
function varint(bytes: Buffer, at: number): [number, number] {
  let value = 0;
  let shift = 0;
  let i = at;
  for (;;) {
    const b = bytes[i++] ?? 0;
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [value, i];
    shift += 7;
  }
}

/** The `changes` (field 3) in a SubscribeResponse's `transaction` (field 1); 0 for other messages. */
function countChanges(message: Buffer): number {
  const [tag, afterTag] = varint(message, 0);
  if (tag !== ((1 << 3) | 2)) return 0;
  const [length, start] = varint(message, afterTag);
  let count = 0;
  let at = start;
  while (at < start + length) {
    const [fieldTag, next] = varint(message, at);
    const wireType = fieldTag & 7;
    if (wireType === 2) {
      const [size, body] = varint(message, next);
      if (fieldTag >> 3 === 3) count += 1;
      at = body + size;
    } else if (wireType === 0) {
      at = varint(message, next)[1];
    } else if (wireType === 1) {
      at = next + 8;
    } else {
      at = next + 4;
    }
  }
  return count;
}
