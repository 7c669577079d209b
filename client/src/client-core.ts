/**
 * The SDK over any Connect `Transport`: `execute`, `batch`, `stream`,
 * `transaction` and `ingest`, with lossless values both ways.
 *
 * Nothing here knows which runtime it runs on: it imports no `node:` module,
 * directly or through anything it imports, so the fetch entry (`fetch.ts`)
 * and the Node entry (`index.ts`) build the same client over their own
 * transports. Every SQL method rejects with a `DatabaseError`.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type CallOptions,
  type Client,
  createClient as createConnectClient,
  type Transport,
} from "@connectrpc/connect";
import { ChangeService } from "../../gen/sqlgate/v1/changes_pb.js";
import {
  DatabaseService,
  type ExecuteOptionsSchema,
  type ExecuteResponse,
  type StreamExecuteRequestSchema,
  type Timing as TimingMessage,
} from "../../gen/sqlgate/v1/database_pb.js";
import { IngestService } from "../../gen/sqlgate/v1/ingest_pb.js";
import type { Field } from "../../gen/sqlgate/v1/value_pb.js";
import { type ChangesClient, createChangesClient } from "./changes.js";
import {
  type Consistency,
  createPositionTracker,
  type PositionTracker,
  readRouting,
} from "./consistency.js";
import { databaseErrorFrom } from "./database-error.js";
import { createIngestClient, type IngestClient } from "./ingest.js";
import { createUnaryIngestClient } from "./ingest-unary.js";
import { type Params, paramFieldsFromJs } from "./params.js";
import { defaultReadRetries, isReadStatement, withReadRetries } from "./read-retry.js";
import {
  createRowDecoder,
  pickValueOptions,
  type RowDecoder,
  type RowShape,
  type ValueOptions,
} from "./rows.js";
import { type RunnerHooks, runTransaction, type TransactionOptions } from "./transaction.js";

/** Options of one statement: row shape, value conversion, limits, cancellation. */
export interface QueryOptions extends ValueOptions {
  /** Rows as objects keyed by column name (default) or as arrays in field order. */
  readonly as?: RowShape;
  /**
   * The statement's deadline: sent as the call's deadline (the gateway kills
   * the statement on MySQL when it passes, `deadline_exceeded`) and capped by
   * the gateway's SQLGATE_MAX_TIMEOUT_MS. Unset: the gateway's
   * SQLGATE_DEFAULT_TIMEOUT_MS.
   */
  readonly timeoutMs?: number;
  /**
   * The most rows to return; past it the result is cut and `truncated` set.
   * Unset or 0: the gateway's SQLGATE_MAX_ROWS. Not for `stream`.
   */
  readonly maxRows?: number;
  /** Runs the statement read-only: MySQL refuses any write (`permission_denied`). Not inside a transaction. */
  readonly readOnly?: boolean;
  /** Cancels the call (`canceled`); the gateway stops the statement on MySQL. */
  readonly signal?: AbortSignal;
}

/** `QueryOptions` for rows as arrays. */
export type ArrayQueryOptions = QueryOptions & { readonly as: "array" };
/** `QueryOptions` for rows as objects (the default). */
export type ObjectQueryOptions = QueryOptions & { readonly as?: "object" };

/** Where a statement's time went, in microseconds (numbers: far below 2^53). */
export interface Timing {
  /** From the request's arrival at the gateway to its response being ready. */
  readonly serverUs: number;
  /** From sending the statement to MySQL to its complete result. */
  readonly mysqlUs: number;
}

/** The result of one statement. */
export interface ExecuteResult<Row = Record<string, unknown>> {
  /** The rows, converted as the call's value options say. */
  readonly rows: Row[];
  /** One per column; empty for statements without a result set. */
  readonly fields: Field[];
  /** Rows matched by an UPDATE or DELETE, or written by an INSERT (CLIENT_FOUND_ROWS). */
  readonly rowsAffected: number;
  /** The first AUTO_INCREMENT value an INSERT generated, else 0n; exact (BIGINT ids). */
  readonly lastInsertId: bigint;
  /** `lastInsertId` when an AUTO_INCREMENT value was generated; absent otherwise. */
  readonly insertId?: bigint;
  /** Warnings the statement raised (0 for SELECTs; see the README's known limitations). */
  readonly warningCount: number;
  /** True when the result had more rows than `maxRows` (or SQLGATE_MAX_ROWS) and was cut. */
  readonly truncated: boolean;
  /** MySQL's info string, such as "Rows matched: 1  Changed: 1  Warnings: 0". */
  readonly info: string;
  readonly timing: Timing;
  /**
   * After a write, when the gateway has read replicas: the primary's
   * replication position (the client sends its newest with later reads); else "".
   */
  readonly position: string;
  /** "primary" or "replica <host:port>" when the gateway has read replicas; else "". */
  readonly servedBy: string;
}

