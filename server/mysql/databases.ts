/**
 * One MySQL server, several databases: the MySQL URL's database (the
 * primary) and, created when first used, one set of pools per other
 * database that a credential works on. A connection's current database is
 * fixed when it connects, so statements of a credential always run on its
 * database without a USE per call.
 */
import { createDatabase, type Database, type DatabaseOptions } from "./database.js";

export interface Databases {
  /** The MySQL URL's database. */
  readonly primary: Database;
  /** The pools for database `name` (the primary for undefined or the URL's database). */
  forDatabase(name: string | undefined): Database;
  /** Closes every pool. */
  close(): Promise<void>;
}

export function createDatabases(options: DatabaseOptions): Databases {
  const primary = createDatabase(options);
  const others = new Map<string, Database>();
  return {
    primary,
    forDatabase(name) {
      if (name === undefined || name === primary.databaseName) return primary;
      let db = others.get(name);
      if (db === undefined) {
        const url = new URL(options.url);
        url.pathname = `/${encodeURIComponent(name)}`;
        // Ingest writes to the primary only: the others need no ingest pool.
        db = createDatabase({ ...options, url: url.toString(), ingestPoolSize: 1 });
        others.set(name, db);
      }
      return db;
    },
    async close() {
      await Promise.all([primary, ...others.values()].map((db) => db.close()));
    },
  };
}
