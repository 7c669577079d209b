/**
 * A buffered, retrying row writer over IngestService.WriteStream.
 *
 * Rows are gathered into chunks; chunks are sent on a client stream, each
 * with its own idempotency key (`<writerId>:<chunkNo>`). WriteStream answers
 * once, at the end, with a summary, so a chunk counts as acknowledged only
 * when the stream that carried it has ended and its summary has arrived: a
 * stream is therefore ended after `maxStreamChunks` chunks or `maxStreamMs`,
 * and a new one opened for the chunks that follow. Until then the writer keeps
 * every chunk it sent. When a stream fails with a transient error, all of its
 * chunks are sent again, with the same keys, on a new stream: the gateway
 * records each key in the transaction that applied the chunk, so a chunk that
 * did commit before the failure is acknowledged as a duplicate and not written
 * twice. That is what makes retries exactly-once.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type {
  IngestService,
  WriteStreamRequestSchema,
  WriteStreamResponse,
} from "../../gen/sqlgate/v1/ingest_pb.js";
import type { Row } from "../../gen/sqlgate/v1/value_pb.js";
import { type AsyncQueue, createAsyncQueue } from "./async-queue.js";
import { backoffDelayMs, isRetryable } from "./retry.js";
import { approxRowBytes, rowFromJs } from "./values.js";
import {
  durabilityFromOption,
  onConflictFromOption,
  type WriteDurability,
  type WriteOnConflict,
} from "./write-policy.js";

export interface IngestWriterOptions {
  /** When chunks are acknowledged; the gateway's default (`"committed"`) if unset. */
  readonly durability?: WriteDurability;
  /**
   * What a row with an existing key does; the gateway's default (`"error"`)
   * if unset. `"ignore"` with a primary key that names each event makes
   * at-least-once sources (MQTT QoS 1, queue redeliveries) exactly-once.
   */
  readonly onConflict?: WriteOnConflict;
  /** Rows per chunk (default 1,000). Each chunk is one idempotent unit. */
  readonly maxChunkRows?: number;
  /**
   * Approximate bytes per chunk (default 1 MiB), kept well under the
   * gateway's SQLGATE_MAX_BODY_BYTES (8 MiB by default). A single row larger
   * than this is sent as a chunk of its own.
   */
  readonly maxChunkBytes?: number;
  /** A partial chunk is sent this long after its first row (default 50 ms). */
  readonly maxDelayMs?: number;
  /** A stream is ended, and its summary awaited, after this many chunks (default 100). */
  readonly maxStreamChunks?: number;
  /**
   * A stream is ended this long after it opened (default 1,000 ms): the upper
   * bound, besides commit time, on how long an appended row waits for its
   * acknowledgement.
   */
  readonly maxStreamMs?: number;
  /**
   * Rows appended but not yet acknowledged above which `append` waits
   * (default 100,000): the writer's memory bound and its backpressure.
   */
  readonly maxPendingRows?: number;
  /**
   * How long a run of transient failures is retried, from the first failure
   * of the run, before the writer gives up and surfaces the last error
   * (default 60,000 ms). A stream that succeeds ends the run.
   */
  readonly maxRetryMs?: number;
  /** The first retry's backoff step (default 100 ms); it doubles per retry. */
  readonly retryBaseDelayMs?: number;
  /** The largest backoff step (default 5,000 ms). */
  readonly retryMaxDelayMs?: number;
  /**
   * Deadline of each stream, from its opening to its summary (default
   * 30,000 ms); a stream that takes longer is retried (`deadline_exceeded`).
   * Must exceed `maxStreamMs`.
   */
  readonly streamTimeoutMs?: number;
  /** Called before each retry, for logs and metrics. */
  readonly onRetry?: (event: RetryEvent) => void;
}

/** What {@link IngestWriterOptions.onRetry} is told. */
export interface RetryEvent {
  /** Why the stream failed. */
  readonly error: ConnectError;
  /** 1 for the first retry of a run of failures. */
  readonly attempt: number;
  /** How long the writer waits before sending again. */
  readonly delayMs: number;
  /** Chunks that will be sent again with their keys. */
  readonly chunks: number;
}

