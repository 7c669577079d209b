/**
 * Runs statements for calls: checks the text and parameters, leases a
 * connection (from the pool, or a transaction's) within the call's deadline,
 * runs with the gateway's limits, and gives the connection back.
 */

import { Code, ConnectError } from "@connectrpc/connect";
import type { ConnectionSource, Lease, ReleaseState } from "../mysql/connection-source.js";
import { runControlStatement } from "../mysql/database.js";
import { connectErrorFromMysql, endsTransaction, isFatal } from "../mysql/errors.js";
import {
  describeStatement,
  executeStatement,
  type StatementDescription,
  type StatementResult,
  type StreamedChunk,
  streamStatement,
} from "./execute-statement.js";
import { executeText, type RawLimits, type RawResult } from "./execute-text.js";
import { bindValues, type StatementParams } from "./params.js";
import { parseSqlText, type SessionEffect, type SqlText } from "./sql-text.js";

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

/** What a call adds to its statements: its options and its lifetime. */
export interface CallOptions {
  /** Aborts when the caller goes away or the call's deadline passes. */
  readonly signal: AbortSignal | undefined;
  /** Remaining milliseconds of the call's own deadline, if it has one. */
  readonly deadlineMs: number | undefined;
  /** `options.timeout_ms` of the request; 0 when not given. */
  readonly timeoutMs: number;
  /** `options.max_rows` of the request; 0 when not given. */
  readonly maxRows: number;
  /** Run with the session read-only (outside a transaction; see enterReadOnly). */
  readonly readOnly: boolean;
  /** The only database the caller may use (USE is refused); undefined: any. */
  readonly confinedTo?: string | undefined;
  /**
   * Control statements (SET TRANSACTION) to run on the connection before the
   * call's statements, already checked; they leave transaction state.
   */
  readonly prelude?: readonly string[] | undefined;
}

export interface ExecutedStatement extends StatementResult {
  /** Microseconds from sending the statement to MySQL to its complete result. */
  readonly mysqlUs: number;
}

/** Limits of a text statement's result (see execute-text.ts); its time limit is its own. */
export type TextLimits = RawLimits;

export interface SqlExecutor {
  execute(
    source: ConnectionSource,
    statement: StatementInput,
    call: CallOptions,
  ): Promise<ExecutedStatement>;
  /**
   * Runs `statements` in order on one connection. With `atomic`, all of them
   * or none: a transaction (a savepoint inside an open transaction) that is
   * rolled back on the first error, whose detail names the statement's index.
   */
  batch(
    source: ConnectionSource,
    statements: readonly StatementInput[],
    atomic: boolean,
    call: CallOptions,
  ): Promise<ExecutedStatement[]>;
  /**
   * Runs one statement and yields its result in chunks, with backpressure.
   * With `wireRowsField`, rows come in wire form for that field (see row-wire.ts).
   */
  stream(
    source: ConnectionSource,
    statement: StatementInput,
    call: CallOptions,
    wireRowsField: number | undefined,
  ): AsyncGenerator<StreamedChunk>;
  /**
   * Runs one statement whose values are already in its text (PlanetScale's
   * API) and returns its rows raw, as MySQL sent them. Its time limit is
   * `limits.timeoutMs` (or the call's deadline, if sooner).
   */
  executeText(
    source: ConnectionSource,
    sql: string,
    call: CallOptions,
    limits: TextLimits,
  ): Promise<RawResult>;
  /** Prepares one statement (`?` or `:name` placeholders) without running it. */
  describe(source: ConnectionSource, sql: string, call: CallOptions): Promise<StatementDescription>;
}

/** Streamed chunks hold at most this many rows or (roughly) bytes. */
const chunkRows = 1000;
const chunkBytes = 256 * 1024;
const batchSavepoint = "sqlgate_batch";