/** One statement of a batch: SQL text alone, or with parameters. */
export type BatchStatement = string | { readonly sql: string; readonly params?: Params };

/** Options of a batch: those of a statement (applied to each), and `atomic`. */
export interface BatchOptions extends QueryOptions {
  /**
   * All statements in one transaction (a savepoint inside an open one) that
   * is rolled back at the first error, whose `statementIndex` names the
   * statement. Without it, the statements before a failing one stay written.
   */
  readonly atomic?: boolean;
}

/** What a streamed statement reports once its last row has arrived. */
export interface StreamSummary {
  readonly rowsAffected: number;
  readonly lastInsertId: bigint;
  readonly warningCount: number;
  readonly timing: Timing;
}

/** Options of a streamed statement: those of `execute` but `maxRows` (streams are unbounded). */
export type StreamOptions = Omit<QueryOptions, "maxRows">;

/**
 * The rows of a streamed statement, decoded as they arrive. Iterate it once
 * with `for await`; the call starts with the iteration. Breaking out of the
 * loop (or a `signal`) cancels the call, and the gateway stops the statement
 * on MySQL. While the loop body runs, no more rows are read: a slow consumer
 * holds back the gateway and MySQL (HTTP/2 flow control), not memory.
 */
export interface RowStream<Row> extends AsyncIterable<Row> {
  /** The columns: set before the first row is yielded (and after the loop for an empty result). */
  readonly fields: Field[] | undefined;
  /** Set once the last message has arrived: after a loop that ran to its end. */
  readonly summary: StreamSummary | undefined;
}

/** The SQL methods, outside a transaction or bound to one. */
export interface SqlRunner {
  /** Runs one statement and returns its whole result. */
  execute<Row = Record<string, unknown>>(
    sql: string,
    params?: Params,
    options?: ObjectQueryOptions,
  ): Promise<ExecuteResult<Row>>;
  execute<Row extends unknown[] = unknown[]>(
    sql: string,
    params: Params | undefined,
    options: ArrayQueryOptions,
  ): Promise<ExecuteResult<Row>>;
  /** Runs statements in order on one connection; one result per statement. */
  batch<Row = Record<string, unknown>>(
    statements: readonly BatchStatement[],
    options?: BatchOptions & { readonly as?: "object" },
  ): Promise<ExecuteResult<Row>[]>;
  batch<Row extends unknown[] = unknown[]>(
    statements: readonly BatchStatement[],
    options: BatchOptions & { readonly as: "array" },
  ): Promise<ExecuteResult<Row>[]>;
  /** Streams the rows of one statement, however many (see `RowStream`). */
  stream<Row = Record<string, unknown>>(
    sql: string,
    params?: Params,
    options?: StreamOptions & { readonly as?: "object" },
  ): RowStream<Row>;
  stream<Row extends unknown[] = unknown[]>(
    sql: string,
    params: Params | undefined,
    options: StreamOptions & { readonly as: "array" },
  ): RowStream<Row>;
}

/** The SQL methods bound to one interactive transaction. */
export interface Transaction extends SqlRunner {
  /** The transaction's token (opaque; for logs and for raw `DatabaseService` calls). */
  readonly session: string;
}

/** The SDK's client: SQL, transactions and ingest on one gateway. */
export interface SqlgateClient extends SqlRunner {
  /**
   * Runs `fn` in a transaction: BeginTransaction, `fn(tx)`, then
   * CommitTransaction if it resolves, or RollbackTransaction if it throws
   * (and the error is re-thrown). When the transaction loses a conflict
   * (deadlock, lock wait timeout: `aborted` from MySQL), the whole of `fn`
   * runs again in a new transaction, up to `retries` times (default 2), so
   * `fn` must be safe to run more than once (no side effects outside `tx`).
   * Resolves with what `fn` resolved with.
   */
  transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** Bulk writes: `write` (one call) and `writer` (buffered, retried, exactly once). */
  readonly ingest: IngestClient;
  /** Row changes as they are committed: `subscribe({ tables, from })`, resuming by itself. */
  readonly changes: ChangesClient;
  /**
   * The Connect transport, for services the SDK does not wrap:
   * `createClient(Service, client.transport)` from `@connectrpc/connect`.
   */
  readonly transport: Transport;
  /** Releases the client's connections. Close writers first: calls still running fail. */
  close(): Promise<void>;
  /**
   * This client with reads routed for `consistency` (see `Consistency`):
   * same connections, same newest position; `close()` on either closes both.
   */
  withConsistency(consistency: Consistency): SqlgateClient;
}

