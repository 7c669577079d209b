/**
 * The gateway's own tables: idempotency keys, write-ahead log bookkeeping and
 * rejected log records. They are created at start-up under a MySQL named lock
 * (`GET_LOCK`), so that several replicas starting at once on an empty database
 * take turns instead of racing each other's DDL; a version row says which
 * layout exists, for later migrations.
 */
import { createHash } from "node:crypto";
import type { PoolConnection } from "../mysql/database.js";
import { quoteIdentifier } from "./ingest-target.js";

export interface InternalTables {
  readonly database: string;
  /** Idempotency keys applied, with when: `database`.`sqlgate_ingest_keys`. */
  readonly keys: string;
  /** Ranges of write-ahead log records applied, per log. */
  readonly logApplied: string;
  /** Log records MySQL refused (bad data found after they were acknowledged). */
  readonly rejected: string;
  /** The change stream sink's position: what it published last. */
  readonly changesSink: string;
}

/** The gateway's own tables, by name: never shown in change streams. */
const internalNames = new Set([
  "sqlgate_schema",
  "sqlgate_ingest_keys",
  "sqlgate_ingest_log_applied",
  "sqlgate_ingest_rejected",
  "sqlgate_changes_sink",
]);

export function isInternalTable(table: string): boolean {
  return internalNames.has(table);
}

/** `CREATE/ALTER/DROP/TRUNCATE TABLE [IF [NOT] EXISTS] [db.]name`, quoted or not. */
const tableStatement =
  /^\s*(?:CREATE|ALTER|DROP|TRUNCATE)\s+TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(?:(?:`[^`]*`|\w+)\s*\.\s*)?(?:`([^`]*)`|(\w+))/i;

/** Whether `sql` is DDL of one of the gateway's own tables (its start-up creates them). */
export function isInternalDdl(sql: string): boolean {
  const match = tableStatement.exec(sql);
  return match !== null && isInternalTable(match[1] ?? match[2] ?? "");
}

/** The layout created here; bump with a migration when it changes. */
const schemaVersion = 2;

export function internalTables(database: string): InternalTables {
  const name = (table: string) => `${quoteIdentifier(database)}.${quoteIdentifier(table)}`;
  return {
    database,
    keys: name("sqlgate_ingest_keys"),
    logApplied: name("sqlgate_ingest_log_applied"),
    rejected: name("sqlgate_ingest_rejected"),
    changesSink: name("sqlgate_changes_sink"),
  };
}

function query(conn: PoolConnection, sql: string, values: unknown[] = []): Promise<unknown[][]> {
  return new Promise((resolve, reject) => {
    conn.query({ sql, values, rowsAsArray: true }, (err, rows) =>
      err ? reject(err) : resolve(rows as unknown[][]),
    );
  });
}

/**
 * The name of the lock guarding `database`'s internal tables. MySQL limits
 * lock names to 64 characters, so long database names are hashed.
 */
export function schemaLockName(database: string): string {
  const name = `sqlgate.schema.${database}`;
  return name.length <= 64
    ? name
    : `sqlgate.schema.${createHash("sha256").update(database).digest("hex").slice(0, 40)}`;
}

/**
 * Creates the internal tables in `tables.database` if they are missing,
 * holding the named lock meanwhile (waiting up to `lockTimeoutMs` for another
 * replica that holds it).
 */
export async function ensureInternalTables(
  conn: PoolConnection,
  tables: InternalTables,
  lockTimeoutMs: number,
): Promise<void> {
  const lock = schemaLockName(tables.database);
  const [[got]] = (await query(conn, "SELECT GET_LOCK(?, ?)", [
    lock,
    Math.ceil(lockTimeoutMs / 1000),
  ])) as [[unknown]];
  if (Number(got) !== 1) {
    throw new Error(
      `another process held the MySQL lock ${JSON.stringify(lock)} for over ${lockTimeoutMs} ms`,
    );
  }
  try {
    const db = quoteIdentifier(tables.database);
    // Asked first: even a CREATE DATABASE that finds it there is written to
    // the binlog, where change streams would show it.
    const [found] = await query(
      conn,
      "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
      [tables.database],
    );
    if (found === undefined) await query(conn, `CREATE DATABASE IF NOT EXISTS ${db}`);
    await query(
      conn,
      `CREATE TABLE IF NOT EXISTS ${db}.sqlgate_schema (
        component VARCHAR(64) NOT NULL PRIMARY KEY,
        version INT UNSIGNED NOT NULL
      ) ENGINE=InnoDB`,
    );
    await query(
      conn,
      `CREATE TABLE IF NOT EXISTS ${tables.keys} (
        idempotency_key VARBINARY(255) NOT NULL PRIMARY KEY,
        target VARCHAR(512) NOT NULL,
        row_count INT UNSIGNED NOT NULL,
        applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        KEY applied_at (applied_at)
      ) ENGINE=InnoDB`,
    );
    await query(
      conn,
      `CREATE TABLE IF NOT EXISTS ${tables.logApplied} (
        log_id VARBINARY(64) NOT NULL,
        first_seq BIGINT UNSIGNED NOT NULL,
        last_seq BIGINT UNSIGNED NOT NULL,
        applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        PRIMARY KEY (log_id, first_seq)
      ) ENGINE=InnoDB`,
    );
    await query(
      conn,
      `CREATE TABLE IF NOT EXISTS ${tables.rejected} (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        log_id VARBINARY(64) NOT NULL,
        seq BIGINT UNSIGNED NOT NULL,
        target VARCHAR(512) NOT NULL,
        errno INT UNSIGNED NOT NULL,
        sql_state CHAR(5) NOT NULL,
        message TEXT NOT NULL,
        record LONGBLOB NOT NULL,
        rejected_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        UNIQUE KEY log_record (log_id, seq)
      ) ENGINE=InnoDB`,
    );
    await query(
      conn,
      `CREATE TABLE IF NOT EXISTS ${tables.changesSink} (
        sink VARCHAR(255) NOT NULL PRIMARY KEY,
        position VARCHAR(4096) NOT NULL,
        updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
      ) ENGINE=InnoDB`,
    );
    await query(
      conn,
      `INSERT INTO ${db}.sqlgate_schema (component, version) VALUES ('ingest', ?)
       ON DUPLICATE KEY UPDATE version = GREATEST(version, VALUES(version))`,
      [schemaVersion],
    );
  } finally {
    await query(conn, "SELECT RELEASE_LOCK(?)", [lock]).catch(() => {});
  }
}

/**
 * Deletes idempotency keys applied longer than `retentionMs` ago, a slice at a
 * time so that no single statement holds locks for long. Returns how many.
 */
export async function purgeExpiredKeys(
  conn: PoolConnection,
  tables: InternalTables,
  retentionMs: number,
): Promise<number> {
  let total = 0;
  for (;;) {
    const result = (await query(
      conn,
      `DELETE FROM ${tables.keys} WHERE applied_at < NOW(6) - INTERVAL ? MICROSECOND LIMIT 5000`,
      [retentionMs * 1000],
    )) as unknown as { affectedRows: number };
    total += result.affectedRows;
    if (result.affectedRows < 5000) return total;
  }
}
