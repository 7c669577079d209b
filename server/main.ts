/**
 * The command-line entry: reads the configuration, starts the embedded
 * database when no MySQL URL is given, waits for MySQL, serves, and shuts
 * down cleanly on SIGTERM/SIGINT.
 */
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { type Config, ConfigError, loadConfig } from "./config.js";
import { type EmbeddedMysql, startEmbeddedMysql } from "./devdb/embedded-mysql.js";
import { createGateway } from "./gateway.js";
import type { Database } from "./mysql/database.js";
import { createLogger, type Logger } from "./observability/logger.js";

/** Pings MySQL with exponential backoff until it answers or `timeoutMs` passes. */
async function waitForMysql(db: Database, timeoutMs: number, logger: Logger): Promise<void> {
  const until = Date.now() + timeoutMs;
  let delayMs = 100;
  for (let attempt = 1; ; attempt++) {
    try {
      await db.ping(5000);
      if (attempt > 1) logger.info({ mysql: db.target }, "MySQL is answering");
      return;
    } catch (err) {
      if (Date.now() + delayMs > until) throw err;
      logger.warn(
        { mysql: db.target, attempt, retryInMs: delayMs, error: (err as Error).message },
        "waiting for MySQL",
      );
      await new Promise((r) => setTimeout(r, delayMs));
      delayMs = Math.min(delayMs * 2, 5000);
    }
  }
}

async function main(config: Config): Promise<void> {
  const logger = createLogger(config.log);
  let embedded: EmbeddedMysql | undefined;
  let url = config.mysql.url;
  if (url === undefined) {
    embedded = await startEmbeddedMysql({
      dataDir: config.dataDir,
      log: (message) => logger.info(message),
    });
    url = embedded.url;
    logger.info(
      {
        socket: embedded.socketPath,
        port: embedded.port,
        database: embedded.database,
        connect: `mariadb -S ${embedded.socketPath} -uroot ${embedded.database}`,
      },
      "embedded database started",
    );
  }

  const tls =
    config.tls === undefined
      ? undefined
      : { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) };
  const gateway = await createGateway(config, { mysqlUrl: url, logger, tls });
  await waitForMysql(gateway.db, config.mysql.startupTimeoutMs, logger);
  await gateway.app.listen({ host: config.listen.host, port: config.listen.port });
  const address = gateway.app.server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  logger.info(
    { mysql: gateway.db.target, tls: tls !== undefined },
    `sqlgate listening on ${tls ? "https" : "http"}://${host}:${address.port}`,
  );

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    await gateway.close();
    await embedded?.stop();
    logger.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

let config: Config;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`sqlgate: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
main(config).catch((err: unknown) => {
  process.stderr.write(`sqlgate: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
