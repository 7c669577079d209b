/**
 * Wires one gateway together: the MySQL pool, the core services on top of it,
 * and the app that serves them. main.ts and the tests both build gateways here,
 * so that what is tested is what runs.
 */
import { randomBytes } from "node:crypto";
import { type App, buildApp } from "./app.js";
import { createCredentialStore, readCredentialsFile } from "./auth/credentials.js";
import { createPsdbService } from "./compat/planetscale/psdb-service.js";
import { createPsdbSessions } from "./compat/planetscale/psdb-session.js";
import type { Config } from "./config.js";
import { createIngest, type Ingest } from "./ingest/ingest.js";
import { poolSource } from "./mysql/connection-source.js";
import type { Database } from "./mysql/database.js";
import { createDatabases } from "./mysql/databases.js";
import type { Logger } from "./observability/logger.js";
import type { GatewayCore, Scope } from "./services/context-values.js";
import { createSessionRegistry } from "./sessions/session-registry.js";
import { createTokenCodec } from "./sessions/session-token.js";
import { createSqlExecutor } from "./sql/sql-executor.js";
import type { TlsOptions } from "./transport/one-port.js";

export interface Gateway {
  readonly app: App;
  readonly db: Database;
  readonly ingest: Ingest;
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

/** At shutdown, how long the ingest log may take to reach MySQL; the rest waits for the next start. */
const ingestDrainMs = 10_000;

export async function createGateway(config: Config, options: GatewayOptions): Promise<Gateway> {
  const databases = createDatabases({
    ...config.mysql,
    transactionPoolSize: config.transactions.maxOpen,
    // Group-commit batches, plus one for the log flusher and one for upkeep.
    ingestPoolSize: config.ingest.connections + 2,
    url: options.mysqlUrl,
  });
  const db = databases.primary;
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
        scope = { database: pools.databaseName, pool: poolSource(pools), db: pools };
        scopes.set(pools, scope);
      }
      return scope;
    },
    primaryDatabase: db.databaseName,
    sessions,
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
  const app = await buildApp({
    core,
    planetscale: createPsdbService({
      limits: config.planetscale,
      sessions: createPsdbSessions(codec),
    }),
    db,
    pools: () => databases.all(),
    slowCallMs: config.log.slowCallMs,
    credentials,
    credentialLimits: config.auth.credentialLimits,
    codec,
    cluster: { node, peers: config.transactions.peers },
    connections: config.connections,
    limits: config.limits,
    logger: options.logger,
    tls: options.tls,
  });
  return {
    app,
    db,
    ingest,
    start: () => ingest.start(),
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
        await Promise.race([
          app.close(),
          new Promise((resolve) => {
            timer = setTimeout(resolve, config.shutdown.graceMs);
          }),
        ]);
        clearTimeout(timer);
      } finally {
        try {
          await Promise.all([sessions.close(), ingest.close(ingestDrainMs)]);
        } finally {
          await databases.close();
        }
      }
    },
  };
}
