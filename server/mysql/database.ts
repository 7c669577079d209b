/**
 * The gateway's handle on one MySQL server: a pool of connections for
 * statements and a small side pool for control work (KILL QUERY, readiness
 * pings) that must not wait behind a full pool.
 *
 * mysql2's callback API is used directly: its promise wrapper adds an
 * allocation and, with `trace` on, a captured stack per call (see
 * performance-notes in the README's benchmark section).
 */
import { readFileSync } from "node:fs";
import mysql, { type Pool, type PoolConnection, type PoolOptions } from "mysql2";
import { connectErrorFromMysql, limitExceeded } from "./errors.js";

export type { PoolConnection };

export interface DatabaseOptions {
  /** `mysql://user:pass@host:port/db`, optionally `?socket=/path/to.sock`. */
  readonly url: string;
  readonly poolSize: number;
  /** Connections for open transactions, each pinned while its transaction lasts. */
  readonly transactionPoolSize: number;
  readonly acquireTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Connections for ingest batches (group commit, log flushing). */
  readonly ingestPoolSize: number;
  /**
   * Statements that set up every new connection's session, by the server's
   * engine, run again after each reset (COM_RESET_CONNECTION clears them):
   * replicas' read-only mode, the primary's tracking of replication positions.
   */
  readonly sessionInit?: ((engine: Engine) => readonly string[]) | undefined;
}

/** The two server engines the gateway speaks to. */
export type Engine = "mariadb" | "mysql";

/** The engine of a connected connection, from its server's handshake. */
export function engineOf(conn: PoolConnection): Engine {
  const handshake = (conn as unknown as { _handshakePacket?: { serverVersion?: string } })
    ._handshakePacket;
  return /mariadb/i.test(handshake?.serverVersion ?? "") ? "mariadb" : "mysql";
}

/** Each connection's session set-up (DatabaseOptions.sessionInit), for resets. */
const sessionInitOf = new WeakMap<PoolConnection, readonly string[]>();

/** Runs `statements` on `conn` in order; calls back with the first error. */
function runEach(
  conn: PoolConnection,
  statements: readonly string[],
  done: (err: Error | null) => void,
): void {
  const [first, ...rest] = statements;
  if (first === undefined) done(null);
  else conn.query(first, (err) => (err ? done(err) : runEach(conn, rest, done)));
}

/**
 * Clears what a caller left on `conn` (variables, temporary tables, locks, an
 * open transaction) so that the next caller finds a fresh session set up as
 * its pool sets up new ones, then puts it back; a connection that cannot be
 * reset is destroyed.
 */
export function resetThenRelease(conn: PoolConnection): void {
  conn.reset((err) => {
    if (err) return conn.destroy();
    runEach(conn, sessionInitOf.get(conn) ?? [], (initErr) =>
      initErr ? conn.destroy() : conn.release(),
    );
  });
}

/** One pool's state: open connections, how many are idle, calls waiting for one. */
export interface PoolStats {
  readonly pool: "statements" | "transactions" | "control" | "ingest";
  readonly limit: number;
  readonly open: number;
  readonly idle: number;
  readonly waiting: number;
}

/** mysql2's pool internals that its public API does not expose. */
interface PoolInternals {
  readonly _allConnections: { readonly length: number };
  readonly _freeConnections: { readonly length: number };
  readonly _connectionQueue: { readonly length: number };
}

function statsOf(pool: Pool, name: PoolStats["pool"], limit: number): PoolStats {
  const p = pool as unknown as PoolInternals;
  return {
    pool: name,
    limit,
    open: p._allConnections.length,
    idle: p._freeConnections.length,
    waiting: p._connectionQueue.length,
  };
}

export interface Database {
  /** Where the pool connects, without credentials, for logs. */
  readonly target: string;
  /** The database that unqualified table names refer to. */
  readonly databaseName: string;
  /**
   * A pooled connection, waiting at most `timeoutMs` for one to be free.
   * Fails with `resource_exhausted` when the pool stays full, `unavailable`
   * when MySQL cannot be reached.
   */
  acquire(timeoutMs: number): Promise<PoolConnection>;
  /** A connection to pin for an interactive transaction, from its own pool. */
  acquireForTransaction(timeoutMs: number): Promise<PoolConnection>;
  /**
   * A connection for ingest batches, from their own pool: bulk writes never
   * wait behind queries, nor queries behind them. Its session runs without
   * NO_BACKSLASH_ESCAPES, which ingest's SQL literals rely on.
   */
  acquireForIngest(timeoutMs: number): Promise<PoolConnection>;
  /** A small read query (schema lookups) on the control pool, rows as arrays. */
  queryRows(sql: string, params: readonly unknown[], timeoutMs: number): Promise<unknown[][]>;
  /** Stops the statement running on connection `threadId` (the connection stays). */
  killQuery(threadId: number): Promise<void>;
  /** Resolves when MySQL answers a ping within `timeoutMs`. */
  ping(timeoutMs: number): Promise<void>;
  /** Each pool's connections now, for metrics. */
  poolStats(): PoolStats[];
  /** Closes every connection. */
  close(): Promise<void>;
}