/** Totals of a writer's life. Numbers: one writer does not reach 2^53 rows. */
export interface WriterSummary {
  /** Rows appended and acknowledged: after a successful close, every row appended. */
  readonly rowsAcknowledged: number;
  /**
   * Rows applied, summed over the gateway's stream summaries
   * (WriteStreamResponse.rows_written). A chunk whose first summary was lost
   * with its connection is reported by its retry as a duplicate, so its rows
   * are in `rowsAcknowledged` but not here.
   */
  readonly rowsWritten: number;
  /** Gateway batches that held the rows (MySQL transactions, or log appends). */
  readonly batches: number;
  /** Chunks the gateway had applied already: sent again by a retry. */
  readonly duplicateBatches: number;
  /** Streams sent again after a transient failure. */
  readonly retries: number;
}

export interface IngestWriter {
  /**
   * Adds one row (one value per column, converted as `valueFromJs` says).
   * Resolves at once while fewer than `maxPendingRows` rows are
   * unacknowledged, else once enough are. Rejects with `invalid_argument` for
   * a row that cannot be sent (the writer goes on), and with the writer's
   * error once it has failed.
   */
  append(row: readonly unknown[]): Promise<void>;
  /**
   * `append` by the name of a stream's `write`, for `await writer.write(row)`
   * in a loop: awaiting it is what applies the backpressure, since it stops
   * resolving while `maxPendingRows` rows wait for their acknowledgement.
   */
  write(row: readonly unknown[]): Promise<void>;
  /** Resolves when every row appended so far is acknowledged. */
  flush(): Promise<void>;
  /**
   * Refuses further rows, flushes, and resolves with the totals. After a
   * failure it rejects with the error; rows that were not acknowledged then
   * may or may not have been written.
   */
  close(): Promise<WriterSummary>;
  /**
   * The error the writer failed with, if it has; from then on every call
   * rejects with it. Lets a caller tell a refused row (`append` rejected, the
   * writer goes on) from a failed writer.
   */
  readonly error: ConnectError | undefined;
}

interface Chunk {
  readonly no: number;
  readonly key: string;
  readonly rows: Row[];
}

