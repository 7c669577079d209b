/**
 * Wires one gateway together: the MySQL pool, the core services on top of it,
 * and the app that serves them. main.ts and the tests both build gateways here,
 * so that what is tested is what runs.
 */
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { setTimeout as delay } from "node:timers/promises";
import { type App, buildApp } from "./app.js";
import { createCredentialStore, readCredentialsFile } from "./auth/credentials.js";
import { createChangeFeed } from "./changes/change-feed.js";
import { type ChangeSink, startChangeSink } from "./changes/jetstream-sink.js";
import { tableFilter } from "./changes/table-filter.js";
import { createPsdbService } from "./compat/planetscale/psdb-service.js";
import { createPsdbSessions } from "./compat/planetscale/psdb-session.js";
import type { Config } from "./config.js";
import { createIngest, type Ingest } from "./ingest/ingest.js";
import { poolSource } from "./mysql/connection-source.js";
import { connectionOptionsFromUrl, type Database, trackPositions } from "./mysql/database.js";
import { createDatabases } from "./mysql/databases.js";
import { createReadRouter } from "./mysql/replication/read-router.js";
import { createReplicaSet, type ReplicaSet } from "./mysql/replication/replica-set.js";
import type { Logger } from "./observability/logger.js";
import type { GatewayCore, Scope } from "./services/context-values.js";
import { createSessionRegistry } from "./sessions/session-registry.js";
import { createTokenCodec } from "./sessions/session-token.js";
import { createSqlExecutor } from "./sql/sql-executor.js";
import type { OnePortServer, TlsOptions } from "./transport/one-port.js";

export interface Gateway {
  readonly app: App;
  readonly db: Database;
  readonly ingest: Ingest;
  /** The MySQL replicas reads may go to (none without SQLGATE_MYSQL_REPLICA_URLS). */
  readonly replicas: ReplicaSet;
  /** Publishing changes to JetStream (SQLGATE_CHANGES_SINK), once started. */
  changeSink(): ChangeSink | undefined;
  /**
   * What needs MySQL before serving: the internal tables (under a named lock)
   * and the replay of the ingest log. Call once MySQL answers, before listening.
   */
  start(): Promise<void>;
  /**
   * Reads SQLGATE_CREDENTIALS_FILE again and puts its credentials in place;
   * calls in flight are unaffected. Resolves with how many there are now;
   * rejects (keeping the current ones) if the file is invalid.
   */
  reloadCredentials(): Promise<number>;
  /** Stops serving (draining in-flight calls), flushes ingest, then closes the pools. */
  close(): Promise<void>;
}

export interface GatewayOptions {
  /** The MySQL URL to use (the configured one, or the embedded server's). */
  readonly mysqlUrl: string;
  readonly logger: Logger;
  readonly tls?: TlsOptions | undefined;
}

/** After the grace period, how long fastify's close may take once every connection is cut. */
const cutWaitMs = 1000;

/** At shutdown, how long the ingest log may take to reach MySQL; the rest waits for the next start. */
const ingestDrainMs = 10_000;

