/**
 * Wires one gateway together: the MySQL pool, the core services on top of it,
 * and the app that serves them. main.ts and the tests both build gateways here,
 * so that what is tested is what runs.
 */
import { type App, buildApp } from "./app.js";
import type { Config } from "./config.js";
import { createDatabase, type Database } from "./mysql/database.js";
import type { Logger } from "./observability/logger.js";
import { createSqlExecutor } from "./sql/sql-executor.js";

export interface Gateway {
  readonly app: App;
  readonly db: Database;
  /** Stops serving (draining in-flight calls), then closes the pool. */
  close(): Promise<void>;
}

export interface GatewayOptions {
  /** The MySQL URL to use (the configured one, or the embedded server's). */
  readonly mysqlUrl: string;
  readonly logger: Logger;
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer } | undefined;
}

export async function createGateway(config: Config, options: GatewayOptions): Promise<Gateway> {
  const db = createDatabase({ ...config.mysql, url: options.mysqlUrl });
  const core = {
    sql: createSqlExecutor(db, {
      ...config.limits,
      acquireTimeoutMs: config.mysql.acquireTimeoutMs,
    }),
  };
  const app = await buildApp({
    core,
    db,
    limits: config.limits,
    logger: options.logger,
    tls: options.tls,
  });
  return {
    app,
    db,
    async close() {
      await app.close();
      await db.close();
    },
  };
}
