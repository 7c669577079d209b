/**
 * How the core reaches service handlers: a Connect context value set by an
 * interceptor for every call, never a module global, so that several gateways
 * (tests) can live in one process. A handler that finds no value answers
 * `internal` instead of crashing.
 */
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { ChangeFeed } from "../changes/change-feed.js";
import type { Ingest } from "../ingest/ingest.js";
import type { ConnectionSource } from "../mysql/connection-source.js";
import type { Database } from "../mysql/database.js";
import type { ReadRouter, Target } from "../mysql/replication/read-router.js";
import type { Principal } from "../principal.js";
import type { SessionRegistry } from "../sessions/session-registry.js";
import type { SqlExecutor } from "../sql/sql-executor.js";

/** Where a principal's statements run. */
export interface Scope {
  /** The database unqualified names refer to. */
  readonly database: string;
  /** Pooled connections of that database, for calls outside a session. */
  readonly pool: ConnectionSource;
  /** Where its sessions' connections come from. */
  readonly db: Pick<Database, "acquireForTransaction" | "killQuery">;
  /** Its database and MySQL account, for the same pools on a replica. */
  readonly target: Target;
}

/** Reads on MySQL replicas, when SQLGATE_MYSQL_REPLICA_URLS names some. */
export interface ReplicaReads {
  readonly router: ReadRouter;
  /** SQLGATE_READ_FROM=replica: reads that do not say go to a replica. */
  readonly byDefault: boolean;
}

/** The core services a handler may use. */
export interface GatewayCore {
  readonly sql: SqlExecutor;
  /** Where `principal`'s statements run. */
  scopeFor(principal: Principal): Scope;
  /** The MySQL URL's database, the one ingest writes to. */
  readonly primaryDatabase: string;
  readonly sessions: SessionRegistry;
  /** Row changes from the binlog, and the heartbeat of an idle stream. */
  readonly changes: { readonly feed: ChangeFeed; readonly heartbeatMs: number } | undefined;
  /** Reads on replicas; undefined without replicas (everything runs on the primary). */
  readonly replicaReads: ReplicaReads | undefined;
  /** How long transaction calls without a deadline wait for their turn or a connection. */
  readonly acquireTimeoutMs: number;
  readonly ingest: Ingest;
  /** The deadline of a call that gives none (SQLGATE_DEFAULT_TIMEOUT_MS). */
  readonly defaultTimeoutMs: number;
  /** Resolves when MySQL answers within `timeoutMs`: what gRPC health reports. */
  ping(timeoutMs: number): Promise<void>;
  /**
   * Aborted when the gateway starts closing, so that calls with no natural end
   * (health Watch) end instead of holding close() until its grace period runs out.
   */
  readonly closing: AbortSignal;
}

export const kGatewayCore = createContextKey<GatewayCore | undefined>(undefined, {
  description: "sqlgate core services",
});

/** An interceptor that hands `core` to every call. */
export function createCoreInjector(core: GatewayCore): Interceptor {
  return (next) => (req) => {
    req.contextValues.set(kGatewayCore, core);
    return next(req);
  };
}

/** The core for this call, or `internal` if the interceptor did not run. */
export function coreFrom(values: { get<T>(key: { id: symbol; defaultValue: T }): T }): GatewayCore {
  const core = values.get(kGatewayCore);
  if (core === undefined) {
    throw new ConnectError("the gateway's core is not attached to this call", Code.Internal);
  }
  return core;
}
