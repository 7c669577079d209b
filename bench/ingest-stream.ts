/**
 * WriteStream benchmark: `IngestService.WriteStream` (client streaming) of
 * 1,000-row chunks from 4 concurrent streams, each sending chunks back to
 * back for the whole run, against direct mysql2 1,000-row multi-row INSERTs
 * on 4 connections, in one run on one private MariaDB. The gateway runs in its
 * own process (compiled JS); the streams reach it with connect-node (Connect,
 * binary, h2c), their rows either pre-encoded (the load generator's cost out
 * of the way) or serialized per send as an application would. Direct INSERTs are measured two ways, pre-escaped text
 * (`query`) and placeholders (`execute`, a prepared statement of 4,000
 * parameters); the ratio is against the faster of the two in the same run.
 *
 *   BENCH_ONLY=ingest-stream npm run bench
 *   BENCH_SECONDS=2 BENCH_RUNS=1 node dist/bench/ingest-stream.js
 *
 * Settings (environment): BENCH_SECONDS (5), BENCH_RUNS (3), BENCH_STREAMS
 * (4), BENCH_CHUNK_ROWS (1000), BENCH_DIRECT_CONNECTIONS (4), BENCH_SESSIONS
 * (one HTTP/2 session per stream), BENCH_WARMUP_SECONDS (5 per path),
 * BENCH_VARIANTS (all: a comma list of text, placeholders, gateway,
 * gateway-encode), BENCH_GATEWAY_NODE_ARGS, and any SQLGATE_INGEST_* (passed
 * to the gateway, overriding the values chosen here). Prints a markdown table
 * and writes it to bench/out/ingest-stream.md.
 */
import {
  create,
  fromBinary,
  type MessageInitShape,
  toBinary,
  type UnknownField,
} from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import mysql from "mysql2/promise";
import {
  Durability,
  type WriteStreamRequest,
  WriteStreamRequestSchema,
  type WriteStreamResponse,
} from "../gen/sqlgate/v1/ingest_pb.js";
import { type Row, RowSchema } from "../gen/sqlgate/v1/value_pb.js";
import { startGatewayProcess } from "./support/gateway-process.js";
import {
  log,
  machineLine,
  onCleanup,
  runBenchmark,
  setting,
  spread,
  startBenchDatabase,
  writeFigures,
  writeReport,
} from "./support/harness.js";
import {
  type CpuUse,
  countersSince,
  countRows,
  cpuSnapshot,
  cpuUse,
  datetimeText,
  describeSettings,
  disturbedPercent,
  fmt,
  ingestClients,
  ingestSettings,
  statusCounters,
  telemetryColumns,
  telemetryDdl,
  telemetryTable,
} from "./support/ingest.js";
import { median } from "./support/load.js";
import { type RssSampler, sampleRss } from "./support/proc-rss.js";

const seconds = setting("BENCH_SECONDS", 5);
const runs = Math.round(setting("BENCH_RUNS", 3));
const streams = Math.round(setting("BENCH_STREAMS", 4));
const chunkRows = Math.round(setting("BENCH_CHUNK_ROWS", 1000));
const directConnections = Math.round(setting("BENCH_DIRECT_CONNECTIONS", 4));
const sessions = Math.round(setting("BENCH_SESSIONS", streams));
const warmupSeconds = setting("BENCH_WARMUP_SECONDS", 5, 0);
const variants = (process.env.BENCH_VARIANTS || "text,placeholders,gateway,gateway-encode").split(
  ",",
);
const gatewayNodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? "").split(" ").filter(Boolean);
/** Pre-built chunks per stream or connection, used round robin. */
const poolChunks = 8;
const goalRatio = 1;

/**
 * The defaults, stated: streams bring large chunks, so batches fill by size
 * (up to 10,000 rows or 4 MiB) rather than by waiting, and 4 connections
 * match the direct side's 4.
 */
const gatewaySettings = ingestSettings({
  SQLGATE_INGEST_CONNECTIONS: "4",
  SQLGATE_INGEST_MAX_BATCH_ROWS: "10000",
  SQLGATE_INGEST_MAX_DELAY_MS: "2",
});