/** Options of {@link createClientCore}: client-wide value options, and what the transport can do. */
export interface ClientCoreOptions extends ValueOptions {
  /**
   * Whether the transport can stream a request body (client streaming).
   * connect-node can; fetch cannot, and the ingest writer then sends each
   * chunk as a unary Write (see ingest-unary.ts). Default true.
   */
  readonly clientStreaming?: boolean;
  /** Called once by `close()`: releases what the transport holds. */
  readonly onClose?: () => void | Promise<void>;
  /**
   * A deadline for every call that sets none itself (a call's own
   * `timeoutMs` wins). Unset: calls without one take the gateway's
   * SQLGATE_DEFAULT_TIMEOUT_MS.
   */
  readonly timeoutMs?: number;
  /**
   * How many times a read outside a transaction is sent again when its call
   * was lost (the gateway died, restarted or could not be reached; see
   * read-retry.ts), within the call's deadline. Default 2; 0 never resends.
   * Reads are calls whose every statement starts with SELECT, SHOW, VALUES
   * or TABLE, or that run with `readOnly`. Writes are never resent.
   */
  readonly readRetries?: number;
}

/**
 * The SDK's client over `transport`. The entries build it with their
 * transport; call it directly to run the SDK over any other Connect
 * transport (for example `createRouterTransport` in tests, or gRPC-Web).
 * Client-wide value options are defaults that each call may override.
 */
export function createClientCore(
  baseTransport: Transport,
  options: ClientCoreOptions = {},
): SqlgateClient {
  const transport =
    options.timeoutMs !== undefined
      ? withDefaultTimeout(baseTransport, options.timeoutMs)
      : baseTransport;
  const db = createConnectClient(DatabaseService, transport);
  const ingestClient = createConnectClient(IngestService, transport);
  const defaults = pickValueOptions(options);
  const changes = createChangesClient(createConnectClient(ChangeService, transport), defaults);
  const readRetries = readRetriesFrom(options.readRetries);
  const positions = createPositionTracker();
  const seen = (position: string) => positions.see(position);
  const ingest =
    options.clientStreaming === false
      ? unaryIngest(createIngestClient(createUnaryIngestClient(ingestClient), seen))
      : createIngestClient(ingestClient, seen);
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      await options.onClose?.();
    })();
    return closed;
  };
  const clientFor = (consistency: Consistency | undefined): SqlgateClient => ({
    ...createSqlRunner(db, "", defaults, {}, { readRetries, positions, consistency }),
    transaction: (fn, txOptions = {}) =>
      runTransaction(
        db,
        txOptions,
        (session, hooks) => createSqlRunner(db, session, defaults, hooks),
        fn,
        seen,
      ),
    ingest,
    changes,
    transport,
    close,
    withConsistency(next) {
      readRouting(next, positions); // refuses an unknown name now, not at the first read
      return clientFor(next);
    },
  });
  return clientFor(undefined);
}

/**
 * `transport` with `timeoutMs` as the deadline of every call that has none,
 * the same for every transport (connect-node's HTTP/2 pool, connect-web).
 */
function withDefaultTimeout(transport: Transport, timeoutMs: number): Transport {
  if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
    throw new RangeError(`timeoutMs: expected a positive number, got ${String(timeoutMs)}`);
  }
  return {
    unary: (method, signal, callTimeoutMs, header, input, contextValues) =>
      transport.unary(method, signal, callTimeoutMs ?? timeoutMs, header, input, contextValues),
    stream: (method, signal, callTimeoutMs, header, input, contextValues) =>
      transport.stream(method, signal, callTimeoutMs ?? timeoutMs, header, input, contextValues),
  };
}

function readRetriesFrom(value: number | undefined): number {
  if (value === undefined) return defaultReadRetries;
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(
      `readRetries: expected a whole number of at least 0, got ${String(value)}`,
    );
  }
  return value;
}