export function createSqlExecutor(limits: ExecutorLimits): SqlExecutor {
  /** Leases on which a statement left MySQL with no open transaction. */
  const endedTransaction = new WeakSet<Lease>();
  /**
   * A statement's time limit: the tighter of `options.timeoutMs` and the
   * call's deadline, the default when it has neither, never past the maximum.
   */
  const timeoutOf = (call: CallOptions): number => {
    let ms = call.deadlineMs ?? Number.POSITIVE_INFINITY;
    if (call.timeoutMs > 0) ms = Math.min(ms, call.timeoutMs);
    if (ms === Number.POSITIVE_INFINITY) ms = limits.defaultTimeoutMs;
    return Math.min(ms, limits.maxTimeoutMs);
  };

  /**
   * Runs `fn` on a leased connection (read-only wrapped if asked) and gives it
   * back in the state that `statements` may have left it in.
   */
  const withLease = async <T>(
    source: ConnectionSource,
    call: CallOptions,
    timeoutMs: number,
    statements: readonly BoundStatement[],
    fn: (lease: Lease) => Promise<T>,
  ): Promise<T> => {
    const lease = await source.lease(Math.min(limits.acquireTimeoutMs, timeoutMs));
    let state = stateAfter(statements);
    try {
      if (await enterReadOnly(lease, call)) state = "reset";
      for (const sql of call.prelude ?? []) {
        await runControlStatement(lease.conn, sql);
        if (state === "reuse") state = "transactionState";
      }
      const result = await fn(lease);
      if (lease.inTransaction && endedTransaction.has(lease)) state = "transactionEnded";
      return result;
    } catch (err) {
      state = stateAfterError(err, state);
      throw err;
    } finally {
      lease.release(state);
    }
  };

  const run = async (
    lease: Lease,
    statement: BoundStatement,
    call: CallOptions,
    timeoutMs: number,
    maxResponseBytes: number,
  ): Promise<ExecutedStatement> => {
    const started = performance.now();
    const result = await executeStatement(
      lease.conn,
      lease.killer,
      statement.sql,
      statement.values,
      {
        maxRows: Math.min(call.maxRows || limits.maxRows, limits.maxRows),
        maxResponseBytes,
        timeoutMs,
        killToTruncate: statement.isRead,
      },
      call.signal,
    );
    if (lease.inTransaction && result.outsideTransaction) endedTransaction.add(lease);
    return { ...result, mysqlUs: Math.round((performance.now() - started) * 1000) };
  };

  return {
    execute(source, input, call) {
      const statement = bindStatement(input, call);
      const timeoutMs = timeoutOf(call);
      return withLease(source, call, timeoutMs, [statement], (lease) =>
        run(lease, statement, call, timeoutMs, limits.maxResponseBytes),
      );
    },

    batch(source, inputs, atomic, call) {
      const statements = inputs.map((input, index) => {
        try {
          return bindStatement(input, call);
        } catch (err) {
          throw withStatementIndex(err, index);
        }
      });
      const timeoutMs = timeoutOf(call);
      const started = Date.now();
      return withLease(source, call, timeoutMs, statements, async (lease) => {
        const [begin, commit, rollback] = lease.inTransaction
          ? [
              `SAVEPOINT ${batchSavepoint}`,
              `RELEASE SAVEPOINT ${batchSavepoint}`,
              `ROLLBACK TO SAVEPOINT ${batchSavepoint}`,
            ]
          : ["START TRANSACTION", "COMMIT", "ROLLBACK"];
        if (atomic) await runControlStatement(lease.conn, begin);
        const results: ExecutedStatement[] = [];
        let budget = limits.maxResponseBytes;
        for (const [index, statement] of statements.entries()) {
          try {
            const left = Math.max(1, timeoutMs - (Date.now() - started));
            const result = await run(lease, statement, call, left, budget);
            budget -= result.bytes;
            results.push(result);
          } catch (err) {
            if (atomic && !isFatal(err)) await runControlStatement(lease.conn, rollback);
            throw withStatementIndex(err, index);
          }
        }
        if (atomic) await runControlStatement(lease.conn, commit);
        return results;
      });
    },

    executeText(source, sql, call, textLimits) {
      const text = parseSqlText(sql, "verbatim");
      checkAllowed(text, call);
      const statement: BoundStatement = {
        sql: text.sql,
        values: [],
        sessionEffect: text.sessionEffect,
        isRead: text.isRead,
      };
      const timeoutMs = Math.min(textLimits.timeoutMs, call.deadlineMs ?? Number.POSITIVE_INFINITY);
      return withLease(source, call, timeoutMs, [statement], async (lease) => {
        const result = await executeText(
          lease.conn,
          lease.killer,
          statement.sql,
          { ...textLimits, timeoutMs },
          call.signal,
        );
        if (lease.inTransaction && result.outsideTransaction) endedTransaction.add(lease);
        return result;
      });
    },

    describe(source, sql, call) {
      const text = parseSqlText(sql);
      const statement: BoundStatement = {
        sql: text.sql,
        values: [],
        sessionEffect: "none",
        isRead: true,
      };
      return withLease(source, call, timeoutOf(call), [statement], (lease) =>
        describeStatement(lease.conn, statement.sql),
      );
    },

    async *stream(source, input, call, wireRowsField) {
      const statement = bindStatement(input, call);
      const timeoutMs = timeoutOf(call);
      const lease = await source.lease(Math.min(limits.acquireTimeoutMs, timeoutMs));
      let state = stateAfter([statement]);
      if (
        await enterReadOnly(lease, call).catch((err) => {
          lease.release(stateAfterError(err, "reset"));
          throw err;
        })
      ) {
        state = "reset";
      }
      let released = false;
      let ended = false;
      const release = () => {
        if (released) return;
        released = true;
        call.signal?.removeEventListener("abort", releaseIfEnded);
        lease.release(state);
      };
      // A client that disconnects while the stream waits on flow control may
      // never make Connect resume (or return) this generator: once the
      // statement has ended, give the connection back from here.
      const releaseIfEnded = () => {
        if (ended) release();
      };
      call.signal?.addEventListener("abort", releaseIfEnded, { once: true });
      try {
        yield* streamStatement(
          lease.conn,
          lease.killer,
          statement.sql,
          statement.values,
          { timeoutMs, chunkRows, chunkBytes, wireRowsField },
          call.signal,
          (error) => {
            ended = true;
            if (error !== undefined) state = stateAfterError(error, state);
            if (call.signal?.aborted) release();
          },
        );
      } catch (err) {
        state = stateAfterError(err, state);
        throw err;
      } finally {
        release();
      }
    },
  };
}

