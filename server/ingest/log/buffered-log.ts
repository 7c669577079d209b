/**
 * Where BUFFERED writes go: a durable log that acknowledges a batch once it
 * is stored, and drains it to MySQL in the background, exactly once. Two
 * stand behind this interface: the local write-ahead log of one gateway
 * (local-log.ts, the default) and NATS JetStream, shared by every replica
 * (jetstream-log.ts, SQLGATE_INGEST_LOG=nats://...).
 */
import type { PoolConnection } from "../../mysql/database.js";
import type { CallDeadline } from "../group-commit.js";
import type { IngestTarget } from "../ingest-target.js";
import type { RenderedRows } from "../sql-literal.js";

export interface BufferedLogStats {
  /** Which log: "local" or "jetstream". */
  readonly kind: "local" | "jetstream";
  /** Bytes the log holds (the local log's files; JetStream: the stream's bytes). */
  readonly bytes: number;
  /** Records not yet in MySQL: appended and not applied, or pending and unacknowledged. */
  readonly backlog: number;
  /** Age of the oldest record not yet in MySQL, in seconds (0 when none or unknown). */
  readonly lagSeconds: number;
  /** Records MySQL refused for good, kept in the rejected (dead-letter) table. */
  readonly rejectedRecords: number;
  /** Records appended by this process since start. */
  readonly appended: number;
  /** Records this process applied to MySQL since start. */
  readonly applied: number;
  /** Records delivered to this process again (JetStream redeliveries). */
  readonly redelivered: number;
}

export interface BufferedLog {
  /** The largest chunk of rendered rows one record may hold (JetStream: NATS's max_payload). */
  readonly maxChunkBytes: number;
  /** Opens the log (recovering or checking it) and starts draining it to MySQL. */
  start(): Promise<void>;
  /**
   * Stores one call's rows for `target`, and resolves once they are durable:
   * only then may the call be acknowledged. Waits for room (or the log)
   * within the call's deadline, then fails with `resource_exhausted` (full)
   * or `unavailable` (unreachable).
   */
  append(
    target: IngestTarget,
    rows: RenderedRows,
    key: string | undefined,
    deadline: CallDeadline,
  ): Promise<void>;
  /** Resolves true once what this process appended is in MySQL, false after `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean>;
  /** Periodic housekeeping on a MySQL connection (old bookkeeping rows). */
  upkeep(conn: PoolConnection): Promise<void>;
  stats(): BufferedLogStats;
  /** Stops draining (after the batch in flight) and closes the log. */
  close(): Promise<void>;
}