/**
 * Over unary Writes, a writer's "stream" defaults to one chunk: each Write
 * is then acknowledged and retried on its own (see ingest-unary.ts).
 */
function unaryIngest(ingest: IngestClient): IngestClient {
  return {
    write: ingest.write,
    writer: (table, columns, options = {}) =>
      ingest.writer(table, columns, { maxStreamChunks: 1, ...options }),
  };
}

type DatabaseClient = Client<typeof DatabaseService>;

/**
 * Sends a call of `statements` with `send`; when they all read and
 * `retries` allows, again after a lost attempt (read-retry.ts), each
 * attempt with what is left of the call's deadline.
 */
export type CallSender = <T>(
  statements: readonly string[],
  options: QueryOptions,
  send: (callOptions: CallOptions) => Promise<T>,
) => Promise<T>;

/** How a runner outside a transaction routes reads and resends lost ones. */
export interface ReadPolicy {
  readonly readRetries: number;
  /** The client's newest position, sent with reads and updated by every answer. */
  readonly positions: PositionTracker;
  readonly consistency: Consistency | undefined;
}

function callSender(retries: number, headers?: Record<string, string>): CallSender {
  return (statements, options, send) => {
    const reads = options.readOnly === true || statements.every(isReadStatement);
    if (retries === 0 || !reads) return send(callOptions(options, headers));
    const timeoutMs =
      options.timeoutMs !== undefined && options.timeoutMs > 0 ? options.timeoutMs : undefined;
    return withReadRetries({ retries, timeoutMs, signal: options.signal }, (left) =>
      send(callOptions(left === undefined ? options : { ...options, timeoutMs: left }, headers)),
    );
  };
}

/**
 * The SQL methods on `session` ("" outside a transaction). `reads` applies
 * outside a transaction only: its statements run once, on its connection.
 */
export function createSqlRunner(
  db: DatabaseClient,
  session: string,
  defaults: ValueOptions,
  hooks: RunnerHooks = {},
  reads?: ReadPolicy,
): SqlRunner {
  const fail = (reason: unknown): never => {
    const err = databaseErrorFrom(reason);
    hooks.onError?.(err);
    throw err;
  };
  const guard = hooks.before;
  const sendCall = callSender(reads?.readRetries ?? 0, hooks.headers);
  /** The options of a call of `statements`, routed as a read if they all read. */
  const optionsFor = (statements: readonly string[], options: QueryOptions) => ({
    ...statementOptions(options),
    ...(reads !== undefined && isRead(statements, options)
      ? readRouting(reads.consistency, reads.positions)
      : {}),
  });
  const seen = (position: string) => reads?.positions.see(position);
  return {
    async execute(sql: string, params?: Params, options: QueryOptions = {}) {
      try {
        guard?.();
        const request = {
          sql,
          ...paramFieldsFromJs(params),
          session,
          options: optionsFor([sql], options),
        };
        const response = await sendCall([sql], options, (call) => db.execute(request, call));
        seen(response.position);
        return resultFrom(response, options.as ?? "object", valueOptions(defaults, options));
      } catch (err) {
        return fail(err);
      }
    },

    async batch(statements: readonly BatchStatement[], options: BatchOptions = {}) {
      try {
        guard?.();
        if (!Array.isArray(statements))
          throw new TypeError("batch: expected an array of statements");
        const request = {
          statements: statements.map((s) =>
            typeof s === "string" ? { sql: s } : { sql: s.sql, ...paramFieldsFromJs(s.params) },
          ),
          atomic: options.atomic ?? false,
          session,
          // An atomic batch is a transaction: the gateway runs it on the primary.
          options: options.atomic
            ? statementOptions(options)
            : optionsFor(
                statements.map((s) => (typeof s === "string" ? s : s.sql)),
                options,
              ),
        };
        const response = await sendCall(
          request.statements.map((s) => s.sql),
          options,
          (call) => db.executeBatch(request, call),
        );
        seen(response.position);
        const shape = options.as ?? "object";
        const values = valueOptions(defaults, options);
        return response.results.map((r) => resultFrom(r, shape, values));
      } catch (err) {
        return fail(err);
      }
    },

    stream(sql: string, params?: Params, options: StreamOptions = {}) {
      const request = {
        sql,
        ...paramFieldsFromJs(params),
        session,
        options: optionsFor([sql], options),
      };
      return createRowStream(db, request, options, defaults, hooks, sendCall, seen, fail);
    },
  } as SqlRunner;
}