interface Stream {
  readonly queue: AsyncQueue<MessageInitShape<typeof WriteStreamRequestSchema>>;
  readonly chunks: Chunk[];
  readonly abort: AbortController;
  timer: ReturnType<typeof setTimeout> | undefined;
  ended: boolean;
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

const defaults = {
  maxChunkRows: 1000,
  maxChunkBytes: 1024 * 1024,
  maxDelayMs: 50,
  maxStreamChunks: 100,
  maxStreamMs: 1000,
  maxPendingRows: 100_000,
  maxRetryMs: 60_000,
  retryBaseDelayMs: 100,
  retryMaxDelayMs: 5000,
  streamTimeoutMs: 30_000,
};

/**
 * A writer of rows for `columns` of `table` over `client`. The SDK's
 * `client.ingest.writer` is the usual way in.
 */
export function createIngestWriter(
  client: Client<typeof IngestService>,
  table: string,
  columns: readonly string[],
  options: IngestWriterOptions = {},
): IngestWriter {
  const o = resolveOptions(options);
  if (columns.length === 0) throw new TypeError("a writer needs at least one column");
  const durability = durabilityFromOption(options.durability);
  const onConflict = onConflictFromOption(options.onConflict);
  const writerId = globalThis.crypto.randomUUID();

  // The chunk being filled.
  let openRows: Row[] = [];
  let openBytes = 0;
  let sealTimer: ReturnType<typeof setTimeout> | undefined;
  let nextChunkNo = 0;
  /** Sealed chunks waiting for a stream: new ones, and retried ones. */
  const ready: Chunk[] = [];
  /** Numbers of sealed chunks not yet acknowledged. */
  const unacked = new Set<number>();
  /** The stream that takes new chunks, if one is open. */
  let active: Stream | undefined;
  /** Every stream whose summary has not arrived. */
  const streams = new Set<Stream>();
  let pendingRows = 0;
  let waitingAppends = 0;
  let failure: ConnectError | undefined;
  let closing: Promise<WriterSummary> | undefined;

  // Retries: no stream opens before notBefore.
  let notBefore = 0;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let attempt = 0;
  let firstFailureAt: number | undefined;

  const totals = {
    rowsAcknowledged: 0,
    rowsWritten: 0,
    batches: 0,
    duplicateBatches: 0,
    retries: 0,
  };
  let capacityWaiters: Waiter[] = [];
  let flushWaiters: (Waiter & { upTo: number })[] = [];

  function seal(): void {
    clearTimeout(sealTimer);
    sealTimer = undefined;
    if (openRows.length === 0) return;
    const no = nextChunkNo++;
    ready.push({ no, key: `${writerId}:${no}`, rows: openRows });
    unacked.add(no);
    openRows = [];
    openBytes = 0;
    pump();
  }

  /** Sends ready chunks, unless backing off; ends the stream early for a flush. */
  function pump(): void {
    if (failure !== undefined) return;
    const wait = notBefore - Date.now();
    if (wait > 0) {
      retryTimer ??= setTimeout(() => {
        retryTimer = undefined;
        pump();
      }, wait);
      return;
    }
    for (let chunk = ready.shift(); chunk !== undefined; chunk = ready.shift()) {
      const stream = active ?? openStream();
      // The first chunk of a stream names the table and columns; later ones
      // leave them empty (ingest.proto), which is why a retried chunk's
      // message is built for the stream it goes on.
      const first = stream.chunks.length === 0;
      stream.queue.push({
        table: first ? table : "",
        columns: first ? [...columns] : [],
        rows: chunk.rows,
        idempotencyKey: chunk.key,
        durability,
        onConflict,
      });
      stream.chunks.push(chunk);
      if (stream.chunks.length >= o.maxStreamChunks) endStream(stream);
    }
    if (active !== undefined && flushWaiters.length > 0) endStream(active);
  }

  function openStream(): Stream {
    const stream: Stream = {
      queue: createAsyncQueue(),
      chunks: [],
      abort: new AbortController(),
      timer: undefined,
      ended: false,
    };
    stream.timer = setTimeout(() => endStream(stream), o.maxStreamMs);
    active = stream;
    streams.add(stream);
    client
      .writeStream(stream.queue, { signal: stream.abort.signal, timeoutMs: o.streamTimeoutMs })
      .then(
        (summary) => onSummary(stream, summary),
        (err: unknown) => onStreamError(stream, err),
      );
    return stream;
  }

  function endStream(stream: Stream): void {
    if (stream.ended) return;
    stream.ended = true;
    clearTimeout(stream.timer);
    stream.queue.end();
    if (active === stream) active = undefined;
  }

  function onSummary(stream: Stream, summary: WriteStreamResponse): void {
    streams.delete(stream);
    if (failure !== undefined) return;
    if (!stream.ended) {
      // The gateway must read the whole stream before it answers; an early
      // answer cannot say which of the chunks sent after it were applied.
      endStream(stream);
      fail(
        new ConnectError("the gateway answered WriteStream before the stream ended", Code.Internal),
      );
      return;
    }
    for (const chunk of stream.chunks) {
      unacked.delete(chunk.no);
      pendingRows -= chunk.rows.length;
      totals.rowsAcknowledged += chunk.rows.length;
    }
    totals.rowsWritten += Number(summary.rowsWritten);
    totals.batches += summary.batches;
    totals.duplicateBatches += summary.duplicateBatches;
    attempt = 0;
    firstFailureAt = undefined;
    wake(capacityWaiters.splice(0));
    settleFlushes();
  }

  function onStreamError(stream: Stream, reason: unknown): void {
    streams.delete(stream);
    endStream(stream);
    if (failure !== undefined) return;
    const error = ConnectError.from(reason);
    if (!isRetryable(error)) {
      fail(error);
      return;
    }
    const now = Date.now();
    // Streams that die together (one dropped connection) are one retry.
    if (now >= notBefore) {
      firstFailureAt ??= now;
      const delayMs = backoffDelayMs(attempt, {
        baseDelayMs: o.retryBaseDelayMs,
        maxDelayMs: o.retryMaxDelayMs,
      });
      if (now + delayMs - firstFailureAt > o.maxRetryMs) {
        fail(
          new ConnectError(
            `gave up after retrying for ${now - firstFailureAt} ms: ${error.rawMessage}`,
            error.code,
            error.metadata,
            undefined,
            error,
          ),
        );
        return;
      }
      attempt++;
      totals.retries++;
      notBefore = now + delayMs;
      options.onRetry?.({ error, attempt, delayMs, chunks: stream.chunks.length });
    }
    ready.push(...stream.chunks);
    ready.sort((a, b) => a.no - b.no);
    pump();
  }

  function fail(error: ConnectError): void {
    failure = error;
    clearTimeout(sealTimer);
    clearTimeout(retryTimer);
    for (const stream of streams) {
      endStream(stream);
      stream.abort.abort(error);
    }
    streams.clear();
    const waiters = [...capacityWaiters, ...flushWaiters];
    capacityWaiters = [];
    flushWaiters = [];
    for (const w of waiters) w.reject(error);
  }

  function settleFlushes(): void {
    if (flushWaiters.length === 0) return;
    const lowest = lowestUnacked();
    const done = flushWaiters.filter((w) => w.upTo < lowest);
    flushWaiters = flushWaiters.filter((w) => w.upTo >= lowest);
    wake(done);
  }

  function lowestUnacked(): number {
    let lowest = Number.POSITIVE_INFINITY;
    for (const no of unacked) if (no < lowest) lowest = no;
    return lowest;
  }

  function flush(): Promise<void> {
    if (failure !== undefined) return Promise.reject(failure);
    seal();
    const upTo = nextChunkNo - 1;
    if (lowestUnacked() > upTo) return Promise.resolve();
    const flushed = new Promise<void>((resolve, reject) => {
      flushWaiters.push({ upTo, resolve, reject });
    });
    pump();
    return flushed;
  }

  async function append(values: readonly unknown[]): Promise<void> {
    if (failure !== undefined) throw failure;
    if (closing !== undefined) {
      throw new ConnectError("the writer is closed", Code.FailedPrecondition);
    }
    const row = rowFromJs(values, columns);
    if (pendingRows >= o.maxPendingRows) {
      waitingAppends++;
      try {
        while (pendingRows >= o.maxPendingRows) {
          await new Promise<void>((resolve, reject) => {
            capacityWaiters.push({ resolve, reject });
          });
        }
      } finally {
        waitingAppends--;
      }
    }
    openRows.push(row);
    openBytes += approxRowBytes(row);
    pendingRows++;
    if (openRows.length >= o.maxChunkRows || openBytes >= o.maxChunkBytes) {
      seal();
    } else {
      sealTimer ??= setTimeout(seal, o.maxDelayMs);
    }
  }

  return {
    append,
    write: append,
    flush,

    get error() {
      return failure;
    },

    close() {
      closing ??= (async () => {
        // Appends that were waiting for room when close() was called still
        // go in: flush until none is left.
        for (;;) {
          await flush();
          if (waitingAppends === 0 && pendingRows === 0) break;
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
        return { ...totals };
      })();
      return closing;
    },
  };
}

function wake(waiters: Waiter[]): void {
  for (const w of waiters) w.resolve();
}

function resolveOptions(options: IngestWriterOptions): typeof defaults {
  const o = { ...defaults };
  for (const key of Object.keys(defaults) as (keyof typeof defaults)[]) {
    const value = options[key];
    if (value === undefined) continue;
    // A writer may retry, or buffer, without bound; every other setting is a
    // timer or a count that needs a finite value.
    const unbounded = key === "maxRetryMs" || key === "maxPendingRows";
    if (typeof value !== "number" || !(value > 0) || (!unbounded && !Number.isFinite(value))) {
      throw new RangeError(`${key}: expected a positive number, got ${String(value)}`);
    }
    o[key] = value;
  }
  if (o.streamTimeoutMs <= o.maxStreamMs) {
    throw new RangeError(
      `streamTimeoutMs (${o.streamTimeoutMs}) must exceed maxStreamMs (${o.maxStreamMs})`,
    );
  }
  return o;
}
