/**
 * The shared buffered log: a NATS JetStream work-queue stream that every
 * gateway replica publishes BUFFERED batches to and drains to MySQL through
 * one durable pull consumer (SQLGATE_INGEST_LOG=nats://...). A replica that
 * dies for good strands nothing: its batches are in the stream, and the
 * others drain them.
 *
 * - Publishing: one message per batch (the rows packed as log-record.ts
 *   writes them, split only where NATS's max_payload demands), its
 *   Nats-Msg-Id derived from the batch's idempotency key (made up when the
 *   caller gave none), so JetStream drops a batch published twice within its
 *   duplicate window. The call is acknowledged after JetStream's publish ack,
 *   never before; publishes of concurrent calls are in flight together.
 * - Draining: each replica fetches messages in large batches, writes them
 *   with the group-commit batch writer, recording each message's key in
 *   `sqlgate_ingest_keys` in the same transaction, and acks after the COMMIT
 *   (telling JetStream it is still working while a long commit runs).
 *   JetStream delivers at least once (after a crash even acked messages come
 *   back); the keys in MySQL make the write exactly once. A batch MySQL
 *   refuses for its data is tried again later, and after
 *   SQLGATE_NATS_MAX_DELIVER deliveries goes to the dead-letter table
 *   (`sqlgate_ingest_rejected`) with its error; it never holds up others.
 *   While MySQL is down, batches go back (nak) and draining backs off.
 */