/**
 * Devices are numbered from 8,192 up to about a million: zigzag-encoded as a
 * protobuf sint64 they take 3 bytes each, so pre-encoded rows can take a new
 * device in place (see encodedChunk).
 */
const firstDevice = 8192;

/** Row `i` of pre-built chunk `chunk` of worker `worker`: device, ts, value, note. */
function rowOf(worker: number, chunk: number, i: number): [number, string, number, string] {
  const device = (worker * poolChunks + chunk) * chunkRows + i;
  return [
    firstDevice + (device % 100_000),
    datetimeText(Date.UTC(2025, 0, 1) + (chunk * chunkRows + i) * 10),
    Math.round(((device * 7919) % 100_000) * 1.5) / 100,
    i % 10 === 0 ? "threshold" : "ok",
  ];
}

/** The device of row `i` of the `n`-th chunk a worker sends: every chunk sent differs. */
const deviceOf = (worker: number, n: number, i: number) =>
  firstDevice + ((worker * 1_000_003 + n * chunkRows + i) % 1_000_000);

const rowInit = ([device, ts, value, note]: ReturnType<typeof rowOf>): MessageInitShape<
  typeof RowSchema
> => ({
  values: [
    { kind: { case: "int64Value", value: BigInt(device) } },
    { kind: { case: "temporalValue", value: ts } },
    { kind: { case: "float64Value", value } },
    { kind: { case: "stringValue", value: note } },
  ],
});

/** A chunk whose rows are protobuf bytes already, with where each row's device is. */
interface EncodedChunk {
  /** `rows` travel as unknown fields (field 3, the rows), which protobuf-es writes verbatim. */
  readonly message: WriteStreamRequest;
  /** Per row: its bytes and the offset of its device's 3-byte varint in them. */
  readonly devices: readonly { readonly bytes: Uint8Array; readonly at: number }[];
}

/**
 * Rows encoded once (`toBinary`) and attached to an empty WriteStreamRequest
 * as unknown field 3 entries: on the wire the same bytes as `rows`, but
 * serializing the chunk copies them instead of walking 4,000 Value messages.
 */
function encodedChunk(rows: readonly ReturnType<typeof rowOf>[]): EncodedChunk {
  const devices: { bytes: Uint8Array; at: number }[] = [];
  const unknown: UnknownField[] = rows.map((row) => {
    const body = toBinary(RowSchema, create(RowSchema, rowInit(row)));
    // Row.values[0] (tag 0x0a, length 4), Value.int64_value (tag 0x10, 3-byte varint).
    if (body[0] !== 0x0a || body[1] !== 4 || body[2] !== 0x10) {
      throw new Error(
        `unexpected row encoding ${Buffer.from(body.subarray(0, 8)).toString("hex")}`,
      );
    }
    const prefix = varint(body.length);
    const data = new Uint8Array(prefix.length + body.length);
    data.set(prefix);
    data.set(body, prefix.length);
    devices.push({ bytes: data, at: prefix.length + 3 });
    return { no: 3, wireType: WireType.LengthDelimited, data };
  });
  const message = create(WriteStreamRequestSchema);
  message.$unknown = unknown;
  return { message, devices };
}

function varint(n: number): number[] {
  const out: number[] = [];
  for (let v = n; ; v >>>= 7) {
    if (v < 0x80) {
      out.push(v);
      return out;
    }
    out.push((v & 0x7f) | 0x80);
  }
}

/** Writes `device` (8,192 to 1,048,575) zigzag-encoded as a 3-byte varint at `at`. */
function patchDevice(bytes: Uint8Array, at: number, device: number): void {
  const v = device * 2;
  bytes[at] = (v & 0x7f) | 0x80;
  bytes[at + 1] = ((v >>> 7) & 0x7f) | 0x80;
  bytes[at + 2] = v >>> 14;
}

interface Target {
  readonly name: string;
  readonly variant: string;
  readonly gateway: boolean;
  /** Writes for `runSeconds`; resolves with rows written and the streams' summaries. */
  readonly run: (runSeconds: number) => Promise<Outcome>;
}

