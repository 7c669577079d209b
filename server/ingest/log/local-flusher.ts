/**
 * Drains the ingest log to MySQL: reads records in order, writes them in
 * large batches through the batch writer, and records which log records each
 * transaction applied in `sqlgate_ingest_log_applied`, in that same
 * transaction. After a crash, a restart or a commit whose outcome was lost,
 * the flusher asks MySQL what was applied and skips it: every record is
 * applied exactly once.
 *
 * While MySQL is down the flusher retries with backoff (the log keeps
 * accepting writes). A record MySQL refuses for its data (the call was
 * already acknowledged, so nobody can be told) is moved, with the error, to
 * `sqlgate_ingest_rejected` instead of blocking the log forever.
 */
import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import type { PoolConnection } from "../../mysql/database.js";
import type { MysqlLikeError } from "../../mysql/errors.js";
import type { Logger } from "../../observability/logger.js";
import { BatchInterrupted, type BatchWriter, type IngestPart } from "../batch-writer.js";
import type { AcquireConnection } from "../group-commit.js";
import { quoteIdentifier, type TargetCatalog } from "../ingest-target.js";
import type { InternalTables } from "../internal-tables.js";
import { stringLiteral } from "../sql-literal.js";
import type { IngestLog, LogRecord } from "./ingest-log.js";
import { decodeLogRecord } from "./log-record.js";

export interface LogFlusherOptions {
  readonly log: IngestLog;
  readonly catalog: TargetCatalog;
  readonly writer: BatchWriter;
  readonly tables: InternalTables;
  readonly acquire: AcquireConnection;
  readonly maxBatchRows: number;
  readonly maxBatchBytes: number;
  readonly logger: Logger;
}

export interface LogFlusherStats {
  /** Every record up to this seq is in MySQL (or rejected). */
  readonly appliedThroughSeq: number;
  readonly rejectedRecords: number;
  /** Failed attempts to reach MySQL since the last success. */
  readonly failingAttempts: number;
}

export interface LogFlusher {
  /** Learns from MySQL what was applied, then flushes in the background. */
  start(): Promise<void>;
  /** Resolves once every record appended so far is applied, or after `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean>;
  /** Stops after the batch in flight. */
  close(): Promise<void>;
  stats(): LogFlusherStats;
}

interface LoggedPart extends IngestPart {
  readonly seq: number;
}

/** Seqs as `(first,last)` runs of consecutive numbers. */
function runsOf(seqs: readonly number[]): [number, number][] {
  const runs: [number, number][] = [];
  for (const seq of seqs) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[1] + 1 === seq) last[1] = seq;
    else runs.push([seq, seq]);
  }
  return runs;
}

/** Errors that say MySQL or the table is not there right now, not that the record is bad. */
function isTransient(err: unknown): boolean {
  if (err instanceof BatchInterrupted) return true;
  const code = err instanceof ConnectError ? err.code : Code.Unavailable;
  return code === Code.Unavailable || code === Code.ResourceExhausted || code === Code.Internal;
}

