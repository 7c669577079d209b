/**
 * The local buffered log: this gateway's write-ahead log on its own disk
 * (segment-log.ts, under SQLGATE_DATA_DIR/ingest-log), drained to MySQL by
 * the local flusher. The default: no other service needed. Its rows are on
 * one machine until flushed: a replica lost for good loses what it had not
 * flushed (the shared JetStream log is the answer to that).
 */
import path from "node:path";
import type { PoolConnection } from "../../mysql/database.js";
import type { Logger } from "../../observability/logger.js";
import type { BatchWriter } from "../batch-writer.js";
import { type AcquireConnection, type CallDeadline, roomWaitMs } from "../group-commit.js";
import type { TargetCatalog } from "../ingest-target.js";
import type { InternalTables } from "../internal-tables.js";
import type { BufferedLog } from "./buffered-log.js";
import { createLogFlusher } from "./local-flusher.js";
import { encodeLogRecord } from "./log-record.js";
import { openSegmentLog } from "./segment-log.js";

export interface LocalLogOptions {
  /** The gateway's data directory; the log lives in its `ingest-log`. */
  readonly dataDir: string;
  readonly segmentBytes: number;
  readonly maxBytes: number;
  readonly catalog: TargetCatalog;
  readonly writer: BatchWriter;
  readonly tables: InternalTables;
  readonly acquire: AcquireConnection;
  readonly maxBatchRows: number;
  readonly maxBatchBytes: number;
  readonly logger: Logger;
}

export async function openLocalLog(options: LocalLogOptions): Promise<BufferedLog> {
  const { logger } = options;
  const log = await openSegmentLog({
    dir: path.join(options.dataDir, "ingest-log"),
    segmentBytes: options.segmentBytes,
    maxBytes: options.maxBytes,
  });
  const { truncatedBytes, corruptSegments, droppedSeqs } = log.recovered;
  if (droppedSeqs > 0 || corruptSegments.length > 0) {
    logger.error(
      { truncatedBytes, corruptSegments, droppedSeqs },
      "ingest log: damaged records were set aside; acknowledged BUFFERED rows may be lost",
    );
  } else if (truncatedBytes > 0) {
    logger.warn({ truncatedBytes }, "ingest log: a torn tail (a crash mid-append) was cut off");
  }
  const flusher = createLogFlusher({ ...options, log });
  let appended = 0;
  let appliedAtStart = 0;

  return {
    maxChunkBytes: Number.POSITIVE_INFINITY,
    async start() {
      await flusher.start();
      appliedAtStart = flusher.stats().appliedThroughSeq;
      const pending = log.stats().unappliedRecords;
      if (pending > 0) {
        logger.info({ records: pending }, "ingest log: replaying records not yet in MySQL");
      }
    },
    async append(target, rows, key, deadline: CallDeadline) {
      const record = encodeLogRecord(target, rows, key);
      // Near full, the wait for room ends a little before the deadline (see roomWaitMs).
      const nearFull = log.stats().bytes + record.length > options.maxBytes;
      await log.append(
        record,
        nearFull
          ? AbortSignal.any([deadline.signal, AbortSignal.timeout(roomWaitMs(deadline))])
          : deadline.signal,
      );
      appended++;
    },
    async drain(timeoutMs) {
      const drained = await flusher.drain(timeoutMs);
      if (!drained) {
        logger.warn(
          { records: log.nextSeq() - (flusher.stats().appliedThroughSeq + 1) },
          "ingest log not fully flushed at shutdown; the rest is replayed at the next start",
        );
      }
      return drained;
    },
    upkeep: (conn: PoolConnection) =>
      new Promise<void>((resolve, reject) =>
        conn.query(
          {
            sql: `DELETE FROM ${options.tables.logApplied} WHERE log_id = ? AND last_seq < ?`,
            values: [log.logId, log.firstSeq()],
          },
          (err) => (err ? reject(err) : resolve()),
        ),
      ),
    stats() {
      const logStats = log.stats();
      const oldest = logStats.oldestUnappliedAtMs;
      const flushed = flusher.stats();
      return {
        kind: "local",
        bytes: logStats.bytes,
        backlog: logStats.unappliedRecords,
        lagSeconds: oldest === undefined ? 0 : Math.max(0, (Date.now() - oldest) / 1000),
        rejectedRecords: flushed.rejectedRecords,
        appended,
        applied: Math.max(0, flushed.appliedThroughSeq - appliedAtStart),
        redelivered: 0,
      };
    },
    async close() {
      await flusher.close();
      await log.close();
    },
  };
}