import { createHash, randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { JetStreamConfig } from "../../config.js";
import type { PoolConnection } from "../../mysql/database.js";
import type { MysqlLikeError } from "../../mysql/errors.js";
import { connectNats, differences, ensureStream, untilAnswered } from "../../nats/jetstream.js";
import type { Logger } from "../../observability/logger.js";
import { BatchInterrupted, type BatchWriter, type IngestPart } from "../batch-writer.js";
import { type AcquireConnection, roomWaitMs } from "../group-commit.js";
import { quoteIdentifier, type TargetCatalog } from "../ingest-target.js";
import type { InternalTables } from "../internal-tables.js";
import type { RenderedRows } from "../sql-literal.js";
import type { BufferedLog } from "./buffered-log.js";
import { decodeLogRecord, encodeLogRecord } from "./log-record.js";

export interface JetStreamLogOptions {
  readonly config: JetStreamConfig;
  readonly catalog: TargetCatalog;
  readonly writer: BatchWriter;
  readonly tables: InternalTables;
  readonly acquire: AcquireConnection;
  /** Messages fetched (and written to MySQL together) at most at once. */
  readonly fetchMessages: number;
  /** How long start-up waits for NATS to answer. */
  readonly connectTimeoutMs: number;
  readonly logger: Logger;
}

/** Room left in a message for the record's header (table, columns, key) and NATS's own. */
const headerRoom = 64 * 1024;

/** A message taken from the stream, with what it holds once decoded. */
interface Delivered {
  readonly msg: JsMsg;
  part?: IngestPart;
  target: string;
  error?: ConnectError;
}

/** Errors of a publish that say the stream is full (more room comes as it drains). */
function isFull(err: unknown): boolean {
  return /maximum (bytes|messages)|insufficient resources|resource limits/i.test(
    err instanceof Error ? err.message : String(err),
  );
}

/** Errors of a drain that say MySQL is not there right now, not that the batch is bad. */
function isTransient(err: unknown): boolean {
  if (err instanceof BatchInterrupted) return true;
  const code = err instanceof ConnectError ? err.code : Code.Unavailable;
  return code === Code.Unavailable || code === Code.ResourceExhausted || code === Code.Internal;
}

/** The Nats-Msg-Id of a batch: its key, hashed (keys are up to 255 arbitrary bytes). */
function messageId(key: string): string {
  return `sqlgate-${createHash("sha256").update(key).digest("base64url")}`;
}

/**
 * `rows` in groups of chunks whose bytes stay under `maxBytes` each (the
 * chunks were rendered no larger than that, unless one row alone is).
 */
function splitRows(rows: RenderedRows, maxBytes: number): RenderedRows[] {
  if (rows.longestRowBytes > maxBytes) {
    throw new ConnectError(
      `a row of ${rows.longestRowBytes} bytes does not fit in one NATS message (max_payload ${maxBytes + headerRoom}); raise the NATS servers' max_payload`,
      Code.InvalidArgument,
    );
  }
  if (rows.bytes <= maxBytes) return [rows];
  const groups: RenderedRows[] = [];
  let start = 0;
  while (start < rows.chunks.length) {
    let end = start;
    let bytes = 0;
    let count = 0;
    while (
      end < rows.chunks.length &&
      (end === start || bytes + (rows.chunkBytes[end] as number) <= maxBytes)
    ) {
      bytes += rows.chunkBytes[end] as number;
      count += rows.chunkRows?.[end] ?? 0;
      end++;
    }
    groups.push({
      chunks: rows.chunks.slice(start, end),
      chunkBytes: rows.chunkBytes.slice(start, end),
      rowCount: count,
      bytes,
      longestRowBytes: rows.longestRowBytes,
    });
    start = end;
  }
  return groups;
}

export async function openJetStreamLog(options: JetStreamLogOptions): Promise<BufferedLog> {
  const { config, logger, tables } = options;
  const where = config.servers.join(",");
  const nc = await connectNats(config, options.connectTimeoutMs, "SQLGATE_INGEST_LOG");
  // A cluster that just started (or elects a leader) leaves JetStream API
  // requests unanswered for a while: ask again until the start-up timeout.
  const setUpUntil = performance.now() + options.connectTimeoutMs;
  const jsm = await untilAnswered(() => jetstreamManager(nc), setUpUntil);
  await untilAnswered(() => ensureLogStream(jsm, config), setUpUntil);
  await untilAnswered(() => ensureConsumer(jsm, config), setUpUntil);
  const js = jetstream(nc);
  logger.info(
    { servers: where, stream: config.stream, consumer: config.consumer, replicas: config.replicas },
    "BUFFERED ingest uses the shared JetStream log",
  );

  const stop = new AbortController();
  const logId = `jetstream:${config.stream}`;
  let appended = 0;
  let applied = 0;
  let redelivered = 0;
  let rejectedRecords = 0;
  let backlog = 0;
  let bytes = 0;
  let lagSeconds = 0;
  let loop: Promise<void> | undefined;
  let watcher: NodeJS.Timeout | undefined;

  /** Waits `ms`, or less if the log is closed meanwhile. */
  const sleep = (ms: number) => delay(ms, undefined, { signal: stop.signal }).catch(() => {});

  /** Backlog from the consumer (the stream's count can be wrong after a 2.9 crash). */
  const watch = async () => {
    try {
      const consumer = await jsm.consumers.info(config.stream, config.consumer);
      backlog = consumer.num_pending + consumer.num_ack_pending;
      if (backlog === 0) lagSeconds = 0;
      bytes = (await jsm.streams.info(config.stream)).state.bytes;
    } catch {
      // NATS is away: keep the last figures; publishing reports the outage.
    }
  };

  /** Decodes each message into a part of the batch, or the reason it cannot be one. */
  const decode = async (messages: readonly JsMsg[]): Promise<Delivered[]> => {
    const delivered: Delivered[] = [];
    for (const msg of messages) {
      const item: Delivered = { msg, target: "?" };
      try {
        const logged = decodeLogRecord(Buffer.from(msg.data));
        item.target = `${logged.database}.${logged.table}`;
        item.part = {
          target: await options.catalog.resolve(
            `${quoteIdentifier(logged.database)}.${quoteIdentifier(logged.table)}`,
            logged.columns,
            logged.onConflict,
          ),
          rows: logged.rows,
          idempotencyKey: logged.idempotencyKey,
        };
      } catch (err) {
        if (isTransient(err)) throw err;
        item.error = ConnectError.from(err, Code.InvalidArgument);
      }
      delivered.push(item);
    }
    return delivered;
  };

  /** Keeps a batch's messages from being redelivered while its commit runs. */
  const keepWorking = (messages: readonly JsMsg[]) => {
    const timer = setInterval(
      () => {
        for (const msg of messages) msg.working();
      },
      Math.max(500, config.ackWaitMs / 3),
    );
    return () => clearInterval(timer);
  };

  const deadLetter = (conn: PoolConnection, item: Delivered) => {
    const cause = (item.error?.cause ?? {}) as MysqlLikeError;
    return new Promise<void>((resolve, reject) =>
      conn.query(
        {
          sql: `INSERT IGNORE INTO ${tables.rejected} (log_id, seq, target, errno, sql_state, message, record) VALUES (?, ?, ?, ?, ?, ?, ?)`,
          values: [
            logId,
            item.msg.seq,
            item.target,
            cause.errno ?? 0,
            cause.sqlState ?? "",
            item.error?.message ?? "",
            Buffer.from(item.msg.data),
          ],
        },
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  };

  /**
   * Writes one fetched batch on `conn`; acks what is in MySQL, hands the
   * rest back for later. Throws (everything handed back) when MySQL fails.
   */
  const apply = async (conn: PoolConnection, messages: readonly JsMsg[]) => {
    const stopWorking = keepWorking(messages);
    try {
      const delivered = await decode(messages);
      const writable = delivered.filter((d) => d.part !== undefined);
      const outcomes =
        writable.length > 0
          ? await options.writer.apply(
              conn,
              writable.map((d) => d.part as IngestPart),
            )
          : [];
      outcomes.forEach((outcome, i) => {
        if (!outcome.ok) (writable[i] as Delivered).error = outcome.error;
      });
      for (const item of delivered) {
        if (item.error === undefined) {
          item.msg.ack();
          applied++;
        } else if (item.msg.info.deliveryCount >= config.maxDeliver) {
          // Kept in MySQL now: done with, as far as the stream is concerned.
          await deadLetter(conn, item);
          item.msg.ack();
          rejectedRecords++;
          logger.error(
            { seq: item.msg.seq, target: item.target, error: item.error.message },
            "MySQL refused an acknowledged BUFFERED batch every time; it is kept in the dead-letter table",
          );
        } else {
          // Tried again later, after the others; maybe the table is fixed by then.
          item.msg.nak(Math.min(30_000, 1000 * item.msg.info.deliveryCount));
        }
      }
    } catch (err) {
      // Nothing of this batch is acknowledged: it all comes back.
      for (const msg of messages) msg.nak(1000);
      throw err;
    } finally {
      stopWorking();
    }
  };

  const run = async () => {
    const consumer = await js.consumers.get(config.stream, config.consumer);
    let failing = 0;
    while (!stop.signal.aborted) {
      // A MySQL connection first: while MySQL is down, nothing is taken
      // from the stream (each delivery counts towards SQLGATE_NATS_MAX_DELIVER).
      let lease: Awaited<ReturnType<AcquireConnection>> | undefined;
      let broken = true;
      try {
        lease = await options.acquire();
        // At most fetchMessages x NATS's max_payload (1 MiB by default) in memory.
        const batch = await consumer.fetch({ max_messages: options.fetchMessages, expires: 1000 });
        const messages: JsMsg[] = [];
        try {
          for await (const msg of batch) {
            messages.push(msg);
            if (msg.redelivered) redelivered++;
          }
        } catch (err) {
          // A fetch can fail part way ("heartbeats missed"): what came is
          // written now, not left to wait out its ack wait.
          if (messages.length === 0) throw err;
        }
        if (messages.length > 0) {
          const oldest = Math.min(...messages.map((m) => m.info.timestampNanos / 1e6));
          lagSeconds = Math.max(0, (Date.now() - oldest) / 1000);
          await apply(lease.conn, messages);
        }
        broken = false;
        if (failing > 0) logger.info("JetStream ingest draining resumed");
        failing = 0;
      } catch (err) {
        lease?.release(true);
        lease = undefined;
        if (stop.signal.aborted) break;
        failing++;
        const delayMs = Math.min(100 * 2 ** Math.min(failing, 6), 5000);
        if (failing === 1 || failing % 20 === 0) {
          logger.warn(
            { attempt: failing, retryInMs: delayMs, error: (err as Error).message },
            "JetStream ingest cannot be drained to MySQL yet; retrying",
          );
        }
        await sleep(delayMs);
      } finally {
        lease?.release(broken);
      }
    }
  };

  const maxChunkBytes = Math.max(1024, (nc.info?.max_payload ?? 1024 * 1024) - headerRoom);
  return {
    maxChunkBytes,
    async start() {
      await watch();
      if (backlog > 0) logger.info({ records: backlog }, "JetStream ingest: draining the backlog");
      loop = run();
      watcher = setInterval(() => void watch(), 1000);
      watcher.unref();
    },

    async append(target, rows, key, deadline) {
      const until = performance.now() + roomWaitMs(deadline);
      const batchKey = key ?? `sqlgate:${randomUUID()}`;
      const groups = splitRows(rows, maxChunkBytes);
      // Each part of a split batch has a key of its own, the same on every retry.
      const stem = createHash("sha256").update(batchKey).digest("base64url");
      await Promise.all(
        groups.map((group, i) => {
          const partKey = groups.length === 1 ? batchKey : `sqlgate-part:${stem}#${i}`;
          return publish(encodeLogRecord(target, group, partKey), messageId(partKey));
        }),
      );
      appended += groups.length;

      async function publish(record: Buffer, msgID: string) {
        let delayMs = 50;
        for (;;) {
          try {
            const left = until - performance.now();
            await js.publish(config.subject, record, {
              msgID,
              timeout: Math.max(100, Math.min(5000, left)),
            });
            return;
          } catch (err) {
            const full = isFull(err);
            if (deadline.signal.aborted || until - performance.now() < delayMs) {
              throw full
                ? new ConnectError(
                    `the JetStream stream ${config.stream} is full (SQLGATE_NATS_MAX_BYTES) and did not drain in time`,
                    Code.ResourceExhausted,
                  )
                : new ConnectError(
                    `NATS JetStream (${where}) did not store the batch: ${(err as Error).message}; nothing was acknowledged, retry with the same idempotency key`,
                    Code.Unavailable,
                  );
            }
            await new Promise((resolve) => setTimeout(resolve, delayMs));
            delayMs = Math.min(delayMs * 2, 1000);
          }
        }
      }
    },

    // The stream is shared: what this replica published is drained by any
    // replica, now or after a restart. Nothing is local to wait for.
    drain: async () => true,

    upkeep: async () => {},

    stats: () => ({
      kind: "jetstream",
      bytes,
      backlog,
      lagSeconds,
      rejectedRecords,
      appended,
      applied,
      redelivered,
    }),

    async close() {
      stop.abort();
      clearInterval(watcher);
      await loop?.catch(() => {});
      await nc.drain().catch(() => nc.close());
    },
  };
}

/** Creates the work-queue stream, or checks the one there (see ensureStream). */
function ensureLogStream(jsm: JetStreamManager, config: JetStreamConfig): Promise<void> {
  return ensureStream(
    jsm,
    config.stream,
    {
      subjects: [config.subject],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      num_replicas: config.replicas,
      max_bytes: config.maxBytes,
      discard: DiscardPolicy.New,
      duplicate_window: nanos(config.duplicateWindowMs),
    },
    "SQLGATE_NATS_STREAM",
  );
}

/** Creates the shared durable consumer, or checks the one there (as ensureStream). */
async function ensureConsumer(jsm: JetStreamManager, config: JetStreamConfig): Promise<void> {
  const want = {
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(config.ackWaitMs),
    // Unlimited: a batch is never left undelivered in the stream. The gateway
    // moves one MySQL keeps refusing to the dead-letter table itself, after
    // SQLGATE_NATS_MAX_DELIVER deliveries.
    max_deliver: -1,
  };
  const have = await jsm.consumers
    .info(config.stream, config.consumer)
    .catch(async (err: unknown) => {
      if (!/consumer not found/i.test(String(err))) throw err;
      return jsm.consumers
        .add(config.stream, {
          durable_name: config.consumer,
          deliver_policy: DeliverPolicy.All,
          // Fetches of every replica at once must fit.
          max_ack_pending: 20_000,
          ...want,
        })
        .catch(async (addErr: unknown) => {
          if (!/already (in use|exists)/i.test(String(addErr))) throw addErr;
          return jsm.consumers.info(config.stream, config.consumer);
        });
    });
  const problems = differences(have.config as unknown as Record<string, unknown>, want);
  if (problems.length > 0) {
    throw new Error(
      `the JetStream consumer ${config.consumer} of ${config.stream} exists with other settings (${problems.join("; ")}); the gateway does not change it: fix it by hand, or set SQLGATE_NATS_CONSUMER to another name`,
    );
  }
}
