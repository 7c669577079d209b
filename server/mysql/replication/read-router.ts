/**
 * Chooses the server a read runs on: the least busy usable replica, one that
 * has applied the caller's `min_position` (waiting for it a little), or the
 * primary when no replica will do.
 *
 * A route is a ConnectionSource, so the SQL core runs the call on it without
 * knowing where it goes; the route records where it went (`servedBy`).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { type ConnectionSource, type Lease, poolSource } from "../connection-source.js";
import { type Database, engineOf, type PoolConnection } from "../database.js";
import type { MysqlAccount } from "../databases.js";
import { formatPosition, hasReached, type Position } from "./position.js";
import type { Replica, ReplicaSet } from "./replica-set.js";

/** What `served_by` says of the primary. */
export const primaryName = "primary";

/** Where a principal's statements go: its database and MySQL account. */
export interface Target {
  readonly database: string | undefined;
  readonly account: MysqlAccount | undefined;
}

/** A source that remembers which server it leased from. */
export interface RoutedSource extends ConnectionSource {
  /** "primary" or "replica <host:port>"; "primary" until a lease is taken. */
  readonly servedBy: string;
}

export interface ReadRouter {
  /** A source for one read of `target`: a replica when one will do, else `primary`. */
  route(primary: ConnectionSource, target: Target, minPosition: Position): RoutedSource;
  /**
   * Where a read-only transaction may run: a replica that is known to have
   * applied `minPosition` already (a transaction does not wait), else undefined.
   */
  transactionReplica(
    target: Target,
    minPosition: Position,
  ): { readonly db: Database; readonly servedBy: string } | undefined;
}

export interface ReadRouterOptions {
  readonly replicas: ReplicaSet;
  /** The longest wait for a replica to reach a `min_position` (SQLGATE_REPLICA_WAIT_MS). */
  readonly waitMs: number;
}

/** The served_by name of a replica. */
function nameOf(replica: Replica): string {
  return `replica ${replica.name}`;
}

export function createReadRouter(options: ReadRouterOptions): ReadRouter {
  const { replicas } = options.replicas;
  let turn = 0;
  /** The usable replica running the fewest statements (ties taken in turn). */
  const leastBusy = (among: readonly Replica[]): Replica | undefined => {
    turn = (turn + 1) % Math.max(1, among.length);
    let best: Replica | undefined;
    for (let i = 0; i < among.length; i++) {
      const replica = among[(turn + i) % among.length] as Replica;
      if (best === undefined || replica.active < best.active) best = replica;
    }
    return best;
  };
  const sources = new WeakMap<Database, ConnectionSource>();
  const sourceOf = (db: Database) => {
    let source = sources.get(db);
    if (source === undefined) {
      source = poolSource(db, true);
      sources.set(db, source);
    }
    return source;
  };

  /** A lease on `replica` whose release also counts it as no longer busy. */
  const leaseOn = async (replica: Replica, target: Target, timeoutMs: number): Promise<Lease> => {
    const db = replica.databases.forTarget(target.database, target.account);
    replica.active++;
    try {
      const lease = await sourceOf(db).lease(timeoutMs);
      return {
        ...lease,
        release(state) {
          replica.active--;
          lease.release(state);
        },
      };
    } catch (err) {
      replica.active--;
      throw err;
    }
  };

  return {
    route(primary, target, minPosition) {
      let servedBy = primaryName;
      return {
        get servedBy() {
          return servedBy;
        },
        async lease(timeoutMs) {
          const started = performance.now();
          const usable = replicas.filter((r) => r.usable);
          const current = usable.filter((r) => hasReached(r.position, minPosition));
          const replica = leastBusy(current.length > 0 ? current : usable);
          if (replica !== undefined) {
            const lease = await leaseOn(replica, target, timeoutMs).catch((err: unknown) => {
              // A replica that cannot be reached is skipped from now on and
              // the read goes to the primary; other failures are the call's.
              if (!(err instanceof ConnectError) || err.code !== Code.Unavailable) throw err;
              replica.markDown(err.rawMessage);
              return undefined;
            });
            if (lease !== undefined) {
              const waitMs = Math.min(options.waitMs, timeoutMs - (performance.now() - started));
              const reached = await (hasReached(replica.position, minPosition)
                ? Promise.resolve(true)
                : waitForPosition(lease, minPosition, waitMs)
              ).catch((err: unknown) => {
                replica.markDown(err instanceof Error ? err.message : String(err));
                return undefined;
              });
              if (reached === true) {
                replica.reached(minPosition);
                servedBy = nameOf(replica);
                return lease;
              }
              // Not there in time: the primary serves. A failed wait leaves
              // the connection in doubt.
              lease.release(reached === false ? "reuse" : "broken");
            }
          }
          servedBy = primaryName;
          return primary.lease(Math.max(1, timeoutMs - (performance.now() - started)));
        },
      };
    },

    transactionReplica(target, minPosition) {
      const replica = leastBusy(
        replicas.filter((r) => r.usable && hasReached(r.position, minPosition)),
      );
      if (replica === undefined) return undefined;
      return {
        db: replica.databases.forTarget(target.database, target.account),
        servedBy: nameOf(replica),
      };
    },
  };
}

/**
 * Waits on `lease`'s replica until it has applied `position`, at most
 * `waitMs`: MariaDB's MASTER_GTID_WAIT or MySQL's WAIT_FOR_EXECUTED_GTID_SET,
 * as a statement of its own before the read (in one SELECT with the read,
 * the read could see rows from before the wait). Resolves whether it got there.
 */
function waitForPosition(lease: Lease, position: Position, waitMs: number): Promise<boolean> {
  if (waitMs <= 0) return Promise.resolve(false);
  const conn: PoolConnection = lease.conn;
  const sql =
    engineOf(conn) === "mariadb"
      ? "SELECT MASTER_GTID_WAIT(?, ?)"
      : "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)";
  return new Promise((resolve, reject) => {
    conn.query(
      { sql, values: [formatPosition(position), waitMs / 1000], rowsAsArray: true },
      (err, rows) => {
        if (err) reject(err);
        else resolve(Number((rows as unknown[][])[0]?.[0]) === 0);
      },
    );
  });
}