/**
 * mysql2's `ssl` option from a URL's `ssl-mode` (as MySQL's own clients name
 * it: DISABLED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY), `ssl-ca`, `ssl-cert`
 * and `ssl-key` parameters (files read now): REQUIRED encrypts without checking
 * the server, VERIFY_CA checks its certificate against `ssl-ca`,
 * VERIFY_IDENTITY (the default when `ssl-ca` is given) its name too.
 */
function sslOptionsFromUrl(url: URL): PoolOptions["ssl"] | undefined {
  const ca = url.searchParams.get("ssl-ca") ?? undefined;
  const mode = (
    url.searchParams.get("ssl-mode") ?? (ca ? "VERIFY_IDENTITY" : "DISABLED")
  ).toUpperCase();
  if (mode === "DISABLED") return undefined;
  const file = (name: string) => {
    const path = url.searchParams.get(name);
    return path === null ? undefined : readFileSync(path);
  };
  return {
    ...(ca === undefined ? {} : { ca: file("ssl-ca") }),
    ...(url.searchParams.has("ssl-cert") ? { cert: file("ssl-cert"), key: file("ssl-key") } : {}),
    rejectUnauthorized: mode !== "REQUIRED",
    ...(mode === "VERIFY_CA" ? { checkServerIdentity: () => undefined } : {}),
  } as PoolOptions["ssl"];
}

/** mysql2 options from a `mysql://` URL. Throws on a malformed URL. */
export function connectionOptionsFromUrl(text: string): PoolOptions {
  const url = new URL(text);
  const socketPath = url.searchParams.get("socket") ?? undefined;
  const ssl = sslOptionsFromUrl(url);
  return {
    ...(ssl === undefined ? {} : { ssl }),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database: decodeURIComponent(url.pathname.replace(/^\//, "")) || undefined,
    ...(socketPath === undefined
      ? { host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port || 3306) }
      : { socketPath }),
  } as PoolOptions;
}

/** A URL's target for logs: host and database, never the password. */
export function describeUrl(text: string): string {
  const url = new URL(text);
  const where = url.searchParams.get("socket") ?? url.host;
  return `${url.username ? `${decodeURIComponent(url.username)}@` : ""}${where}${url.pathname}`;
}

/**
 * Options every gateway connection uses, chosen for lossless results (see
 * sql/result-columns.ts) and safety: LOCAL INFILE is off so that a statement
 * can never make the gateway read its own files, and one statement per call.
 */
const losslessOptions: PoolOptions = {
  supportBigNumbers: true,
  // BIGINT as a number when it is a safe integer, else as text: lossless, and
  // far cheaper than text for every value (mysql2 formats those through a
  // 64-bit arithmetic library).
  bigNumberStrings: false,
  dateStrings: true,
  jsonStrings: true,
  decimalNumbers: false,
  multipleStatements: false,
  charset: "UTF8MB4_GENERAL_CI",
  flags: ["-LOCAL_FILES"],
  // Prepared statements are cached per connection; MySQL's global
  // max_prepared_stmt_count (16382 by default) bounds pool size x this.
  maxPreparedStatements: 256,
  trace: false,
  enableKeepAlive: true,
};

export function createDatabase(options: DatabaseOptions): Database {
  const base = connectionOptionsFromUrl(options.url);
  const createPool = (size: number, maxIdle: number, extra: PoolOptions = {}): Pool => {
    const pool = mysql.createPool({
      ...base,
      ...losslessOptions,
      ...extra,
      connectionLimit: size,
      maxIdle,
      idleTimeout: options.idleTimeoutMs,
      connectTimeout: options.connectTimeoutMs,
      waitForConnections: true,
      queueLimit: 0,
    });
    pool.on("connection", (conn) => {
      // Errors on idle pooled connections (MySQL restarted) are handled by the
      // pool, which drops the connection; a listener keeps them from crashing us.
      conn.on("error", () => {});
      const init = options.sessionInit?.(engineOf(conn)) ?? [];
      if (init.length === 0) return;
      sessionInitOf.set(conn, init);
      // Queued ahead of any caller's statement on this new connection.
      runEach(conn, init, (err) => {
        if (err) conn.destroy();
      });
    });
    return pool;
  };
  const statements = createPool(options.poolSize, options.poolSize);
  // Transactions pin a connection each for as long as they stay open, so they
  // get their own pool: open transactions never starve single statements.
  const transactions = createPool(options.transactionPoolSize, 0);
  const control = createPool(2, 1);
  const ingest = createPool(options.ingestPoolSize, options.ingestPoolSize, {
    // Ingest statements are megabytes of ready SQL text: mysql2 would scan
    // every byte for `?` placeholders even with no values to put there.
    queryFormat: (sql: string, values: unknown) =>
      Array.isArray(values) && values.length > 0 ? mysql.format(sql, values) : sql,
  });
  ingest.on("connection", (conn) => {
    conn.query(
      "SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
      (err) => {
        if (err) conn.destroy();
      },
    );
  });

  const acquireFrom = (pool: Pool, size: number, setting: string, timeoutMs: number) =>
    new Promise<PoolConnection>((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        reject(
          limitExceeded(
            `no MySQL connection became free within ${timeoutMs} ms (${setting}=${size})`,
            setting,
            size,
            `raise ${setting} or SQLGATE_POOL_ACQUIRE_TIMEOUT_MS, or retry later`,
          ),
        );
      }, timeoutMs);
      pool.getConnection((err, conn) => {
        clearTimeout(timer);
        if (timedOut) {
          if (!err) conn.release();
          return;
        }
        if (err) reject(connectErrorFromMysql(err));
        else resolve(conn);
      });
    });

  const onControl = (sql: string, timeoutMs: number): Promise<void> =>
    new Promise((resolve, reject) => {
      control.query({ sql, timeout: timeoutMs }, (err) => {
        if (err) reject(connectErrorFromMysql(err));
        else resolve();
      });
    });

  return {
    target: describeUrl(options.url),
    databaseName: base.database ?? "",
    acquire: (timeoutMs) =>
      acquireFrom(statements, options.poolSize, "SQLGATE_POOL_SIZE", timeoutMs),
    acquireForTransaction: (timeoutMs) =>
      acquireFrom(transactions, options.transactionPoolSize, "SQLGATE_MAX_TRANSACTIONS", timeoutMs),
    acquireForIngest: (timeoutMs) =>
      acquireFrom(ingest, options.ingestPoolSize, "SQLGATE_INGEST_CONNECTIONS", timeoutMs),
    queryRows: (sql, params, timeoutMs) =>
      new Promise((resolve, reject) => {
        control.query(
          { sql, values: params as unknown[], timeout: timeoutMs, rowsAsArray: true },
          (err, rows) => (err ? reject(connectErrorFromMysql(err)) : resolve(rows as unknown[][])),
        );
      }),
    killQuery: (threadId) => onControl(`KILL QUERY ${Number(threadId)}`, options.connectTimeoutMs),
    ping: (timeoutMs) => onControl("SELECT 1", timeoutMs),
    poolStats: () => [
      statsOf(statements, "statements", options.poolSize),
      statsOf(transactions, "transactions", options.transactionPoolSize),
      statsOf(control, "control", 2),
      statsOf(ingest, "ingest", options.ingestPoolSize),
    ],
    close: async () => {
      await Promise.allSettled(
        [statements, transactions, control, ingest].map((pool) => pool.promise().end()),
      );
    },
  };
}