export function createLogFlusher(options: LogFlusherOptions): LogFlusher {
  const { log, tables, logger } = options;
  const logId = stringLiteral(log.logId);
  const stop = new AbortController();
  /** Applied ranges read from MySQL at start-up (and after an uncertain commit). */
  let applied: [number, number][] = [];
  let cursor = 1;
  let rejectedRecords = 0;
  let failingAttempts = 0;
  let loop: Promise<void> | undefined;
  let progress: (() => void)[] = [];

  const recordApplied = (parts: readonly LoggedPart[]) =>
    `INSERT INTO ${tables.logApplied} (log_id, first_seq, last_seq) VALUES ${runsOf(
      parts.map((p) => p.seq),
    )
      .map(([first, last]) => `(${logId},${first},${last})`)
      .join(",")}`;

  const loadApplied = async () => {
    const lease = await options.acquire();
    try {
      applied = await new Promise((resolve, reject) => {
        lease.conn.query(
          {
            sql: `SELECT first_seq, last_seq FROM ${tables.logApplied} WHERE log_id = ? AND last_seq >= ? ORDER BY first_seq`,
            values: [log.logId, log.firstSeq()],
            rowsAsArray: true,
          },
          (err, rows) =>
            err
              ? reject(err)
              : resolve(
                  (rows as [string | number, string | number][]).map(([a, b]) => [
                    Number(a),
                    Number(b),
                  ]),
                ),
        );
      });
      lease.release(false);
    } catch (err) {
      lease.release(true);
      throw err;
    }
  };

  /** Whether MySQL had `seq` already; `applied` is sorted and pruned as the cursor moves. */
  const isApplied = (seq: number) => {
    for (const [first, last] of applied) {
      if (first > seq) return false;
      if (seq <= last) return true;
    }
    return false;
  };

  const reject = (conn: PoolConnection, record: LogRecord, target: string, error: ConnectError) => {
    const cause = (error.cause ?? {}) as MysqlLikeError;
    return new Promise<void>((resolve, fail) => {
      const run = (sql: string, values: unknown[], next: () => void) =>
        conn.query({ sql, values }, (err) => (err ? fail(err) : next()));
      run("START TRANSACTION", [], () =>
        run(
          `INSERT INTO ${tables.rejected} (log_id, seq, target, errno, sql_state, message, record) VALUES (?, ?, ?, ?, ?, ?, ?)`,
          [
            log.logId,
            record.seq,
            target,
            cause.errno ?? 0,
            cause.sqlState ?? "",
            error.message,
            record.payload,
          ],
          () =>
            run(
              `INSERT INTO ${tables.logApplied} (log_id, first_seq, last_seq) VALUES (?, ?, ?)`,
              [log.logId, record.seq, record.seq],
              () => run("COMMIT", [], resolve),
            ),
        ),
      );
    });
  };

  /** Applies `records` (none of them applied before); throws on transient failures. */
  const flush = async (records: readonly LogRecord[]) => {
    const parts: LoggedPart[] = [];
    const refused: { record: LogRecord; target: string; error: ConnectError }[] = [];
    for (const record of records) {
      let target = "?";
      try {
        const logged = decodeLogRecord(record.payload);
        target = `${logged.database}.${logged.table}`;
        const resolved = await options.catalog.resolve(
          `${quoteIdentifier(logged.database)}.${quoteIdentifier(logged.table)}`,
          logged.columns,
          logged.onConflict,
        );
        parts.push({
          target: resolved,
          rows: logged.rows,
          idempotencyKey: logged.idempotencyKey,
          seq: record.seq,
        });
      } catch (err) {
        if (isTransient(err)) throw err;
        refused.push({ record, target, error: ConnectError.from(err, Code.InvalidArgument) });
      }
    }
    const lease = await options.acquire();
    let broken = true;
    try {
      const outcomes =
        parts.length > 0 ? await options.writer.apply(lease.conn, parts, { recordApplied }) : [];
      outcomes.forEach((outcome, i) => {
        const part = parts[i] as LoggedPart;
        if (!outcome.ok) {
          const record = records.find((r) => r.seq === part.seq) as LogRecord;
          refused.push({
            record,
            target: `${part.target.database}.${part.target.table}`,
            error: outcome.error,
          });
        }
      });
      for (const { record, target, error } of refused) {
        await reject(lease.conn, record, target, error);
        rejectedRecords++;
        logger.error(
          { logId: log.logId, seq: record.seq, target, error: error.message },
          "MySQL refused an acknowledged BUFFERED record; it is kept in the rejected-records table",
        );
      }
      broken = false;
    } finally {
      lease.release(broken);
    }
  };

  /** Waits `ms`, or less if the flusher is closed meanwhile. */
  const sleep = (ms: number) => delay(ms, undefined, { signal: stop.signal }).catch(() => {});

  const advance = async (throughSeq: number) => {
    cursor = throughSeq + 1;
    if (applied.length > 0) applied = applied.filter(([, last]) => last >= cursor);
    await log.markApplied(throughSeq);
    for (const wake of progress) wake();
    progress = [];
  };

  const run = async () => {
    let delayMs = 100;
    let uncertain = false;
    while (!stop.signal.aborted) {
      try {
        if (uncertain) {
          await loadApplied();
          uncertain = false;
        }
        if (cursor >= log.nextSeq()) {
          await log.waitForRecords(cursor, stop.signal);
          continue;
        }
        const records = await log.read(cursor, options.maxBatchRows, options.maxBatchBytes);
        const last = records[records.length - 1];
        if (last === undefined) {
          await sleep(100);
          continue;
        }
        const fresh = records.filter((r) => !isApplied(r.seq));
        if (fresh.length > 0) await flush(fresh);
        if (failingAttempts > 0) logger.info({ logId: log.logId }, "ingest log flushing resumed");
        failingAttempts = 0;
        delayMs = 100;
        await advance(last.seq);
      } catch (err) {
        if (stop.signal.aborted) break;
        failingAttempts++;
        // After a broken connection we cannot know whether the last COMMIT landed: ask MySQL.
        uncertain = true;
        if (failingAttempts === 1 || failingAttempts % 20 === 0) {
          logger.warn(
            {
              logId: log.logId,
              attempt: failingAttempts,
              retryInMs: delayMs,
              error: (err as Error).message,
            },
            "ingest log cannot be flushed to MySQL yet; retrying",
          );
        }
        await sleep(delayMs);
        delayMs = Math.min(delayMs * 2, 5000);
      }
    }
  };

  return {
    async start() {
      await loadApplied();
      cursor = log.firstSeq();
      loop = run();
    },
    async drain(timeoutMs) {
      const until = Date.now() + timeoutMs;
      while (cursor < log.nextSeq() && Date.now() < until && !stop.signal.aborted) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.max(0, until - Date.now()));
          progress.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return cursor >= log.nextSeq();
    },
    async close() {
      stop.abort();
      await loop;
    },
    stats: () => ({ appliedThroughSeq: cursor - 1, rejectedRecords, failingAttempts }),
  };
}