interface Outcome {
  /** Rows the load generator sent (or INSERTed). */
  readonly rowsSent: number;
  /** Seconds from the start until every stream's summary (or the last INSERT) came back. */
  readonly seconds: number;
  readonly summaries: readonly WriteStreamResponse[];
  readonly errors: readonly string[];
}

interface Sample {
  readonly rate: number;
  readonly rows: number;
  /** Seconds after the senders stopped until the last summary came back. */
  readonly tailSeconds: number;
  readonly cpu: CpuUse;
  readonly inserts: number;
  readonly summaryRows: number;
  readonly summaryBatches: number;
  readonly problems: readonly string[];
}

async function main(): Promise<void> {
  const { db, dataDir, serverVersion } = await startBenchDatabase();
  const connect = () =>
    mysql.createConnection({ socketPath: db.socketPath, user: "root", database: db.database });
  const admin = mysql.createPool({
    socketPath: db.socketPath,
    user: "root",
    database: db.database,
    connectionLimit: 1,
  });
  onCleanup(() => admin.end());
  await admin.query(telemetryDdl);
  const conns = await Promise.all(Array.from({ length: directConnections }, connect));
  onCleanup(async () => void (await Promise.all(conns.map((c) => c.end()))));

  log("starting the gateway (node dist/server/main.js)");
  const gateway = await startGatewayProcess({
    mysqlUrl: db.url,
    poolSize: 4,
    dataDir,
    env: gatewaySettings,
    nodeArgs: gatewayNodeArgs,
  });
  onCleanup(() => gateway.stop());
  const rss: RssSampler = sampleRss(gateway.pid);
  onCleanup(async () => rss.stop());
  const clients = ingestClients(gateway.baseUrl, sessions);

  log(`pre-building ${poolChunks} chunks of ${chunkRows} rows per stream and per connection`);
  const columnList = telemetryColumns.join(", ");
  // Direct, text: statements rendered (escaped by mysql2) once, sent as they are.
  const textStatements = conns.map((_, c) =>
    Array.from({ length: poolChunks }, (_, k) =>
      mysql.format(`INSERT INTO ${telemetryTable} (${columnList}) VALUES ?`, [
        Array.from({ length: chunkRows }, (_, i) => rowOf(c, k, i)),
      ]),
    ),
  );
  // Direct, placeholders: one prepared statement, parameter arrays reused.
  const placeholderSql = `INSERT INTO ${telemetryTable} (${columnList}) VALUES ${Array.from(
    { length: chunkRows },
    () => "(?, ?, ?, ?)",
  ).join(", ")}`;
  const paramArrays = conns.map((_, c) =>
    Array.from({ length: poolChunks }, (_, k) =>
      Array.from({ length: chunkRows }, (_, i) => rowOf(c, k, i)).flat(),
    ),
  );
  // Gateway, encoded per send: protobuf messages built once; only the device changes.
  const chunkMessages = Array.from({ length: streams }, (_, w) =>
    Array.from({ length: poolChunks }, (_, k) =>
      create(WriteStreamRequestSchema, {
        rows: Array.from({ length: chunkRows }, (_, i) => rowInit(rowOf(w, k, i))),
      }),
    ),
  );
  // Gateway, pre-encoded: row bytes built once; the device is patched in place.
  const encodedChunks = Array.from({ length: streams }, (_, w) =>
    Array.from({ length: poolChunks }, (_, k) =>
      encodedChunk(Array.from({ length: chunkRows }, (_, i) => rowOf(w, k, i))),
    ),
  );
  checkEncoding(encodedChunks[0]?.[0], chunkMessages[0]?.[0]);

  const directRun =
    (send: (c: number, n: number) => Promise<unknown>) =>
    async (runSeconds: number): Promise<Outcome> => {
      const start = performance.now();
      const end = start + runSeconds * 1000;
      const errors: string[] = [];
      const statements = await Promise.all(
        conns.map(async (_, c) => {
          let n = 0;
          while (performance.now() < end) {
            try {
              await send(c, n);
              n++;
            } catch (err) {
              errors.push(String(err));
              break;
            }
          }
          return n;
        }),
      );
      const total = statements.reduce((a, b) => a + b, 0);
      return {
        rowsSent: total * chunkRows,
        seconds: (performance.now() - start) / 1000,
        summaries: [],
        errors,
      };
    };

  const setDevices = (rows: readonly Row[], worker: number, n: number) => {
    rows.forEach((row, i) => {
      const cell = row.values[0];
      if (cell !== undefined) {
        cell.kind = { case: "int64Value", value: BigInt(deviceOf(worker, n, i)) };
      }
    });
  };

  /** The `n`-th chunk worker `worker` sends, its devices set for that send. */
  type NextChunk = (worker: number, n: number) => WriteStreamRequest;
  const encodeEachSend: NextChunk = (worker, n) => {
    const pool = chunkMessages[worker] ?? [];
    const chunk = pool[n % pool.length] as WriteStreamRequest;
    setDevices(chunk.rows, worker, n);
    return chunk;
  };
  const preEncoded: NextChunk = (worker, n) => {
    const pool = encodedChunks[worker] ?? [];
    const chunk = pool[n % pool.length] as EncodedChunk;
    chunk.devices.forEach((d, i) => {
      patchDevice(d.bytes, d.at, deviceOf(worker, n, i));
    });
    return chunk.message;
  };

  const gatewayRun =
    (next: NextChunk) =>
    async (runSeconds: number): Promise<Outcome> => {
      const start = performance.now();
      const end = start + runSeconds * 1000;
      let rowsSent = 0;
      async function* chunks(worker: number): AsyncGenerator<WriteStreamRequest> {
        for (let n = 0; performance.now() < end; n++) {
          const chunk = next(worker, n);
          // The first chunk names the table and columns; later ones reuse them.
          let message = chunk;
          if (n === 0) {
            message = create(WriteStreamRequestSchema, {
              table: telemetryTable,
              columns: telemetryColumns as string[],
              durability: Durability.COMMITTED,
              rows: chunk.rows,
            });
            // create() does not copy unknown fields: the pre-encoded rows.
            message.$unknown = chunk.$unknown;
          }
          rowsSent += chunkRows;
          yield message;
        }
      }
      const settled = await Promise.allSettled(
        Array.from({ length: streams }, (_, w) =>
          (clients[w % clients.length] ?? clients[0])?.writeStream(chunks(w)),
        ),
      );
      const summaries: WriteStreamResponse[] = [];
      const errors: string[] = [];
      for (const s of settled) {
        if (s.status === "rejected") errors.push(String(s.reason));
        else if (s.value !== undefined) summaries.push(s.value);
      }
      return { rowsSent, seconds: (performance.now() - start) / 1000, summaries, errors };
    };

  const all: Target[] = [
    {
      name: `direct mysql2, ${directConnections} connections, ${chunkRows}-row INSERT, pre-escaped text (query)`,
      variant: "text",
      gateway: false,
      run: directRun((c, n) => {
        const list = textStatements[c] ?? [];
        return (conns[c] as mysql.Connection).query(list[n % list.length] as string);
      }),
    },
    {
      name: `direct mysql2, ${directConnections} connections, ${chunkRows}-row INSERT, placeholders (execute)`,
      variant: "placeholders",
      gateway: false,
      run: directRun((c, n) => {
        const list = paramArrays[c] ?? [];
        const params = list[n % list.length] as (number | string)[];
        for (let i = 0; i < chunkRows; i++) params[i * 4] = deviceOf(c, n, i);
        return (conns[c] as mysql.Connection).execute(placeholderSql, params);
      }),
    },
    {
      name: `gateway WriteStream, COMMITTED, ${streams} streams (connect-node, rows pre-encoded)`,
      variant: "gateway",
      gateway: true,
      // The load generator's own cost kept out of the way: what the gateway can take.
      run: gatewayRun(preEncoded),
    },
    {
      name: `gateway WriteStream, COMMITTED, ${streams} streams (connect-node, rows encoded per send)`,
      variant: "gateway-encode",
      gateway: true,
      run: gatewayRun(encodeEachSend),
    },
  ];
  const targets = all.filter((t) => variants.includes(t.variant));
  if (targets.length === 0) throw new Error(`BENCH_VARIANTS=${variants.join(",")} names none`);

  // Warm-up (and a check that every path writes what it says), then an empty table.
  rss.phase("warm-up");
  for (const target of targets) {
    const outcome = await target.run(warmupSeconds);
    const inTable = await countRows(admin);
    log(
      `warmed up ${target.name}: ${fmt.rate(inTable / outcome.seconds)} rows/s over ` +
        `${outcome.seconds.toFixed(1)} s`,
    );
    if (outcome.errors.length > 0) throw new Error(`${target.name}: ${outcome.errors[0]}`);
    if (inTable === 0) throw new Error(`${target.name} wrote no rows`);
    await admin.query(`TRUNCATE TABLE ${telemetryTable}`);
  }

  const samples = new Map<Target, Sample[]>(targets.map((t) => [t, []]));
  const errors: string[] = [];
  for (let run = 1; run <= runs; run++) {
    for (const target of targets) {
      const counters = await statusCounters(admin);
      const cpuBefore = cpuSnapshot(gateway.pid, db.pid);
      rss.phase(target.name);
      const outcome = await target.run(seconds);
      const cpuAfter = cpuSnapshot(gateway.pid, db.pid);
      rss.phase("between");
      const delta = countersSince(counters, await statusCounters(admin));
      const rows = await countRows(admin);
      const summaryRows = outcome.summaries.reduce((n, s) => n + Number(s.rowsWritten), 0);
      const problems: string[] = [...outcome.errors];
      if (target.gateway && summaryRows !== rows) {
        problems.push(`summaries say ${summaryRows} rows, COUNT(*) ${rows}`);
      }
      if (rows !== outcome.rowsSent)
        problems.push(`${outcome.rowsSent} rows sent, ${rows} in the table`);
      for (const p of problems) log(`${target.name}: ${p}`);
      errors.push(...problems.map((p) => `${target.name}, run ${run}: ${p}`));
      const sample: Sample = {
        rate: rows / outcome.seconds,
        rows,
        tailSeconds: outcome.seconds - seconds,
        cpu: cpuUse(cpuBefore, cpuAfter, rows),
        inserts: delta.comInsert,
        summaryRows,
        summaryBatches: outcome.summaries.reduce((n, s) => n + s.batches, 0),
        problems,
      };
      samples.get(target)?.push(sample);
      log(
        `${target.name}, run ${run}/${runs}: ${fmt.rate(sample.rate)} rows/s ` +
          `(${rows} rows in ${outcome.seconds.toFixed(2)} s, ${delta.comInsert} INSERTs, ` +
          `${delta.comCommit} COMMITs)` +
          (target.gateway
            ? `, summaries: ${summaryRows} rows, ${sample.summaryBatches} batches; ` +
              `gateway max RSS ${(rss.max(target.name) / 2 ** 20).toFixed(0)} MB`
            : "") +
          `; CPU % client/gateway/MariaDB ${fmt.pct(sample.cpu.percent.client)}/` +
          `${fmt.pct(sample.cpu.percent.gateway)}/${fmt.pct(sample.cpu.percent.mysql)}, ` +
          `other processes ${fmt.pct(sample.cpu.otherPercent)}`,
      );
      await admin.query(`TRUNCATE TABLE ${telemetryTable}`);
    }
  }
  rss.stop();
  writeReport("ingest-stream.md", report(targets, samples, serverVersion, rss, errors));
  const directTargets = targets.filter((t) => !t.gateway);
  const bestDirect = Array.from({ length: runs }, (_, i) =>
    Math.max(...directTargets.map((t) => samples.get(t)?.[i]?.rate ?? Number.NaN)),
  );
  writeFigures(
    "ingest-stream.json",
    targets
      .filter((t) => t.gateway)
      .map((target, index) => ({
        benchmark: "WriteStream, 4 streams",
        name: `${target.name.replace(/^gateway WriteStream, COMMITTED, \d+ streams /, "")}: rows/s ratio to direct`,
        unit: "x",
        ...spread(
          (samples.get(target) ?? []).map((s, i) => s.rate / (bestDirect[i] ?? Number.NaN)),
        ),
        ...(index === 0 ? { goal: { op: ">=" as const, value: goalRatio } } : {}),
      })),
  );
}

