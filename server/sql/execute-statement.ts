/**
 * Runs one prepared statement on one connection, within a time limit (see
 * running-statement.ts): either collecting its whole result (with row and
 * byte limits) or streaming it in chunks with backpressure.
 */
import type { UnknownField } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { PoolConnection } from "mysql2";
import type { Field, Row } from "../../gen/sqlgate/v1/value_pb.js";
import { connectErrorFromMysql, limitExceeded } from "../mysql/errors.js";
import {
  describeColumns,
  type Kind,
  type MysqlField,
  type ResultColumns,
  rowFromKinds,
  sizeOfKinds,
} from "./result-columns.js";
import { RowWireWriter } from "./row-wire.js";
import {
  connectErrorFromAbort,
  type QueryKiller,
  type ResultSetHeader,
  type RunningStatement,
  type StatementStarter,
  type StatementSummary,
  startStatement,
  summaryOf,
} from "./running-statement.js";

export interface StatementLimits {
  /** Rows kept; past this the result is cut and marked truncated. */
  readonly maxRows: number;
  /** Approximate encoded bytes allowed in the result. */
  readonly maxResponseBytes: number;
  /** The statement's time limit. */
  readonly timeoutMs: number;
  /**
   * Whether a result cut at maxRows may be stopped with KILL QUERY. Only for
   * plain reads: killing `DELETE ... RETURNING` would undo the delete.
   */
  readonly killToTruncate: boolean;
}

export interface StatementResult {
  readonly fields: Field[];
  readonly rows: Row[];
  readonly rowsAffected: bigint;
  readonly lastInsertId: bigint;
  readonly warningCount: number;
  readonly info: string;
  readonly truncated: boolean;
  /** Approximate encoded size of the rows. */
  readonly bytes: number;
  /** MySQL reported no open transaction after the statement (it committed or rolled back). */
  readonly outsideTransaction: boolean;
  /** The replication position after a write, when the primary tracks it; else "". */
  readonly position: string;
}

/** mysql2's prepared statement handle; `columns` come from the PREPARE response. */
interface PreparedStatement {
  readonly columns: readonly MysqlField[];
  readonly parameters: readonly unknown[];
}

/** What MySQL says of a statement without running it: its result's columns and its placeholders. */
export interface StatementDescription {
  readonly columns: readonly MysqlField[];
  readonly parameterCount: number;
}

/** Prepares `sql` (cached on the connection like any statement) and describes it. */
export async function describeStatement(
  conn: PoolConnection,
  sql: string,
): Promise<StatementDescription> {
  const statement = await prepare(conn, sql);
  return { columns: statement.columns, parameterCount: statement.parameters.length };
}

const GEOMETRY = 255;

const hasGeometryByStatement = new WeakMap<PreparedStatement, boolean>();

/**
 * mysql2 parses GEOMETRY into points and loses the SRID and byte order; the
 * cast keeps the exact bytes MySQL holds. It is installed only for statements
 * whose result has a GEOMETRY column, since a cast costs an object per cell.
 */
function geometryCast(field: { type: string; buffer(): Buffer | null }, next: () => unknown) {
  return field.type === "GEOMETRY" ? field.buffer() : next();
}

function prepare(conn: PoolConnection, sql: string): Promise<PreparedStatement> {
  return new Promise((resolve, reject) => {
    // The same options as the execute() below, so both share one cache entry.
    conn.prepare({ sql, rowsAsArray: true } as unknown as string, (err, statement) => {
      if (err) reject(connectErrorFromMysql(err));
      else resolve(statement as unknown as PreparedStatement);
    });
  });
}

/**
 * Prepares `sql` and executes it with `values`, unless stopped while
 * preparing. GEOMETRY columns get the raw-bytes cast.
 */
function preparedStarter(sql: string, values: readonly unknown[]): StatementStarter {
  return async (conn, stopped) => {
    const statement = await prepare(conn, sql);
    if (stopped()) return undefined;
    let hasGeometry = hasGeometryByStatement.get(statement);
    if (hasGeometry === undefined) {
      hasGeometry = statement.columns.some((c) => c.columnType === GEOMETRY);
      hasGeometryByStatement.set(statement, hasGeometry);
    }
    const command = conn.execute({
      sql,
      values: values as unknown[],
      rowsAsArray: true,
      ...(hasGeometry ? { typeCast: geometryCast } : {}),
    }) as unknown as NodeJS.EventEmitter;
    return { command };
  };
}

/**
 * Runs one statement and collects its whole result, cut at `maxRows` (the
 * result says truncated) and refused past `maxResponseBytes`.
 */
export function executeStatement(
  conn: PoolConnection,
  killer: QueryKiller,
  sql: string,
  values: readonly unknown[],
  limits: StatementLimits,
  signal: AbortSignal | undefined,
): Promise<StatementResult> {
  return new Promise<StatementResult>((resolve, reject) => {
    let columns: ResultColumns | undefined;
    const rows: Row[] = [];
    let bytes = 0;
    let truncated = false;
    let running: RunningStatement | undefined;
    startStatement(conn, killer, preparedStarter(sql, values), limits.timeoutMs, signal, {
      onColumns(c) {
        columns = describeColumns(c);
      },
      onRow(cells) {
        if (columns === undefined || running?.stopping) return;
        if (rows.length >= limits.maxRows) {
          // Past the limit, a read is stopped; a write's rows are read and dropped.
          truncated = true;
          if (limits.killToTruncate) running?.stop(undefined);
          return;
        }
        const kinds = columns.kindsOf(cells);
        bytes += sizeOfKinds(kinds);
        if (bytes > limits.maxResponseBytes) {
          running?.stop(
            limitExceeded(
              `the result is larger than ${limits.maxResponseBytes} bytes; use StreamExecute for large results`,
              "SQLGATE_MAX_RESPONSE_BYTES",
              limits.maxResponseBytes,
              "use StreamExecute, or select fewer rows or columns",
            ),
          );
          return;
        }
        rows.push(rowFromKinds(kinds));
      },
      onEnd(error, header) {
        if (error !== undefined) reject(error);
        else
          resolve({ fields: columns?.fields ?? [], rows, truncated, bytes, ...summaryOf(header) });
      },
    }).then((r) => {
      running = r;
    }, reject);
  });
}

