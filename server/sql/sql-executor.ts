/**
 * Runs single statements from the pool: checks the text and parameters,
 * acquires a connection within the call's deadline, runs the statement with
 * the gateway's limits, and returns the connection.
 */
import type { Database, PoolConnection } from "../mysql/database.js";
import { connectErrorFromMysql } from "../mysql/errors.js";
import { executeStatement, type StatementResult } from "./execute-statement.js";
import { bindValues, type StatementParams } from "./params.js";
import { parseSqlText } from "./sql-text.js";

export interface ExecutorLimits {
  readonly maxRows: number;
  readonly maxResponseBytes: number;
  readonly maxTimeoutMs: number;
  readonly defaultTimeoutMs: number;
  readonly acquireTimeoutMs: number;
}

/** One statement as a request gives it. */
export interface StatementInput extends StatementParams {
  readonly sql: string;
}

/** What a call adds to a statement: its options and its lifetime. */
export interface CallOptions {
  /** Aborts when the caller goes away or the call's deadline passes. */
  readonly signal: AbortSignal | undefined;
  /** Remaining milliseconds of the call's own deadline, if it has one. */
  readonly deadlineMs: number | undefined;
  /** `options.timeout_ms` of the request; 0 when not given. */
  readonly timeoutMs: number;
  /** `options.max_rows` of the request; 0 when not given. */
  readonly maxRows: number;
  /** Run inside START TRANSACTION READ ONLY. */
  readonly readOnly: boolean;
}

export interface ExecutedStatement extends StatementResult {
  /** Microseconds spent acquiring a connection and running the statement. */
  readonly mysqlUs: number;
}

export interface SqlExecutor {
  execute(statement: StatementInput, call: CallOptions): Promise<ExecutedStatement>;
}

export function createSqlExecutor(db: Database, limits: ExecutorLimits): SqlExecutor {
  return {
    async execute(statement, call) {
      const text = parseSqlText(statement.sql);
      const values = bindValues(text, statement);
      const timeoutMs = Math.min(
        call.timeoutMs || Number.POSITIVE_INFINITY,
        call.deadlineMs ?? limits.defaultTimeoutMs,
        limits.maxTimeoutMs,
      );
      const statementLimits = {
        maxRows: Math.min(call.maxRows || limits.maxRows, limits.maxRows),
        maxResponseBytes: limits.maxResponseBytes,
        timeoutMs,
      };
      const started = performance.now();
      const conn = await db.acquire(Math.min(limits.acquireTimeoutMs, timeoutMs));
      try {
        if (call.readOnly) await runOnConnection(conn, "START TRANSACTION READ ONLY");
        const result = await executeStatement(
          conn,
          db,
          text.sql,
          values,
          statementLimits,
          call.signal,
        );
        if (call.readOnly) await runOnConnection(conn, "COMMIT");
        return { ...result, mysqlUs: Math.round((performance.now() - started) * 1000) };
      } catch (err) {
        if (call.readOnly) await runOnConnection(conn, "ROLLBACK").catch(() => conn.destroy());
        throw err;
      } finally {
        conn.release();
      }
    },
  };
}

/** Runs a fixed control statement (no parameters, no result) on `conn`. */
function runOnConnection(conn: PoolConnection, sql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    conn.query(sql, (err) => (err ? reject(connectErrorFromMysql(err)) : resolve()));
  });
}
