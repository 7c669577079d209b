/**
 * Which tables a credential with its own MySQL account may follow: those
 * the account may read, as MySQL itself says. The answer comes from a
 * `SELECT ... LIMIT 0` run as that account (so global, database, table and
 * role grants all count, as they do for its queries), and is kept for a
 * while so that a busy stream asks once per table, not per change.
 */

import { quoteIdentifier } from "../ingest/ingest-target.js";
import type { ConnectionSource } from "../mysql/connection-source.js";

export interface TableAccess {
  /** Whether the account may read `database`.`table`. */
  mayRead(database: string, table: string): Promise<boolean>;
}

/** MySQL's answers meaning "not yours to read". */
const deniedErrnos = new Set([
  1044, // ER_DBACCESS_DENIED_ERROR
  1142, // ER_TABLEACCESS_DENIED_ERROR
  1143, // ER_COLUMNACCESS_DENIED_ERROR
]);

export interface TableAccessOptions {
  /** Connections as the account in question. */
  readonly pool: ConnectionSource;
  /** How long an answer holds before it is asked again (grants change). */
  readonly ttlMs: number;
  readonly timeoutMs: number;
}

export function createTableAccess(options: TableAccessOptions): TableAccess {
  const answers = new Map<string, { readonly allowed: Promise<boolean>; readonly at: number }>();

  const ask = async (database: string, table: string): Promise<boolean> => {
    const lease = await options.pool.lease(options.timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        lease.conn.query(
          `SELECT 1 FROM ${quoteIdentifier(database)}.${quoteIdentifier(table)} LIMIT 0`,
          (err) => (err ? reject(err) : resolve()),
        );
      });
      lease.release("reuse");
      return true;
    } catch (err) {
      lease.release((err as { fatal?: boolean }).fatal === true ? "broken" : "reuse");
      const errno = (err as { errno?: number }).errno;
      // A table dropped since: the account could read it when it changed.
      if (errno === 1146) return true;
      if (errno !== undefined && deniedErrnos.has(errno)) return false;
      throw err;
    }
  };

  return {
    mayRead(database, table) {
      const key = `${database}.${table}`;
      const known = answers.get(key);
      if (known !== undefined && Date.now() - known.at < options.ttlMs) return known.allowed;
      const allowed = ask(database, table);
      answers.set(key, { allowed, at: Date.now() });
      // A failed check (MySQL away) is asked again next time, not remembered.
      allowed.catch(() => answers.delete(key));
      return allowed;
    },
  };
}
