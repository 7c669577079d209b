/**
 * Group commit: concurrent writes to the same table and columns wait a moment
 * in one queue and leave it together, as one transaction of few large INSERTs
 * (see batch-writer.ts), on one of a fixed number of ingest connections.
 *
 * A queue is flushed when it holds `maxBatchRows` rows or `maxBatchBytes`
 * bytes, when its oldest part has waited `maxDelayMs`, or at once when no
 * batch at all is in flight (a lone caller pays no delay). While every
 * connection is busy, queues keep filling, so batches grow with the load: the
 * slower MySQL commits, the more rows each commit carries.
 *
 * Memory is bounded: parts queued or in flight hold at most `bufferBytes` of
 * SQL text; a call that does not fit waits (first come, first served) and
 * fails with `resource_exhausted` if its deadline comes first. A call whose
 * deadline passes while its rows are still queued is taken out (its rows are
 * never written); once its batch has left, the call ends with
 * `deadline_exceeded` but the batch still commits: a retry with the same
 * idempotency key then finds it applied.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { PoolConnection } from "../mysql/database.js";
import { limitExceeded } from "../mysql/errors.js";
import { BatchInterrupted, type BatchWriter, type IngestPart } from "./batch-writer.js";

export interface GroupCommitOptions {
  readonly maxBatchRows: number;
  readonly maxBatchBytes: number;
  readonly maxDelayMs: number;
  readonly bufferBytes: number;
  /** Batches in flight at once, each on its own connection. */
  readonly connections: number;
}

/** What a call learns when its rows are committed. */
export interface CommitResult {
  /** True when its idempotency key had been applied before: nothing was written. */
  readonly duplicate: boolean;
  /** Which transaction held the rows (1, 2, ... per gateway), to count a stream's batches. */
  readonly batchId: number;
  /** The replication position after that transaction, when tracked; else "". */
  readonly position: string;
}

export interface GroupCommitStats {
  readonly queuedParts: number;
  readonly bufferedBytes: number;
  readonly batchesInFlight: number;
  readonly batches: number;
  readonly rows: number;
}

/**
 * A call's deadline: its signal (aborted when the client goes away or its own
 * deadline passes), and the time it had left when it arrived, or the default
 * deadline if it gave none.
 */
export interface CallDeadline {
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
}

/**
 * How long a call may wait for room in a buffer: a little less than its
 * deadline, so that it hears `resource_exhausted` (which names the limit)
 * rather than its own client's `deadline_exceeded`.
 */
export function roomWaitMs(deadline: CallDeadline): number {
  return Math.max(0, deadline.timeoutMs - Math.min(250, deadline.timeoutMs / 10));
}

export interface GroupCommit {
  /** Resolves once `part`'s batch has committed; rejects with the part's own error. */
  commit(part: IngestPart, deadline: CallDeadline): Promise<CommitResult>;
  stats(): GroupCommitStats;
  /** Resolves when nothing is queued or in flight. */
  drained(): Promise<void>;
}

/** Acquires an ingest connection; `release(broken)` gives it back. */
export type AcquireConnection = () => Promise<{
  readonly conn: PoolConnection;
  release(broken: boolean): void;
}>;

interface Waiting {
  readonly part: IngestPart;
  readonly bytes: number;
  resolve(result: CommitResult): void;
  reject(error: ConnectError): void;
  /** Queued, in a batch in flight, or finished (settled or taken out). */
  state: "queued" | "sent" | "done";
}

interface Queue {
  readonly parts: Waiting[];
  rows: number;
  bytes: number;
  timer: NodeJS.Timeout | undefined;
  ready: boolean;
}

