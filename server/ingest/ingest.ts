/**
 * Bulk ingestion, put together: calls are checked against the schema, their
 * rows rendered once, then either merged with other calls' rows into large
 * transactions (COMMITTED: group-commit.ts) or appended to the durable log
 * and acknowledged at once (BUFFERED: the log flusher writes them later).
 * Start-up creates the internal tables and replays what the log still holds.
 */
import { setMaxListeners } from "node:events";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Row } from "../../gen/sqlgate/v1/value_pb.js";
import type { IngestConfig } from "../config.js";
import type { Database } from "../mysql/database.js";
import type { Logger } from "../observability/logger.js";
import { createBatchWriter } from "./batch-writer.js";
import {
  type AcquireConnection,
  type CallDeadline,
  createGroupCommit,
  type GroupCommit,
} from "./group-commit.js";
import {
  type ConflictPolicy,
  createTargetCatalog,
  type IngestTarget,
  quoteIdentifier,
} from "./ingest-target.js";
import {
  ensureInternalTables,
  type InternalTables,
  internalTables,
  purgeExpiredKeys,
} from "./internal-tables.js";
import type { BufferedLog } from "./log/buffered-log.js";
import { openJetStreamLog } from "./log/jetstream-log.js";
import { openLocalLog } from "./log/local-log.js";
import { renderRows } from "./sql-literal.js";

export type Durability = "committed" | "buffered";

export interface WriteInput {
  readonly table: string;
  readonly columns: readonly string[];
  readonly rows: readonly Row[];
  /** Empty: none. */
  readonly idempotencyKey: string;
  readonly durability: Durability;
  readonly onConflict: ConflictPolicy;
}

export interface WriteResult {
  rowsWritten: number;
  batches: number;
  duplicateBatches: number;
  /** The group-commit transaction that held the rows, if one did. */
  batchId?: number;
  /** After a COMMITTED write: the replication position of its (last) batch, when tracked. */
  position?: string;
}

/** A chunk of a stream: empty table/columns and undefined policies repeat the previous chunk's. */
export interface StreamChunk {
  readonly table: string;
  readonly columns: readonly string[];
  readonly rows: readonly Row[];
  readonly idempotencyKey: string;
  readonly durability: Durability | undefined;
  readonly onConflict: ConflictPolicy | undefined;
}

export interface IngestStats {
  readonly bufferedBytes: number;
  readonly queuedParts: number;
  readonly batchesInFlight: number;
  /** Group-commit transactions committed since start. */
  readonly batches: number;
  /** Rows they committed (duplicates not counted). */
  readonly rows: number;
  readonly logBytes: number;
  readonly logRecords: number;
  /** Age of the oldest record not yet in MySQL, in seconds (0 when none). */
  readonly logLagSeconds: number;
  readonly rejectedRecords: number;
  /** Which BUFFERED log: this gateway's own, or JetStream shared by every replica. */
  readonly logKind: "local" | "jetstream";
  /** Batches this process appended to the buffered log, applied from it, and got again. */
  readonly logAppended: number;
  readonly logApplied: number;
  readonly logRedelivered: number;
}

export interface Ingest {
  /** Creates the internal tables (under a MySQL named lock), opens the log, starts flushing it. */
  start(): Promise<void>;
  write(input: WriteInput, deadline: CallDeadline): Promise<WriteResult>;
  /** Writes chunks as they arrive, several in flight; one summary at the end. */
  writeStream(chunks: AsyncIterable<StreamChunk>, deadline: CallDeadline): Promise<WriteResult>;
  stats(): IngestStats;
  /** The gateway's own tables (created by start()). */
  readonly tables: InternalTables;
  /** Lets queued batches finish and drains the log for up to `drainMs`, then stops. */
  close(drainMs: number): Promise<void>;
}

export interface IngestOptions {
  readonly db: Database;
  readonly config: IngestConfig;
  /** The gateway's data directory; the log lives in its `ingest-log`. */
  readonly dataDir: string;
  readonly logger: Logger;
  /** How long start-up waits for another replica holding the schema lock. */
  readonly lockTimeoutMs: number;
}

/** Chunks of one WriteStream in flight at once: enough to keep batches full. */
const streamWindow = 32;
/** JetStream messages each replica takes (and writes to MySQL together) at once. */
const jetStreamFetch = 256;
/** Longest idempotency key (the key column is VARBINARY(255)). */
const maxKeyBytes = 255;