/** Whether a call's statements only read (see read-retry.ts), or it runs read-only. */
function isRead(statements: readonly string[], options: QueryOptions): boolean {
  return options.readOnly === true || statements.every(isReadStatement);
}

function valueOptions(defaults: ValueOptions, options: ValueOptions): ValueOptions {
  return { ...defaults, ...pickValueOptions(options) };
}

function statementOptions(options: QueryOptions): MessageInitShape<typeof ExecuteOptionsSchema> {
  return {
    maxRows: uint32("maxRows", options.maxRows),
    timeoutMs: uint32("timeoutMs", options.timeoutMs),
    readOnly: options.readOnly ?? false,
  };
}

function callOptions(options: QueryOptions, headers?: Record<string, string>): CallOptions {
  return {
    ...(headers !== undefined ? { headers } : {}),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    ...(options.timeoutMs !== undefined && options.timeoutMs > 0
      ? { timeoutMs: options.timeoutMs }
      : {}),
  };
}

function uint32(name: string, value: number | undefined): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(`${name}: expected a whole number of at least 0, got ${String(value)}`);
  }
  return value;
}

function timingFrom(timing: TimingMessage | undefined): Timing {
  return { serverUs: Number(timing?.serverUs ?? 0n), mysqlUs: Number(timing?.mysqlUs ?? 0n) };
}

function resultFrom(
  response: ExecuteResponse,
  shape: RowShape,
  values: ValueOptions,
): ExecuteResult<unknown> {
  const decode =
    response.fields.length > 0 ? createRowDecoder(response.fields, shape, values) : undefined;
  const rows = decode === undefined ? [] : response.rows.map(decode);
  return {
    rows,
    fields: response.fields,
    rowsAffected: Number(response.rowsAffected),
    lastInsertId: response.lastInsertId,
    ...(response.lastInsertId !== 0n ? { insertId: response.lastInsertId } : {}),
    warningCount: response.warningCount,
    truncated: response.truncated,
    info: response.info,
    timing: timingFrom(response.timing),
    position: response.position,
    servedBy: response.servedBy,
  };
}

function createRowStream(
  db: DatabaseClient,
  request: MessageInitShape<typeof StreamExecuteRequestSchema>,
  options: StreamOptions,
  defaults: ValueOptions,
  hooks: RunnerHooks,
  sendCall: CallSender,
  seen: (position: string) => void,
  fail: (reason: unknown) => never,
): RowStream<unknown> {
  const guard = hooks.before;
  let fields: Field[] | undefined;
  let summary: StreamSummary | undefined;
  let iterated = false;

  async function* rows(): AsyncGenerator<unknown, void, undefined> {
    // Our own controller, so that leaving the loop early cancels the call
    // (and with it the statement on MySQL) whatever the transport does.
    const abort = new AbortController();
    const signal = options.signal;
    const onAbort = () => abort.abort(signal?.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    try {
      guard?.();
      // A read is resent while its first message has not arrived: after
      // that, rows have been yielded and a second run would repeat them.
      const { responses, first } = await sendCall([request.sql ?? ""], options, async (call) => {
        const iterator = db
          .streamExecute(request, { ...call, signal: abort.signal })
          [Symbol.asyncIterator]();
        return { responses: iterator, first: await iterator.next() };
      });
      let decode: RowDecoder | undefined;
      for (let next = first; next.done !== true; next = await responses.next()) {
        const message = next.value;
        if (decode === undefined) {
          fields = message.fields;
          decode = createRowDecoder(
            fields,
            options.as ?? "object",
            valueOptions(defaults, options),
          );
        }
        for (const row of message.rows) yield decode(row);
        if (message.timing !== undefined) {
          seen(message.position);
          summary = {
            rowsAffected: Number(message.rowsAffected),
            lastInsertId: message.lastInsertId,
            warningCount: message.warningCount,
            timing: timingFrom(message.timing),
          };
        }
      }
    } catch (err) {
      fail(err);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      abort.abort();
    }
  }

  return {
    get fields() {
      return fields;
    },
    get summary() {
      return summary;
    },
    [Symbol.asyncIterator]() {
      if (iterated) throw new TypeError("a RowStream can be iterated only once");
      iterated = true;
      return rows();
    },
  };
}
