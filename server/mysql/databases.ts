/**
 * One MySQL server, several databases and accounts: the MySQL URL's (the
 * primary) and, created when first used, one set of pools per other
 * database, or MySQL account, that a credential works as. A connection's
 * account and current database are fixed when it connects, so statements of
 * a credential always run as its account, on its database, with no USE or
 * change of user per call; MySQL's own privileges then confine it.
 */
import { createDatabase, type Database, type DatabaseOptions } from "./database.js";

/** A MySQL account other than the URL's. */
export interface MysqlAccount {
  readonly user: string;
  readonly password: string;
}

export interface Databases {
  /** The MySQL URL's database and account. */
  readonly primary: Database;
  /**
   * The pools for database `name` (undefined: the URL's) as `account`
   * (undefined: the URL's).
   */
  forTarget(name: string | undefined, account: MysqlAccount | undefined): Database;
  /** Every set of pools created so far, the primary first. */
  all(): Database[];
  /** Closes every pool. */
  close(): Promise<void>;
}

export function createDatabases(options: DatabaseOptions): Databases {
  const primary = createDatabase(options);
  const others = new Map<string, Database>();
  return {
    primary,
    forTarget(name, account) {
      const database = name ?? primary.databaseName;
      if (database === primary.databaseName && account === undefined) return primary;
      // The password is part of the key: a reload that changes it gets new pools.
      const key = `${account?.user ?? ""}\u0000${account?.password ?? ""}\u0000${database}`;
      let db = others.get(key);
      if (db === undefined) {
        const url = new URL(options.url);
        url.pathname = `/${encodeURIComponent(database)}`;
        if (account !== undefined) {
          url.username = encodeURIComponent(account.user);
          url.password = encodeURIComponent(account.password);
        }
        // Ingest writes to the primary only: the others need no ingest pool.
        db = createDatabase({ ...options, url: url.toString(), ingestPoolSize: 1 });
        others.set(key, db);
      }
      return db;
    },
    all: () => [primary, ...others.values()],
    async close() {
      await Promise.all([primary, ...others.values()].map((db) => db.close()));
    },
  };
}