/** The pre-encoded chunk must decode to the same rows as the message built the usual way. */
function checkEncoding(
  encoded: EncodedChunk | undefined,
  built: WriteStreamRequest | undefined,
): void {
  if (encoded === undefined || built === undefined) throw new Error("no chunks built");
  const decoded = fromBinary(
    WriteStreamRequestSchema,
    toBinary(WriteStreamRequestSchema, encoded.message),
  );
  const same =
    decoded.rows.length === built.rows.length &&
    Buffer.from(toBinary(WriteStreamRequestSchema, decoded)).equals(
      Buffer.from(toBinary(WriteStreamRequestSchema, built)),
    );
  if (!same) throw new Error("pre-encoded rows do not decode to the rows they were built from");
}

function report(
  targets: readonly Target[],
  samples: Map<Target, Sample[]>,
  serverVersion: string,
  rss: RssSampler,
  errors: readonly string[],
): string {
  const med = (list: readonly Sample[], pick: (s: Sample) => number) => median(list.map(pick));
  const directTargets = targets.filter((t) => !t.gateway);
  /** Per run, the faster direct mode's rate. */
  const bestDirect = Array.from({ length: runs }, (_, i) =>
    Math.max(...directTargets.map((t) => samples.get(t)?.[i]?.rate ?? Number.NaN)),
  );
  const fasterDirect = directTargets
    .map((t) => ({ t, rate: med(samples.get(t) ?? [], (s) => s.rate) }))
    .sort((a, b) => b.rate - a.rate)[0];
  const lines = [
    `## Ingest: WriteStream, ${streams} streams of ${chunkRows}-row chunks, ${new Date().toISOString()}`,
    "",
    `${machineLine(serverVersion)}. Table \`${telemetryDdl}\`, truncated before each run. ` +
      `Gateway: ${streams} WriteStream calls at once over connect-node (Connect, binary, h2c) on ` +
      `${Math.min(sessions, streams)} HTTP/2 session(s), one stream per worker per run, each ` +
      "sending chunks back to back (as fast as HTTP/2 flow control lets it) until the run's " +
      "time is up, then ending its stream and awaiting the summary; the gateway a separate " +
      `process (compiled JS) with ${describeSettings(gatewaySettings)} (other settings default). ` +
      `The load generator pre-builds ${poolChunks} chunks per stream and reuses them round ` +
      "robin, giving each row a new device id before each send, two ways: *rows pre-encoded* " +
      "(each row's protobuf bytes built once and attached to the chunk message as unknown " +
      "fields, which protobuf-es writes verbatim: the same bytes on the wire, the device " +
      "patched in place, so the load generator costs ~1 us/row) and *rows encoded per send* " +
      "(ordinary Row messages built once, serialized by connect-node for every send, as an " +
      "application would). Direct: " +
      `${directConnections} mysql2 connections, each sending ${chunkRows}-row INSERTs back to ` +
      `back, either ${poolChunks} pre-escaped statements per connection reused as they are ` +
      `(\`query\`), or one prepared statement with ${chunkRows * 4} placeholders and reused ` +
      "parameter arrays (`execute`). " +
      `Warm-up ${warmupSeconds} s per path, then ${runs} run(s) of ${seconds} s per path, ` +
      "paths alternating; medians of the runs, min-max across them. Rows/s = COUNT(*) after " +
      "the run / time until the last summary (gateway) or INSERT (direct) came back.",
    "",
    "| path | rows/s | min-max | ratio to faster direct | INSERTs/s | rows/INSERT | " +
      "client CPU us/row | gateway CPU us/row | MariaDB CPU us/row | CPU % client/gateway/MariaDB/other | " +
      "gateway max RSS MB | tail s |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
  ];
  const ratiosOf = (list: readonly Sample[]) =>
    list.map((s, i) => s.rate / (bestDirect[i] ?? Number.NaN));
  for (const target of targets) {
    const list = samples.get(target) ?? [];
    const rates = list.map((s) => s.rate);
    const ratios = ratiosOf(list);
    lines.push(
      `| ${target.name} | ${fmt.rate(median(rates))} | ` +
        `${fmt.rate(Math.min(...rates))}-${fmt.rate(Math.max(...rates))} | ` +
        `${fmt.ratio(median(ratios))} | ` +
        `${fmt.rate(med(list, (s) => s.inserts / seconds))} | ` +
        `${fmt.rate(med(list, (s) => s.rows / s.inserts))} | ` +
        `${fmt.us(med(list, (s) => s.cpu.perUnitUs.client))} | ` +
        `${target.gateway ? fmt.us(med(list, (s) => s.cpu.perUnitUs.gateway)) : "-"} | ` +
        `${fmt.us(med(list, (s) => s.cpu.perUnitUs.mysql))} | ` +
        `${fmt.pct(med(list, (s) => s.cpu.percent.client))}/` +
        `${target.gateway ? fmt.pct(med(list, (s) => s.cpu.percent.gateway)) : "-"}/` +
        `${fmt.pct(med(list, (s) => s.cpu.percent.mysql))}/` +
        `${fmt.pct(med(list, (s) => s.cpu.otherPercent))} | ` +
        `${target.gateway ? (rss.max(target.name) / 2 ** 20).toFixed(0) : "-"} | ` +
        `${target.gateway ? med(list, (s) => s.tailSeconds).toFixed(2) : "-"} |`,
    );
  }
  const gatewayTargets = targets.filter((t) => t.gateway);
  const notes = [""];
  if (gatewayTargets.length > 0 && directTargets.length > 0) {
    notes.push(
      `| gateway path | goal >= ${goalRatio.toFixed(1)}x direct (median of per-run ratios, range) | ` +
        "batches in the summaries / INSERTs in MariaDB, per run |",
      "|---|---|---|",
    );
    for (const target of gatewayTargets) {
      const list = samples.get(target) ?? [];
      const ratios = ratiosOf(list);
      const ratio = median(ratios);
      notes.push(
        `| ${target.name} | ${ratio >= goalRatio ? "met" : "not met"}: ${fmt.ratio(ratio)} ` +
          `(${fmt.ratio(Math.min(...ratios))}-${fmt.ratio(Math.max(...ratios))}) | ` +
          `${list.map((s) => `${s.summaryBatches} / ${s.inserts}`).join(", ")} |`,
      );
    }
    notes.push(
      "",
      "Ratios are against the faster direct mode of the same run (by median here: " +
        `${fasterDirect?.t.variant === "text" ? "pre-escaped text, `query`" : "placeholders, `execute`"}). ` +
        `Gateway max RSS over the whole run: ${(rss.max() / 2 ** 20).toFixed(0)} MB ` +
        `(${(rss.max("start") / 2 ** 20).toFixed(0)} MB idle before the warm-up). ` +
        "INSERTs: MariaDB's Com_insert delta (a gateway batch without idempotency keys is one " +
        "autocommit INSERT of up to SQLGATE_INGEST_MAX_BATCH_ROWS rows). Tail: seconds from " +
        "the end of sending to the last summary (chunks still in flight in the gateway).",
    );
  }
  notes.push(
    "",
    "CPU: each process's utime+stime from /proc over the run (client = this load generator, " +
      "which shares the machine's cores with the gateway and MariaDB; other = the rest of the " +
      "machine, from /proc/stat: anything above a few % means another workload disturbed the run).",
  );
  const disturbed = targets.flatMap((t) =>
    (samples.get(t) ?? []).flatMap((s, i) =>
      s.cpu.otherPercent > disturbedPercent
        ? [`${t.name} run ${i + 1} (${fmt.pct(s.cpu.otherPercent)}%)`]
        : [],
    ),
  );
  if (disturbed.length > 0) {
    notes.push(
      "",
      `Runs disturbed by other processes (> ${disturbedPercent}% of a core): ${disturbed.join("; ")}.`,
    );
  }
  if (errors.length > 0) notes.push("", `Problems: ${errors.join("; ")}.`);
  notes.push("");
  return [...lines, ...notes].join("\n");
}

await runBenchmark(main);