export async function createGateway(config: Config, options: GatewayOptions): Promise<Gateway> {
  const poolSettings = { ...config.mysql, transactionPoolSize: config.transactions.maxOpen };
  const withReplicas = config.replicas.urls.length > 0;
  const databases = createDatabases({
    ...poolSettings,
    // Group-commit batches, plus one for the log flusher and one for upkeep.
    ingestPoolSize: config.ingest.connections + 2,
    url: options.mysqlUrl,
    // Every write reports its position: what a replica read must wait for,
    // and where a change stream's transaction of that write stands.
    sessionInit: trackPositions,
  });
  const db = databases.primary;
  const replicas = createReplicaSet({
    urls: config.replicas.urls.map((url) => withPrimaryDefaults(url, options.mysqlUrl)),
    pools: { ...poolSettings, ingestPoolSize: 1 },
    primary: databases,
    maxLagMs: config.replicas.maxLagMs,
    checkIntervalMs: config.replicas.checkIntervalMs,
  });
  const credentials =
    config.auth.credentialsFile === undefined
      ? undefined
      : createCredentialStore(await readCredentialsFile(config.auth.credentialsFile));
  const ingest = createIngest({
    db,
    config: config.ingest,
    dataDir: config.dataDir,
    logger: options.logger,
    lockTimeoutMs: config.mysql.startupTimeoutMs,
  });
  const codec = createTokenCodec(
    config.transactions.tokenSecrets.length > 0
      ? config.transactions.tokenSecrets.map((secret) => Buffer.from(secret))
      : [randomBytes(32)],
  );
  const node = config.transactions.nodeUrl ?? `sqlgate-${randomBytes(6).toString("hex")}`;
  const sessions = createSessionRegistry({ ...config.transactions, node, codec });
  const closing = new AbortController();
  // Every change stream listens for the gateway closing.
  setMaxListeners(0, closing.signal);
  // Readers start with their first subscriber: nothing is read before.
  const changes = createChangeFeed({
    connection: connectionOptionsFromUrl(options.mysqlUrl),
    query: (sql) => db.queryRows(sql, [], 5000),
    bufferTransactions: config.changes.bufferMessages,
    maxChangesPerMessage: 1000,
    logger: options.logger,
  });
  const scopes = new Map<Database, Scope>();
  const core: GatewayCore = {
    sql: createSqlExecutor({
      ...config.limits,
      acquireTimeoutMs: config.mysql.acquireTimeoutMs,
    }),
    scopeFor(principal) {
      // One scope per set of pools (databases.forTarget keeps those).
      const pools = databases.forTarget(principal.database, principal.account);
      let scope = scopes.get(pools);
      if (scope === undefined) {
        scope = {
          database: pools.databaseName,
          pool: poolSource(pools),
          db: pools,
          target: { database: principal.database, account: principal.account },
        };
        scopes.set(pools, scope);
      }
      return scope;
    },
    primaryDatabase: db.databaseName,
    sessions,
    changes: { feed: changes, heartbeatMs: config.changes.heartbeatMs },
    replicaReads: withReplicas
      ? {
          router: createReadRouter({ replicas, waitMs: config.replicas.waitMs }),
          byDefault: config.replicas.readFrom === "replica",
        }
      : undefined,
    acquireTimeoutMs: config.mysql.acquireTimeoutMs,
    ingest,
    defaultTimeoutMs: config.limits.defaultTimeoutMs,
    ping: (timeoutMs) => db.ping(timeoutMs),
    closing: closing.signal,
  };
  if (config.transactions.tokenSecrets.length === 0) {
    options.logger.info(
      "no SQLGATE_TOKEN_SECRET: transaction tokens are signed with a random key and valid on this process only",
    );
  }
  let sink: ChangeSink | undefined;
  const app = await buildApp({
    core,
    planetscale: createPsdbService({
      limits: config.planetscale,
      sessions: createPsdbSessions(codec),
    }),
    db,
    pools: () => databases.all(),
    replicas: () => replicas.status(),
    changeSink: () => sink?.status(),
    slowCallMs: config.log.slowCallMs,
    credentials,
    credentialLimits: config.auth.credentialLimits,
    codec,
    cluster: { node, peers: config.transactions.peers },
    connections: config.connections,
    limits: config.limits,
    logger: options.logger,
    tls: options.tls,
    console: config.console,
    unaryFastPath: config.unaryFastPath,
  });
  return {
    app,
    db,
    ingest,
    replicas,
    changeSink: () => sink,
    async start() {
      await ingest.start();
      replicas.start();
      if (config.changes.sink !== undefined) {
        sink = startChangeSink({
          config: config.changes.sink,
          connection: connectionOptionsFromUrl(options.mysqlUrl),
          positionTable: ingest.tables.changesSink,
          tables: tableFilter(config.changes.sink.tables, db.databaseName, undefined),
          logger: options.logger,
          connectTimeoutMs: config.mysql.startupTimeoutMs,
        });
      }
    },
    async reloadCredentials() {
      if (credentials === undefined || config.auth.credentialsFile === undefined) return 0;
      credentials.replace(await readCredentialsFile(config.auth.credentialsFile));
      return credentials.size;
    },
    async close() {
      closing.abort();
      // Readiness is red from here; load balancers get a moment to notice
      // while the gateway still serves.
      if (config.shutdown.delayMs > 0) {
        await new Promise((resolve) => setTimeout(resolve, config.shutdown.delayMs));
      }
      try {
        // In-flight calls get the grace period; then what is left is cut off
        // by closing the pools, after ingest is flushed.
        let timer: NodeJS.Timeout | undefined;
        const closed = app.close();
        const graceOver = await Promise.race([
          closed.then(() => false),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(true), config.shutdown.graceMs);
          }),
        ]);
        clearTimeout(timer);
        if (graceOver) {
          // What is still open is cut. A handler still waiting to write to a
          // stream cut under it never returns, so fastify's close is given
          // only a moment more.
          (app.server as unknown as OnePortServer).destroyConnections();
          await Promise.race([closed, delay(cutWaitMs)]);
        }
      } finally {
        try {
          await Promise.all([
            sessions.close(),
            ingest.close(ingestDrainMs),
            changes.close(),
            sink?.close(),
          ]);
        } finally {
          await Promise.all([databases.close(), replicas.close()]);
        }
      }
    },
  };
}

/**
 * A replica URL with what it leaves out taken from the primary's: the
 * account, the database and the URL parameters (TLS settings), so that
 * `mysql://replica-1:3306` is enough when replicas mirror the primary.
 */
function withPrimaryDefaults(replicaUrl: string, primaryUrl: string): string {
  const replica = new URL(replicaUrl);
  const primary = new URL(primaryUrl);
  if (replica.username === "") {
    replica.username = primary.username;
    replica.password = primary.password;
  }
  if (replica.pathname === "" || replica.pathname === "/") replica.pathname = primary.pathname;
  for (const [name, value] of primary.searchParams) {
    if (name !== "socket" && !replica.searchParams.has(name)) replica.searchParams.set(name, value);
  }
  return replica.toString();
}
