/**
 * Where a call's statements run: a connection leased from the pool for the
 * call, or a transaction's pinned connection (see sessions/). The SQL core
 * runs statements on a lease without knowing which.
 */
import type { Database, PoolConnection } from "./database.js";

export interface Lease {
  readonly conn: PoolConnection;
  /** True when the connection is inside an open interactive transaction. */
  readonly inTransaction: boolean;
  /** Gives the connection back; `broken` when it cannot be trusted any more. */
  release(broken?: boolean): void;
}

export interface ConnectionSource {
  /** A connection for one call, waiting at most `timeoutMs` for it. */
  lease(timeoutMs: number): Promise<Lease>;
}

/** Leases pooled connections: released to the pool, or destroyed if broken. */
export function poolSource(db: Database): ConnectionSource {
  return {
    async lease(timeoutMs) {
      const conn = await db.acquire(timeoutMs);
      return {
        conn,
        inTransaction: false,
        release: (broken) => (broken ? conn.destroy() : conn.release()),
      };
    },
  };
}