export function createGroupCommit(
  writer: BatchWriter,
  acquire: AcquireConnection,
  options: GroupCommitOptions,
): GroupCommit {
  const queues = new Map<string, Queue>();
  /** Queues whose parts may leave now, oldest first. */
  const ready = new Set<Queue>();
  const admission: { bytes: number; admit(): void }[] = [];
  let bufferedBytes = 0;
  let inFlight = 0;
  let batches = 0;
  let rows = 0;
  let idle: (() => void)[] = [];

  const settle = (w: Waiting, outcome: CommitResult | ConnectError) => {
    if (w.state === "done") return;
    w.state = "done";
    if (outcome instanceof ConnectError) w.reject(outcome);
    else w.resolve(outcome);
  };

  const release = (bytes: number) => {
    bufferedBytes -= bytes;
    while (admission.length > 0) {
      const next = admission[0] as { bytes: number; admit(): void };
      if (bufferedBytes > 0 && bufferedBytes + next.bytes > options.bufferBytes) break;
      admission.shift();
      bufferedBytes += next.bytes;
      next.admit();
    }
    if (bufferedBytes === 0 && inFlight === 0 && queues.size === 0) {
      for (const done of idle) done();
      idle = [];
    }
  };

  const markReady = (queue: Queue) => {
    if (queue.timer !== undefined) clearTimeout(queue.timer);
    queue.timer = undefined;
    queue.ready = true;
    ready.add(queue);
  };

  /** Takes whole parts off `queue`, up to the batch limits (at least one). */
  const cut = (key: string, queue: Queue): Waiting[] => {
    const batch: Waiting[] = [];
    let batchRows = 0;
    let batchBytes = 0;
    while (queue.parts.length > 0) {
      const next = queue.parts[0] as Waiting;
      const n = next.part.rows.rowCount;
      if (
        batch.length > 0 &&
        (batchRows + n > options.maxBatchRows || batchBytes + next.bytes > options.maxBatchBytes)
      ) {
        break;
      }
      queue.parts.shift();
      batch.push(next);
      batchRows += n;
      batchBytes += next.bytes;
    }
    queue.rows -= batchRows;
    queue.bytes -= batchBytes;
    ready.delete(queue);
    queue.ready = false;
    if (queue.parts.length === 0) {
      queues.delete(key);
    } else {
      // What is left has waited too: it leaves with the next free connection.
      markReady(queue);
    }
    return batch;
  };

  const dispatch = () => {
    while (inFlight < options.connections && ready.size > 0) {
      const queue = ready.values().next().value as Queue;
      const key = (queue.parts[0] as Waiting).part.target.key;
      const batch = cut(key, queue);
      inFlight++;
      void send(batch).finally(() => {
        inFlight--;
        release(batch.reduce((sum, w) => sum + w.bytes, 0));
        dispatch();
      });
    }
  };

  const send = async (batch: Waiting[]) => {
    const live = batch.filter((w) => w.state === "queued");
    if (live.length === 0) return;
    for (const w of live) w.state = "sent";
    let lease: Awaited<ReturnType<AcquireConnection>>;
    try {
      lease = await acquire();
    } catch (err) {
      const error = ConnectError.from(err, Code.Unavailable);
      for (const w of live) settle(w, error);
      return;
    }
    let broken = false;
    try {
      const outcomes = await writer.apply(
        lease.conn,
        live.map((w) => w.part),
      );
      const batchId = ++batches;
      live.forEach((w, i) => {
        const outcome = outcomes[i];
        if (outcome === undefined) return;
        if (outcome.ok) {
          if (!outcome.duplicate) rows += w.part.rows.rowCount;
          settle(w, { duplicate: outcome.duplicate, batchId, position: outcome.position });
        } else settle(w, outcome.error);
      });
    } catch (err) {
      broken = true;
      const error =
        err instanceof BatchInterrupted
          ? err.duringCommit
            ? new ConnectError(
                "the connection to MySQL broke while the batch holding these rows was committing: they may or may not be written; retry with the same idempotency key to be sure",
                Code.Unavailable,
                undefined,
                undefined,
                err.error,
              )
            : err.error
          : ConnectError.from(err);
      for (const w of live) settle(w, error);
    } finally {
      lease.release(broken);
    }
  };

  const enqueue = (w: Waiting) => {
    const key = w.part.target.key;
    let queue = queues.get(key);
    if (queue === undefined) {
      queue = { parts: [], rows: 0, bytes: 0, timer: undefined, ready: false };
      queues.set(key, queue);
    }
    queue.parts.push(w);
    queue.rows += w.part.rows.rowCount;
    queue.bytes += w.bytes;
    if (!queue.ready) {
      if (
        inFlight === 0 ||
        options.maxDelayMs === 0 ||
        queue.rows >= options.maxBatchRows ||
        queue.bytes >= options.maxBatchBytes
      ) {
        markReady(queue);
      } else if (queue.timer === undefined) {
        const q = queue;
        q.timer = setTimeout(() => {
          q.timer = undefined;
          markReady(q);
          dispatch();
        }, options.maxDelayMs);
      }
    }
    dispatch();
  };

  /** Takes a queued part out of its queue (its deadline passed). */
  const withdraw = (w: Waiting) => {
    const key = w.part.target.key;
    const queue = queues.get(key);
    if (queue === undefined) return;
    const i = queue.parts.indexOf(w);
    if (i === -1) return;
    queue.parts.splice(i, 1);
    queue.rows -= w.part.rows.rowCount;
    queue.bytes -= w.bytes;
    if (queue.parts.length === 0) {
      if (queue.timer !== undefined) clearTimeout(queue.timer);
      ready.delete(queue);
      queues.delete(key);
    }
    release(w.bytes);
  };

  const admit = (bytes: number, deadline: CallDeadline) =>
    new Promise<void>((resolve, reject) => {
      if (
        admission.length === 0 &&
        (bufferedBytes === 0 || bufferedBytes + bytes <= options.bufferBytes)
      ) {
        bufferedBytes += bytes;
        resolve();
        return;
      }
      const { signal } = deadline;
      const entry = {
        bytes,
        admit: () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        const i = admission.indexOf(entry);
        if (i !== -1) admission.splice(i, 1);
        reject(
          limitExceeded(
            `the ingest buffer stayed full (${options.bufferBytes} bytes) until the call's deadline`,
            "SQLGATE_INGEST_BUFFER_BYTES",
            options.bufferBytes,
            "MySQL is slower than the writers: slow down, give calls a longer deadline, or raise SQLGATE_INGEST_BUFFER_BYTES",
          ),
        );
      };
      admission.push(entry);
      const timer = setTimeout(onAbort, roomWaitMs(deadline));
      signal.addEventListener("abort", onAbort, { once: true });
    });

  return {
    async commit(part, deadline) {
      const { signal } = deadline;
      signal.throwIfAborted();
      const bytes = part.rows.bytes;
      await admit(bytes, deadline);
      return new Promise<CommitResult>((resolve, reject) => {
        const w: Waiting = { part, bytes, resolve, reject, state: "queued" };
        const onAbort = () => {
          if (w.state === "queued") {
            withdraw(w);
            settle(
              w,
              new ConnectError(
                "the deadline passed before the rows left the queue: nothing was written",
                Code.DeadlineExceeded,
              ),
            );
          } else if (w.state === "sent") {
            settle(
              w,
              new ConnectError(
                "the deadline passed while the batch holding these rows was committing: they may or may not be written; retry with the same idempotency key to be sure",
                Code.DeadlineExceeded,
              ),
            );
          }
        };
        // The call's signal ends with the client's deadline or departure; the
        // timer covers a call that gave no deadline (the gateway's default).
        const timer = setTimeout(onAbort, deadline.timeoutMs);
        signal.addEventListener("abort", onAbort, { once: true });
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
        };
        w.resolve = (r) => {
          done();
          resolve(r);
        };
        w.reject = (e) => {
          done();
          reject(e);
        };
        enqueue(w);
      });
    },
    stats: () => ({
      queuedParts: [...queues.values()].reduce((n, q) => n + q.parts.length, 0),
      bufferedBytes,
      batchesInFlight: inFlight,
      batches,
      rows,
    }),
    drained: () =>
      bufferedBytes === 0 && inFlight === 0 && queues.size === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => idle.push(resolve)),
  };
}
