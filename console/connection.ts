/**
 * The console's one way to the gateway: the SDK's fetch entry, as any web
 * client would use it. Credentials become the SDK's `authorization` header
 * on every call; the browser picks HTTP/1.1 or HTTP/2 itself.
 */
import type { Interceptor } from "@connectrpc/connect";
import {
  createClient,
  type Field,
  type IsolationLevelName,
  type Params,
  type SqlgateClient,
  type SqlRunner,
  type Timing,
  type Transaction,
} from "../client/src/fetch.js";
import { type Cell, cellFromValue } from "./cells.js";

/** What the console signs in with: nothing (a loopback gateway without credentials), a token, or Basic. */
export interface Credentials {
  readonly username?: string;
  readonly password?: string;
  readonly token?: string;
}

/** A signed-in console's client, and what it learnt when it connected. */
export interface Connection {
  readonly client: SqlgateClient;
  readonly credentials: Credentials;
  /** The gateway's origin, as the snippets must name it. */
  readonly url: string;
  /** The database statements run in (the gateway's, or the credential's). */
  readonly database: string;
  readonly mysqlUser: string;
  readonly serverVersion: string;
  /** BeginTransaction's idle timeout from the last transaction begun (ms). */
  lastIdleTimeoutMs(): number;
}

/**
 * Connects with `credentials` and asks MySQL who it is talking to. Rejects
 * with the SDK's `DatabaseError` (`unauthenticated` for bad credentials).
 */
export async function connect(url: string, credentials: Credentials): Promise<Connection> {
  let idleTimeoutMs = 0;
  // BeginTransaction's answer says how long a transaction may stay idle; the
  // SDK's transaction() keeps it to itself, so the console reads it here.
  const watchBegin: Interceptor = (next) => async (req) => {
    const res = await next(req);
    if (!res.stream && req.method.name === "BeginTransaction") {
      idleTimeoutMs = Number((res.message as { idleTimeoutMs?: number }).idleTimeoutMs ?? 0);
    }
    return res;
  };
  const client = createClient({
    url,
    ...credentials,
    interceptors: [watchBegin],
    readRetries: 0,
    // Without ambient credentials the browser sends no cookie and, on a 401
    // with `WWW-Authenticate: Basic`, shows no login prompt of its own (a
    // prompt would hang the call): the console asks, in its own dialog.
    fetch: (input, init) => globalThis.fetch(input, { ...init, credentials: "omit" }),
  });
  const { rows } = await client.execute<Cell[]>(
    "SELECT DATABASE(), CURRENT_USER(), VERSION()",
    [],
    { as: "array", cast: cellFromValue },
  );
  const [database, mysqlUser, serverVersion] = rows[0] ?? [];
  return {
    client,
    credentials,
    url,
    database: database ?? "",
    mysqlUser: mysqlUser ?? "",
    serverVersion: serverVersion ?? "",
    lastIdleTimeoutMs: () => idleTimeoutMs,
  };
}

/** Statements whose rows are read through StreamExecute, however many there are. */
const readsRows =
  /^\s*(\(\s*)*(SELECT|WITH|SHOW|VALUES|TABLE|EXPLAIN|DESCRIBE|DESC|ANALYZE|CHECK|CHECKSUM)\b/i;

/** `sql` without leading comments, for classifying it. */
function withoutLeadingComments(sql: string): string {
  return sql.replace(/^(\s*(--[^\n]*(\n|$)|#[^\n]*(\n|$)|\/\*[\s\S]*?\*\/))*/, "");
}

/** Whether `sql` returns rows (and so is streamed). */
export function isRowStatement(sql: string): boolean {
  return readsRows.test(withoutLeadingComments(sql));
}

/** What the results panel is told while a statement runs. */
export interface ResultSink {
  fields(fields: readonly Field[]): void;
  row(row: Cell[]): void;
}

/** What a finished statement reports. */
export interface RunSummary {
  readonly streamed: boolean;
  readonly rowsAffected: number;
  readonly lastInsertId: bigint;
  readonly warningCount: number;
  /** Absent for a stream that was stopped before its end. */
  readonly timing: Timing | undefined;
  readonly info: string;
  readonly truncated: boolean;
}

/**
 * Runs one statement on `runner` (the client, or an open transaction):
 * statements that return rows through StreamExecute, row by row into `sink`
 * (the gateway and MySQL go at the pace the page reads), the others through
 * Execute, which also reports MySQL's time and info string. Aborting
 * `signal` cancels the call, and the gateway kills the statement on MySQL.
 */
export async function runStatement(
  runner: SqlRunner,
  sql: string,
  params: Params | undefined,
  sink: ResultSink,
  signal: AbortSignal,
): Promise<RunSummary> {
  const options = { as: "array", cast: cellFromValue, signal } as const;
  if (!isRowStatement(sql)) {
    const result = await runner.execute<Cell[]>(sql, params, options);
    if (result.fields.length > 0) sink.fields(result.fields);
    for (const row of result.rows) sink.row(row);
    return {
      streamed: false,
      rowsAffected: result.rowsAffected,
      lastInsertId: result.lastInsertId,
      warningCount: result.warningCount,
      timing: result.timing,
      info: result.info,
      truncated: result.truncated,
    };
  }
  const stream = runner.stream<Cell[]>(sql, params, options);
  let announced = false;
  for await (const row of stream) {
    if (!announced) {
      sink.fields(stream.fields ?? []);
      announced = true;
    }
    sink.row(row);
  }
  if (!announced) sink.fields(stream.fields ?? []);
  const summary = stream.summary;
  return {
    streamed: true,
    rowsAffected: summary?.rowsAffected ?? 0,
    lastInsertId: summary?.lastInsertId ?? 0n,
    warningCount: summary?.warningCount ?? 0,
    timing: summary?.timing,
    info: "",
    truncated: false,
  };
}

/** An interactive transaction the console holds open between clicks. */
export interface OpenTransaction {
  readonly tx: Transaction;
  readonly idleTimeoutMs: number;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  /** Settles when the transaction has ended, however it ended. */
  readonly ended: Promise<void>;
}

const rolledBack = Symbol("rolled back by the console");

/**
 * Begins a transaction through the SDK's `transaction(fn)`: `fn` waits for
 * the Commit or Rollback button, so the SDK still does the protocol work
 * (the token, the owner header, refusing calls after the end). It never
 * retries: a person decides what to run again.
 */
export function beginTransaction(
  connection: Connection,
  isolation: IsolationLevelName | undefined,
): Promise<OpenTransaction> {
  return new Promise((opened, failed) => {
    let finish: { commit(): void; rollback(): void } | undefined;
    const done = connection.client
      .transaction(
        (tx) =>
          new Promise<void>((commit, rollback) => {
            finish = { commit: () => commit(), rollback: () => rollback(rolledBack) };
            opened({
              tx,
              idleTimeoutMs: connection.lastIdleTimeoutMs(),
              commit: () => {
                finish?.commit();
                return done;
              },
              rollback: () => {
                finish?.rollback();
                return done;
              },
              ended: done.catch(() => undefined),
            });
          }),
        { retries: 0, ...(isolation !== undefined ? { isolation } : {}) },
      )
      .catch((err: unknown) => {
        if (err !== rolledBack) throw err;
      });
    // Before `opened`, this is BeginTransaction's failure; after, a no-op.
    done.catch(failed);
  });
}
