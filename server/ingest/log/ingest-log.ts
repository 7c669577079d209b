/**
 * What BUFFERED ingest needs from a durable log: append (acknowledged once
 * durable), read back in order, and forget what has been applied to MySQL.
 * The local write-ahead log (segment-log.ts) implements it; a shared log such
 * as NATS JetStream can stand behind the same interface.
 */

export interface LogRecord {
  /** 1, 2, 3, ... in append order, never reused by the same log. */
  readonly seq: number;
  readonly appendedAtMs: number;
  readonly payload: Buffer;
}

export interface IngestLogStats {
  readonly bytes: number;
  readonly unappliedRecords: number;
  readonly oldestUnappliedAtMs: number | undefined;
}

export interface IngestLog {
  /** Names this log in MySQL's bookkeeping of applied records. */
  readonly logId: string;
  nextSeq(): number;
  /** The oldest record still held, or nextSeq() if none. */
  firstSeq(): number;
  /** Resolves with the record's seq once it is durable. */
  append(payload: Buffer, signal?: AbortSignal): Promise<number>;
  /** Consecutive records from `fromSeq` on, at least one if any exists. */
  read(fromSeq: number, maxRecords: number, maxBytes: number): Promise<LogRecord[]>;
  /** Resolves once a record with seq >= fromSeq exists (or the signal aborts, or the log closes). */
  waitForRecords(fromSeq: number, signal?: AbortSignal): Promise<void>;
  /** Records up to `throughSeq` are applied; their space may be reclaimed. */
  markApplied(throughSeq: number): Promise<void>;
  stats(): IngestLogStats;
  close(): Promise<void>;
}
