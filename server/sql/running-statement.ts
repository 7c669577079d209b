/**
 * One statement running on one connection, within a time limit. When the
 * limit passes or the caller goes away, the statement is stopped on MySQL
 * with KILL QUERY from a side connection (closing our socket would leave it
 * running on the server), and its end is reported only after the KILL has
 * completed, so that the KILL can never hit the next statement on that
 * connection.
 *
 * How the statement is sent (prepared, or as text) is the caller's: this
 * module owns its lifetime, not its protocol.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { PoolConnection } from "mysql2";
import { positionOf, type StateChanges } from "../mysql/database.js";
import { connectErrorFromMysql } from "../mysql/errors.js";
import type { MysqlField } from "./result-columns.js";

/** The mysql2 OK packet of a statement without a result set. */
export interface ResultSetHeader extends StateChanges {
  readonly affectedRows: number | string;
  readonly insertId: number | string;
  readonly warningStatus: number;
  readonly info: string;
  readonly serverStatus: number;
}

/** SERVER_STATUS_IN_TRANS (include/mysql_com.h): a transaction is open. */
const SERVER_STATUS_IN_TRANS = 1;

/** What a statement's OK packet says, with zeros for a statement that sent none. */
export function summaryOf(header: ResultSetHeader | undefined) {
  return {
    rowsAffected: BigInt(header?.affectedRows ?? 0),
    lastInsertId: BigInt(header?.insertId ?? 0),
    warningCount: header?.warningStatus ?? 0,
    info: header?.info ?? "",
    /** The primary's replication position after a write, if tracked (see trackPositions). */
    position: positionOf(header),
    /** True when MySQL reports no open transaction after the statement (COMMIT, DDL). */
    outsideTransaction:
      header !== undefined && (header.serverStatus & SERVER_STATUS_IN_TRANS) === 0,
    /** Whether MySQL reports a transaction open after the statement; undefined if it did not say. */
    inTransaction:
      header === undefined ? undefined : (header.serverStatus & SERVER_STATUS_IN_TRANS) !== 0,
  };
}

export type StatementSummary = ReturnType<typeof summaryOf>;

/** Stops a running statement by its connection's thread id. */
export interface QueryKiller {
  killQuery(threadId: number): Promise<void>;
}

/** mysql2's ER_QUERY_INTERRUPTED, the error a KILL QUERY produces. */
const ER_QUERY_INTERRUPTED = 1317;

/** The error for a statement stopped because `signal` aborted (deadline or disconnect). */
export function connectErrorFromAbort(reason: unknown): ConnectError {
  if (reason instanceof ConnectError) return reason;
  if (reason instanceof Error && reason.name === "TimeoutError") {
    return new ConnectError("the statement's deadline passed", Code.DeadlineExceeded);
  }
  return new ConnectError("the call was canceled by the client", Code.Canceled);
}

/** What a running statement reports to its consumer. */
export interface StatementHandlers {
  /** The first result set's columns, before its first row. */
  onColumns(columns: readonly MysqlField[]): void;
  /** One row of the first result set, as mysql2 delivers it (an array). */
  onRow(cells: unknown[]): void;
  /** The statement ended: `error` if it failed, else the OK packet (if any). */
  onEnd(error: ConnectError | undefined, header: ResultSetHeader | undefined): void;
}

/** Lets a consumer stop a running statement early (KILL QUERY). */
export interface RunningStatement {
  /** Stops the statement; it then ends with `error` (or normally if undefined). */
  stop(error: ConnectError | undefined): void;
  /** Whether stop() was called. */
  readonly stopping: boolean;
}

/**
 * Sends a statement on the connection and returns mysql2's command for it
 * (wrapped: a text query is a thenable that throws when awaited), or
 * undefined if `stopped()` before it was sent; may first prepare it (which
 * the deadline covers too). Called only once the deadline is armed.
 */
export type StatementStarter = (
  conn: PoolConnection,
  stopped: () => boolean,
) => Promise<{ command: NodeJS.EventEmitter } | undefined>;

/**
 * Starts a statement (already checked to be one statement) with `start` and
 * reports to `handlers`. A deadline (`timeoutMs`) or `signal` stops it with
 * KILL QUERY; `onEnd` comes only after the KILL has completed.
 */
export async function startStatement(
  conn: PoolConnection,
  killer: QueryKiller,
  start: StatementStarter,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  handlers: StatementHandlers,
): Promise<RunningStatement> {
  // A call already given up on must not run at all (its client may retry it).
  if (signal?.aborted) throw connectErrorFromAbort(signal.reason);

  let header: ResultSetHeader | undefined;
  let stopError: ConnectError | undefined;
  let killing: Promise<void> | undefined;
  let settled = false;
  let clearDeadline = () => {};
  const settle = (error: ConnectError | undefined) => {
    if (settled) return;
    settled = true;
    clearDeadline();
    if (killing === undefined) handlers.onEnd(error, header);
    else void killing.then(() => handlers.onEnd(error, header));
  };
  const stop = (error: ConnectError | undefined) => {
    if (killing !== undefined) return;
    stopError = error;
    // A paused connection (streaming) must read on, or the KILL's error never arrives.
    conn.resume();
    killing = killer.killQuery(conn.threadId).catch((cause: unknown) => {
      // The KILL itself failed (MySQL unreachable, no connection slot): the
      // statement may run on, so the connection is destroyed, and the call
      // ends now rather than when the statement does.
      conn.destroy();
      const broken = Object.assign(new Error("KILL QUERY failed", { cause }), { fatal: true });
      settle(
        new ConnectError(error?.rawMessage ?? "stopped", error?.code, undefined, undefined, broken),
      );
    });
  };
  const onAbort = () => stop(connectErrorFromAbort(signal?.reason));
  const timer = setTimeout(
    () =>
      stop(
        new ConnectError(
          `the statement ran past its ${timeoutMs} ms deadline`,
          Code.DeadlineExceeded,
        ),
      ),
    timeoutMs,
  );
  signal?.addEventListener("abort", onAbort, { once: true });
  clearDeadline = () => {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  };

  let command: NodeJS.EventEmitter | undefined;
  try {
    command = (await start(conn, () => killing !== undefined))?.command;
  } catch (err) {
    clearDeadline();
    if (killing !== undefined) await killing;
    throw stopError ?? err;
  }
  if (command === undefined) {
    // Stopped before it was sent.
    await killing;
    clearDeadline();
    throw stopError ?? connectErrorFromAbort(signal?.reason);
  }
  // Only the first result set counts (a CALL sends more). Text queries emit
  // `fields` without the result set's index, so the first one is taken.
  let sawColumns = false;
  command.on("fields", (fields: MysqlField[] | undefined) => {
    if (fields === undefined || sawColumns) return;
    sawColumns = true;
    handlers.onColumns(fields);
  });
  command.on("result", (result: unknown, index: number | undefined) => {
    if (index === undefined) header = result as ResultSetHeader;
    else if (index === 0 && killing === undefined) handlers.onRow(result as unknown[]);
  });
  command.on("error", (err: Error & { errno?: number; fatal?: boolean }) => {
    // A fatal error (connection lost, protocol error) leaves the connection
    // unusable: take it out of the pool rather than hand it to the next call.
    if (err.fatal) conn.destroy();
    if (killing !== undefined && err.errno === ER_QUERY_INTERRUPTED) settle(stopError);
    else settle(stopError ?? connectErrorFromMysql(err));
  });
  command.on("end", () => settle(stopError));
  return {
    stop,
    get stopping() {
      return killing !== undefined;
    },
  };
}
