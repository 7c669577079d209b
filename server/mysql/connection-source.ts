/**
 * Where a call's statements run: a connection leased from the pool for the
 * call, or a transaction's pinned connection (see sessions/). The SQL core
 * runs statements on a lease without knowing which.
 */
import { type Database, type PoolConnection, resetThenRelease } from "./database.js";

/**
 * The state a lease's connection is given back in: `reuse` as is, `reset`
 * after statements that left session state behind (COM_RESET_CONNECTION
 * clears it), `transactionState` after statements that left only state of the
 * current or next transaction (BEGIN, SAVEPOINT, SET TRANSACTION), which a
 * reset clears too, `reconnect` when its current database changed, `rolledBack` when
 * MySQL rolled back its open transaction (a deadlock), `transactionEnded` when
 * a statement ended it (COMMIT, ROLLBACK, or DDL, which commits implicitly),
 * `broken` when it cannot be trusted any more.
 */
export type ReleaseState =
  | "reuse"
  | "reset"
  | "transactionState"
  | "reconnect"
  | "rolledBack"
  | "transactionEnded"
  | "broken";

export interface Lease {
  readonly conn: PoolConnection;
  /** Stops a statement running on `conn` (KILL QUERY from a side connection of its account). */
  readonly killer: Pick<Database, "killQuery">;
  /** True when the connection is inside an open interactive transaction. */
  readonly inTransaction: boolean;
  /** True when the connection's session is read-only already (a read-only pinned session). */
  readonly readOnly?: boolean;
  /** Gives the connection back. */
  release(state: ReleaseState): void;
}

export interface ConnectionSource {
  /** A connection for one call, waiting at most `timeoutMs` for it. */
  lease(timeoutMs: number): Promise<Lease>;
}

/**
 * Leases pooled connections: released to the pool, or destroyed if broken.
 * `readOnly`: the pool's sessions are read-only from the start (a replica's).
 */
export function poolSource(db: Database, readOnly = false): ConnectionSource {
  return {
    async lease(timeoutMs) {
      const conn = await db.acquire(timeoutMs);
      return {
        conn,
        killer: db,
        inTransaction: false,
        readOnly,
        release(state) {
          if (state === "reuse" || state === "rolledBack" || state === "transactionEnded") {
            conn.release();
          } else if (state === "reset") resetThenRelease(conn);
          else conn.destroy();
        },
      };
    },
  };
}
