/**
 * Runs one prepared statement on one connection and collects its result as
 * proto rows, within a time limit and row/byte limits.
 *
 * When the time limit passes or the caller goes away, the statement is
 * stopped on MySQL with KILL QUERY from a side connection (closing our socket
 * would leave it running on the server), and the connection is handed back
 * only after the KILL has completed, so that it can never hit the next
 * statement on that connection.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { PoolConnection } from "mysql2";
import { type Field, LimitExceededSchema, type Row } from "../../gen/sqlgate/v1/value_pb.js";
import { connectErrorFromMysql } from "../mysql/errors.js";
import { describeColumns, type MysqlField, type ResultColumns } from "./result-columns.js";

export interface StatementLimits {
  /** Rows kept; past this the result is cut and marked truncated. */
  readonly maxRows: number;
  /** Approximate encoded bytes allowed in the result. */
  readonly maxResponseBytes: number;
  /** The statement's time limit. */
  readonly timeoutMs: number;
}

export interface StatementResult {
  readonly fields: Field[];
  readonly rows: Row[];
  readonly rowsAffected: bigint;
  readonly lastInsertId: bigint;
  readonly warningCount: number;
  readonly info: string;
  readonly truncated: boolean;
}

/** Stops a running statement by its connection's thread id. */
export interface QueryKiller {
  killQuery(threadId: number): Promise<void>;
}

/** The mysql2 OK packet of a statement without a result set. */
interface ResultSetHeader {
  readonly affectedRows: number | string;
  readonly insertId: number | string;
  readonly warningStatus: number;
  readonly info: string;
}

/** mysql2's prepared statement handle; `columns` come from the PREPARE response. */
interface PreparedStatement {
  readonly columns: readonly MysqlField[];
}

/** mysql2's ER_QUERY_INTERRUPTED, the error a KILL QUERY produces. */
const ER_QUERY_INTERRUPTED = 1317;
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
    conn.prepare(sql, (err, statement) => {
      if (err) reject(connectErrorFromMysql(err));
      else resolve(statement as unknown as PreparedStatement);
    });
  });
}

function limitError(message: string, setting: string, limit: number, hint: string): ConnectError {
  return new ConnectError(message, Code.ResourceExhausted, undefined, [
    {
      desc: LimitExceededSchema,
      value: create(LimitExceededSchema, { setting, limit: BigInt(limit), hint }),
    },
  ]);
}

/** The error for a statement stopped because `signal` aborted (deadline or disconnect). */
export function connectErrorFromAbort(reason: unknown): ConnectError {
  if (reason instanceof ConnectError) return reason;
  if (reason instanceof Error && reason.name === "TimeoutError") {
    return new ConnectError("the statement's deadline passed", Code.DeadlineExceeded);
  }
  return new ConnectError("the call was canceled by the client", Code.Canceled);
}

/**
 * Runs `sql` (already checked to be one statement) with `values` bound.
 * `signal` aborts the statement (client gone, call deadline).
 */
export async function executeStatement(
  conn: PoolConnection,
  killer: QueryKiller,
  sql: string,
  values: readonly unknown[],
  limits: StatementLimits,
  signal: AbortSignal | undefined,
): Promise<StatementResult> {
  const statement = await prepare(conn, sql);
  let hasGeometry = hasGeometryByStatement.get(statement);
  if (hasGeometry === undefined) {
    hasGeometry = statement.columns.some((c) => c.columnType === GEOMETRY);
    hasGeometryByStatement.set(statement, hasGeometry);
  }

  return new Promise<StatementResult>((resolve, reject) => {
    let columns: ResultColumns | undefined;
    const rows: Row[] = [];
    let header: ResultSetHeader | undefined;
    let bytes = 0;
    let truncated = false;
    let stopError: ConnectError | undefined;
    let killing: Promise<void> | undefined;

    const stop = (error: ConnectError | undefined) => {
      if (killing !== undefined) return;
      stopError = error;
      killing = killer.killQuery(conn.threadId).catch(() => {
        // The KILL itself failed (MySQL unreachable): the connection cannot be
        // trusted to be idle, so it is destroyed instead of returned.
        conn.destroy();
      });
    };
    const onAbort = () => stop(connectErrorFromAbort(signal?.reason));
    const timer = setTimeout(
      () =>
        stop(
          new ConnectError(
            `the statement ran past its ${limits.timeoutMs} ms deadline`,
            Code.DeadlineExceeded,
          ),
        ),
      limits.timeoutMs,
    );
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) onAbort();

    let settled = false;
    const settle = (error: ConnectError | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      const finish = () => {
        if (error !== undefined) {
          reject(error);
          return;
        }
        resolve({
          fields: columns?.fields ?? [],
          rows,
          rowsAffected: BigInt(header?.affectedRows ?? 0),
          lastInsertId: BigInt(header?.insertId ?? 0),
          warningCount: header?.warningStatus ?? 0,
          info: header?.info ?? "",
          truncated,
        });
      };
      if (killing === undefined) finish();
      else void killing.then(finish);
    };

    const command = conn.execute({
      sql,
      values: values as unknown[],
      rowsAsArray: true,
      ...(hasGeometry ? { typeCast: geometryCast } : {}),
    }) as unknown as NodeJS.EventEmitter;

    command.on("fields", (fields: MysqlField[] | undefined, index: number | undefined) => {
      if (fields !== undefined && index === 0) columns = describeColumns(fields);
    });
    command.on("result", (result: unknown, index: number | undefined) => {
      if (index === undefined) {
        header = result as ResultSetHeader;
        return;
      }
      if (index !== 0 || columns === undefined || killing !== undefined) return;
      if (rows.length >= limits.maxRows) {
        truncated = true;
        stop(undefined);
        return;
      }
      const row = columns.toRow(result as unknown[]);
      bytes += columns.sizeOf(row);
      if (bytes > limits.maxResponseBytes) {
        stop(
          limitError(
            `the result is larger than ${limits.maxResponseBytes} bytes; use StreamExecute for large results`,
            "SQLGATE_MAX_RESPONSE_BYTES",
            limits.maxResponseBytes,
            "use StreamExecute, or select fewer rows or columns",
          ),
        );
        return;
      }
      rows.push(row);
    });
    command.on("error", (err: Error & { errno?: number; fatal?: boolean }) => {
      // A fatal error (connection lost, protocol error) leaves the connection
      // unusable: take it out of the pool rather than hand it to the next call.
      if (err.fatal) conn.destroy();
      if (killing !== undefined && err.errno === ER_QUERY_INTERRUPTED) {
        settle(stopError);
      } else {
        settle(stopError ?? connectErrorFromMysql(err));
      }
    });
    command.on("end", () => settle(stopError));
  });
}