/** Runs a fixed control statement (no parameters, no result), such as COMMIT, on `conn`. */
export function runControlStatement(conn: PoolConnection, sql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    conn.query(sql, (err) => (err ? reject(connectErrorFromMysql(err)) : resolve()));
  });
}

/**
 * Runs COMMIT on `conn` and resolves with the replication position it
 * reported (see positionOf), "" when it wrote nothing or is not tracked.
 */
export function commitWithPosition(conn: PoolConnection): Promise<string> {
  return new Promise((resolve, reject) => {
    conn.query("COMMIT", (err, result) =>
      err ? reject(connectErrorFromMysql(err)) : resolve(positionOf(result as StateChanges)),
    );
  });
}

/** What MySQL's session tracking put on an OK packet, as mysql2 parses it. */
export interface StateChanges {
  readonly stateChanges?: {
    readonly systemVariables?: Readonly<Record<string, string>>;
    readonly gtids?: readonly string[];
  };
}

/**
 * The replication position a write's OK packet reports: MariaDB's tracked
 * `last_gtid`, MySQL's tracked own GTIDs (see trackPositions); "" for a
 * statement that wrote nothing (no new GTID, nothing reported).
 */
export function positionOf(header: StateChanges | undefined): string {
  const changes = header?.stateChanges;
  if (changes === undefined) return "";
  const lastGtid = changes.systemVariables?.last_gtid;
  if (lastGtid !== undefined && lastGtid !== "") return lastGtid;
  return changes.gtids?.filter((gtid) => gtid !== "").join(",") ?? "";
}

/**
 * Session set-up that makes every write report its replication position
 * (DatabaseOptions.sessionInit for the primary): MariaDB tracks `last_gtid`
 * among the default tracked variables, MySQL its own GTIDs.
 */
export function trackPositions(engine: Engine): readonly string[] {
  return engine === "mariadb"
    ? [
        "SET SESSION session_track_system_variables = CONCAT(@@SESSION.session_track_system_variables, ',last_gtid')",
      ]
    : ["SET SESSION session_track_gtids = OWN_GTID"];
}