/**
 * Makes the lease's session read-only when the call asks for it (outside a
 * transaction, which has its own mode). A session-wide mode, unlike START
 * TRANSACTION READ ONLY, also refuses statements that commit implicitly
 * (TRUNCATE, DROP); the connection is reset afterwards. Resolves true if set.
 */
async function enterReadOnly(lease: Lease, call: CallOptions): Promise<boolean> {
  if (!call.readOnly || lease.inTransaction || lease.readOnly) return false;
  await runControlStatement(lease.conn, "SET SESSION TRANSACTION READ ONLY");
  return true;
}

/** A statement checked and ready to run: one statement, parameters bound. */
interface BoundStatement {
  readonly sql: string;
  readonly values: unknown[];
  readonly sessionEffect: SessionEffect;
  readonly isRead: boolean;
}

/** Refuses what the caller may not run: access-mode changes when read-only, USE when confined. */
function checkAllowed(text: SqlText, call: CallOptions): void {
  if (call.readOnly && text.changesAccessMode) {
    throw new ConnectError(
      "a read-only caller may not make the session or a transaction writable, nor run SQL it cannot check (PREPARE, EXECUTE, SET STATEMENT)",
      Code.PermissionDenied,
    );
  }
  if (call.confinedTo !== undefined && text.sessionEffect === "reconnect") {
    throw new ConnectError(
      `USE is refused: this credential works on database ${call.confinedTo} only`,
      Code.PermissionDenied,
    );
  }
}

/** Checks `input` before any connection is taken for it. */
function bindStatement(input: StatementInput, call: CallOptions): BoundStatement {
  const text = parseSqlText(input.sql);
  checkAllowed(text, call);
  return {
    sql: text.sql,
    values: bindValues(text, input),
    sessionEffect: text.sessionEffect,
    isRead: text.isRead,
  };
}

/** The state a connection is in after `err`, given the state it would otherwise be in. */
function stateAfterError(err: unknown, state: ReleaseState): ReleaseState {
  if (isFatal(err)) return "broken";
  if (endsTransaction(err)) return "rolledBack";
  return state;
}

/** The state a connection is in after `statements` ran without error. */
function stateAfter(statements: readonly BoundStatement[]): ReleaseState {
  let state: ReleaseState = "reuse";
  for (const { sessionEffect } of statements) {
    if (sessionEffect === "reconnect") return "reconnect";
    if (sessionEffect === "reset") state = "reset";
    if (sessionEffect === "transaction" && state === "reuse") state = "transactionState";
  }
  return state;
}

/** `err` with its message and SqlError detail naming the batch statement that failed. */
function withStatementIndex(err: unknown, index: number): ConnectError {
  const cause = err instanceof ConnectError ? err.cause : err;
  if (cause instanceof Error && "errno" in cause) return connectErrorFromMysql(cause, index);
  const original = connectErrorFromMysql(err);
  const indexed = new ConnectError(
    `statement ${index}: ${original.rawMessage}`,
    original.code,
    original.metadata,
    undefined,
    original.cause,
  );
  indexed.details.push(...original.details);
  return indexed;
}
