/**
 * Which tables a change stream (or the JetStream sink) follows, from
 * patterns: `db.table`, `table` (in a default database), `db.*` or `*`.
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** Which tables a subscriber follows. */
export interface TableFilter {
  /** Whether changes of `database`.`table` go to the subscriber. */
  matches(database: string, table: string): boolean;
  /** Whether schema changes run in `database` go to the subscriber. */
  followsDatabase(database: string): boolean;
}
/**
 * A filter from `db.table`, `table` (in `database`), `db.*` or `*` patterns;
 * with `confinedTo`, patterns may name no other database.
 */
export function tableFilter(
  patterns: readonly string[],
  database: string,
  confinedTo: string | undefined,
): TableFilter {
  const wanted = (patterns.length === 0 ? ["*"] : patterns).map((pattern) => {
    const dot = pattern.indexOf(".");
    const db = pattern === "*" ? (confinedTo ?? "*") : dot < 0 ? database : pattern.slice(0, dot);
    const table = pattern === "*" ? "*" : dot < 0 ? pattern : pattern.slice(dot + 1);
    if (db === "" || table === "") {
      throw new ConnectError(
        `tables: "${pattern}" is not db.table, table, db.* or *`,
        Code.InvalidArgument,
      );
    }
    if (confinedTo !== undefined && db !== confinedTo) {
      throw new ConnectError(
        `tables: "${pattern}" is outside database ${confinedTo}, the only one this credential may read`,
        Code.PermissionDenied,
      );
    }
    return { db, table };
  });
  return {
    matches: (db, table) =>
      wanted.some((w) => (w.db === "*" || w.db === db) && (w.table === "*" || w.table === table)),
    followsDatabase: (db) => wanted.some((w) => w.db === "*" || w.db === db),
  };
}

/** Statements about accounts and privileges: never in a change stream (they may hold password hashes). */
const accountStatement =
  /^\s*(?:(?:CREATE|ALTER|DROP|RENAME)\s+(?:USER|ROLE)\b|GRANT\b|REVOKE\b|SET\s+(?:PASSWORD|DEFAULT\s+ROLE)\b)/i;

/**
 * Whether a schema change may go to subscribers at all: it ran in a
 * database (a statement is attributed to its session's default database;
 * one run without any is not shown), and is not about accounts.
 */
export function isShownSchemaChange(database: string, sql: string): boolean {
  return database !== "" && !accountStatement.test(sql);
}