export function createIngest(options: IngestOptions): Ingest {
  const { db, config, logger } = options;
  const tables: InternalTables = internalTables(
    config.internalDatabase ?? (db.databaseName || "sqlgate"),
  );
  const catalog = createTargetCatalog(
    (sql, params) => db.queryRows(sql, params, 10_000),
    db.databaseName,
  );
  const acquire: AcquireConnection = async () => {
    const conn = await db.acquireForIngest(60_000);
    return { conn, release: (broken) => (broken ? conn.destroy() : conn.release()) };
  };
  let maxStatementBytes = config.maxBatchBytes;
  let groupCommit: GroupCommit | undefined;
  let log: BufferedLog | undefined;
  let upkeep: NodeJS.Timeout | undefined;
  /** Why the internal tables are missing, if they are. */
  let tablesProblem: string | undefined;

  const started = () => {
    if (groupCommit === undefined) {
      throw new ConnectError("ingestion is not started", Code.Unavailable);
    }
    return groupCommit;
  };

  /** The log, for a call that needs the internal tables (a key, or BUFFERED). */
  const needTables = (): BufferedLog => {
    if (tablesProblem !== undefined) throw new ConnectError(tablesProblem, Code.FailedPrecondition);
    if (log === undefined) throw new ConnectError("ingestion is not started", Code.Unavailable);
    return log;
  };

  const prepare = async (input: WriteInput) => {
    if (Buffer.byteLength(input.idempotencyKey) > maxKeyBytes) {
      throw new ConnectError(
        `idempotency_key is longer than ${maxKeyBytes} bytes`,
        Code.InvalidArgument,
      );
    }
    const target = await catalog.resolve(input.table, input.columns, input.onConflict);
    const overhead = target.insertOverheadBytes;
    // BUFFERED rows also fit the log's records (NATS messages have a size cap).
    const logChunk = input.durability === "buffered" ? (log?.maxChunkBytes ?? Infinity) : Infinity;
    const rows = renderRows(
      input.rows,
      target.columns,
      Math.max(1024, Math.min((maxStatementBytes - overhead) >> 1, logChunk)),
    );
    if (rows.longestRowBytes + overhead > maxStatementBytes) {
      throw new ConnectError(
        `a row of ${rows.longestRowBytes} bytes does not fit in one INSERT of at most ${maxStatementBytes} bytes (MySQL's max_allowed_packet and SQLGATE_INGEST_MAX_BATCH_BYTES)`,
        Code.InvalidArgument,
      );
    }
    return { target, rows };
  };

  const write = async (input: WriteInput, deadline: CallDeadline): Promise<WriteResult> => {
    const groupCommit = started();
    const key = input.idempotencyKey === "" ? undefined : input.idempotencyKey;
    if (key !== undefined) needTables();
    const { target, rows } = await prepare(input);
    if (input.durability === "buffered") {
      await needTables().append(target, rows, key, deadline);
      return { rowsWritten: rows.rowCount, batches: 1, duplicateBatches: 0 };
    }
    const result = await groupCommit.commit({ target, rows, idempotencyKey: key }, deadline);
    return result.duplicate
      ? { rowsWritten: 0, batches: 0, duplicateBatches: 1 }
      : {
          rowsWritten: rows.rowCount,
          batches: 1,
          duplicateBatches: 0,
          batchId: result.batchId,
          position: result.position,
        };
  };

  const upkeepOnce = async () => {
    const lease = await acquire();
    let broken = true;
    try {
      const purged = await purgeExpiredKeys(lease.conn, tables, config.keyRetentionMs);
      if (purged > 0) logger.debug({ purged }, "expired idempotency keys deleted");
      await log?.upkeep(lease.conn);
      broken = false;
    } finally {
      lease.release(broken);
    }
  };

  return {
    tables,
    async start() {
      const lease = await acquire();
      let broken = true;
      try {
        const [[packet]] = (await new Promise<unknown>((resolve, reject) =>
          lease.conn.query(
            { sql: "SELECT @@max_allowed_packet", rowsAsArray: true },
            (err, rows) => (err ? reject(err) : resolve(rows)),
          ),
        )) as [[number | string]];
        // Leave room for the packet header and the statement around the rows.
        maxStatementBytes = Math.min(config.maxBatchBytes, Number(packet) - 1024);
        try {
          await ensureInternalTables(lease.conn, tables, options.lockTimeoutMs);
        } catch (err) {
          // A MySQL refusal (a user without CREATE, a read-only server) leaves
          // plain writes working; a lost connection or a lock held too long is fatal.
          const errno = (err as { errno?: unknown }).errno;
          if (typeof errno !== "number") throw err;
          tablesProblem = `the gateway could not create its internal tables in ${quoteIdentifier(tables.database)} (${(err as Error).message}), so idempotency keys and BUFFERED durability are off; grant the gateway's user CREATE, INSERT, SELECT, DELETE there, or set SQLGATE_INTERNAL_DATABASE`;
          logger.error({ database: tables.database, errno }, tablesProblem);
        }
        broken = false;
      } finally {
        lease.release(broken);
      }
      const writer = createBatchWriter({
        tables,
        maxStatementBytes,
        forgetTarget: (target: IngestTarget) => catalog.forget(target),
      });
      groupCommit = createGroupCommit(writer, acquire, {
        ...config,
        maxBatchBytes: Math.min(config.maxBatchBytes, maxStatementBytes),
      });
      if (tablesProblem !== undefined) return;
      const drainBatch = {
        catalog,
        writer,
        tables,
        acquire,
        maxBatchRows: config.maxBatchRows,
        maxBatchBytes: Math.min(config.maxBatchBytes, maxStatementBytes),
        logger,
      };
      log =
        config.log.kind === "jetstream"
          ? await openJetStreamLog({
              ...drainBatch,
              config: config.log,
              fetchMessages: jetStreamFetch,
              connectTimeoutMs: Math.max(5000, options.lockTimeoutMs),
            })
          : await openLocalLog({
              ...drainBatch,
              dataDir: options.dataDir,
              segmentBytes: config.logSegmentBytes,
              maxBytes: config.logMaxBytes,
            });
      await log.start();
      upkeep = setInterval(
        () => {
          upkeepOnce().catch((err: Error) =>
            logger.warn({ error: err.message }, "ingest upkeep failed"),
          );
        },
        Math.min(60_000, config.keyRetentionMs),
      );
      upkeep.unref();
    },
    write,
    async writeStream(chunks, deadline) {
      // Each chunk in flight listens for the end of the call.
      setMaxListeners(2 * streamWindow + 10, deadline.signal);
      const summary: WriteResult = { rowsWritten: 0, batches: 0, duplicateBatches: 0 };
      // Chunks merged into one transaction count as one batch.
      const batchIds = new Set<number>();
      // The stream's position is its last batch's.
      let lastBatch = 0;
      const inFlight = new Set<Promise<void>>();
      let failure: unknown;
      let table = "";
      let columns: readonly string[] = [];
      let durability: Durability = "committed";
      let onConflict: ConflictPolicy = "error";
      for await (const chunk of chunks) {
        if (failure !== undefined) break;
        table = chunk.table || table;
        columns = chunk.columns.length > 0 ? chunk.columns : columns;
        durability = chunk.durability ?? durability;
        onConflict = chunk.onConflict ?? onConflict;
        if (chunk.rows.length === 0) continue;
        if (table === "") {
          throw new ConnectError("the first chunk must name the table", Code.InvalidArgument);
        }
        const done: Promise<void> = write(
          {
            table,
            columns,
            rows: chunk.rows,
            idempotencyKey: chunk.idempotencyKey,
            durability,
            onConflict,
          },
          deadline,
        ).then(
          (r) => {
            summary.rowsWritten += r.rowsWritten;
            if (r.batchId === undefined) summary.batches += r.batches;
            else batchIds.add(r.batchId);
            if (r.batchId !== undefined && r.batchId > lastBatch && r.position) {
              lastBatch = r.batchId;
              summary.position = r.position;
            }
            summary.duplicateBatches += r.duplicateBatches;
            inFlight.delete(done);
          },
          (err: unknown) => {
            failure ??= err;
            inFlight.delete(done);
          },
        );
        inFlight.add(done);
        // Not reading the next chunk is what pushes back on the sender (HTTP/2 flow control).
        while (inFlight.size >= streamWindow) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      if (failure !== undefined) throw failure;
      summary.batches += batchIds.size;
      return summary;
    },
    stats() {
      const batching = groupCommit?.stats();
      const logStats = log?.stats();
      return {
        bufferedBytes: batching?.bufferedBytes ?? 0,
        queuedParts: batching?.queuedParts ?? 0,
        batchesInFlight: batching?.batchesInFlight ?? 0,
        batches: batching?.batches ?? 0,
        rows: batching?.rows ?? 0,
        logKind: logStats?.kind ?? "local",
        logBytes: logStats?.bytes ?? 0,
        logRecords: logStats?.backlog ?? 0,
        logLagSeconds: logStats?.lagSeconds ?? 0,
        rejectedRecords: logStats?.rejectedRecords ?? 0,
        logAppended: logStats?.appended ?? 0,
        logApplied: logStats?.applied ?? 0,
        logRedelivered: logStats?.redelivered ?? 0,
      };
    },
    async close(drainMs) {
      if (upkeep !== undefined) clearInterval(upkeep);
      if (groupCommit !== undefined) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          groupCommit.drained(),
          new Promise((r) => {
            timer = setTimeout(r, drainMs);
          }),
        ]);
        clearTimeout(timer);
      }
      if (log !== undefined) {
        await log.drain(drainMs);
        await log.close();
      }
    },
  };
}