/** One message of a streamed result. */
export interface StreamedChunk {
  /** Set on the first chunk of a result set. */
  readonly fields: Field[] | undefined;
  /** The chunk's rows as messages (JSON responses). */
  readonly rows: Row[];
  /** The chunk's rows in wire form, as an unknown `rows` field (binary responses). */
  readonly wireRows: UnknownField | undefined;
  /** Set on the last chunk. */
  readonly summary: StatementSummary | undefined;
}

export interface StreamLimits {
  readonly timeoutMs: number;
  /** Rows per chunk at most. */
  readonly chunkRows: number;
  /** Approximate encoded bytes per chunk at most. */
  readonly chunkBytes: number;
  /** Write rows in wire form for this field number (see row-wire.ts); undefined: messages. */
  readonly wireRowsField: number | undefined;
}

/** Collects a chunk's rows, as messages or in wire form. */
function createRowBuffer(wireRowsField: number | undefined) {
  const wire = wireRowsField === undefined ? undefined : new RowWireWriter(wireRowsField);
  let rows: Row[] = [];
  return {
    add(kinds: Kind[]) {
      if (wire === undefined) rows.push(rowFromKinds(kinds));
      else wire.add(kinds);
    },
    get count() {
      return wire === undefined ? rows.length : wire.rows;
    },
    take(): Pick<StreamedChunk, "rows" | "wireRows"> {
      if (wire !== undefined)
        return { rows: [], wireRows: wire.rows > 0 ? wire.take() : undefined };
      const taken = rows;
      rows = [];
      return { rows: taken, wireRows: undefined };
    },
  };
}

/**
 * Runs one statement and yields its result in chunks with backpressure: while
 * a chunk waits for the consumer (the HTTP/2 stream's flow control), the MySQL
 * connection is paused, so MySQL's socket, not the heap, absorbs a slow reader.
 *
 * `onEnded` is called once the statement has ended on MySQL (normally, or
 * killed): a consumer that has gone away for good may never resume this
 * generator, so its caller gives the connection back from there.
 */
export async function* streamStatement(
  conn: PoolConnection,
  killer: QueryKiller,
  sql: string,
  values: readonly unknown[],
  limits: StreamLimits,
  signal: AbortSignal | undefined,
  onEnded: (error: ConnectError | undefined) => void,
): AsyncGenerator<StreamedChunk> {
  let fields: Field[] | undefined;
  let columns: ResultColumns | undefined;
  const pending = createRowBuffer(limits.wireRowsField);
  let pendingBytes = 0;
  const ready: StreamedChunk[] = [];
  let ended: { error: ConnectError | undefined; header: ResultSetHeader | undefined } | undefined;
  let wake: (() => void) | undefined;
  let discarding = false;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const take = (summary: StreamedChunk["summary"]): StreamedChunk => {
    const chunk = { fields, ...pending.take(), summary };
    fields = undefined;
    pendingBytes = 0;
    return chunk;
  };

  const running = await startStatement(
    conn,
    killer,
    preparedStarter(sql, values),
    limits.timeoutMs,
    signal,
    {
      onColumns(c) {
        columns = describeColumns(c);
        fields = columns.fields;
      },
      onRow(cells) {
        // Once the reader is gone, rows still in flight are dropped, and the
        // connection must never pause again: MySQL notices a KILL only between
        // writes, so a paused socket would hold the killed statement (and the
        // connection) until net_write_timeout.
        if (columns === undefined || discarding || signal?.aborted) return;
        const kinds = columns.kindsOf(cells);
        pending.add(kinds);
        pendingBytes += sizeOfKinds(kinds);
        if (pending.count >= limits.chunkRows || pendingBytes >= limits.chunkBytes) {
          ready.push(take(undefined));
          // One chunk waiting is enough: stop reading MySQL until it is taken.
          conn.pause();
          notify();
        }
      },
      onEnd(error, header) {
        ended = { error, header };
        notify();
        onEnded(error);
      },
    },
  );

  try {
    for (;;) {
      const chunk = ready.shift();
      if (chunk !== undefined) {
        // After an abort the connection may already be back in its pool.
        if (signal?.aborted) throw connectErrorFromAbort(signal.reason);
        conn.resume();
        yield chunk;
        continue;
      }
      if (ended !== undefined) {
        if (ended.error !== undefined) throw ended.error;
        yield take(summaryOf(ended.header));
        return;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    if (ended === undefined) {
      // The consumer left early (client gone, error while sending): stop the
      // statement and wait until the connection is idle before it is reused.
      discarding = true;
      running.stop(new ConnectError("the stream was closed by its reader", Code.Canceled));
      conn.resume();
      while (ended === undefined) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    }
  }
}
