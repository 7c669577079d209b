/**
 * The command-line entry: reads the configuration, starts the embedded
 * database when no MySQL URL is given, waits for MySQL, serves, re-reads
 * the credentials file on SIGHUP, and shuts down cleanly on SIGTERM/SIGINT.
 */
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { binlogServerArgs } from "./changes/binlog-settings.js";
import { type Config, ConfigError, loadConfig } from "./config.js";
import { type EmbeddedMysql, startEmbeddedMysql } from "./devdb/embedded-mysql.js";
import { createGateway, type Gateway } from "./gateway.js";
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
  let gateway: Gateway | undefined;
  let stopping: string | undefined;

  /** Stops whatever has started so far; every step runs even if one fails. */
  const stop = async (): Promise<void> => {
    const steps: [string, (() => Promise<void>) | undefined][] = [
      [
        "gateway",
        gateway &&
          (() =>
            withDeadline(
              gateway?.close() ?? Promise.resolve(),
              // The grace, then ingest's drain and the pools' closing.
              config.shutdown.delayMs + config.shutdown.graceMs + 15_000,
            )),
      ],
      ["embedded database", embedded?.stop],
    ];
    for (const [name, step] of steps) {
      try {
        await step?.();
      } catch (err) {
        logger.error({ err }, `stopping the ${name} failed`);
      }
    }
  };
  const stopAndExit = async () => {
    await stop();
    logger.info("stopped");
    process.exit(0);
  };
  let started = false;
  const onSignal = (signal: string) => {
    if (stopping !== undefined) return;
    stopping = signal;
    logger.info({ signal }, "shutting down");
    // During start-up, the start-up code stops at its next step.
    if (started) void stopAndExit();
  };
  // Installed first, so that a signal during start-up also stops the embedded server.
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGHUP", () => {
    if (gateway === undefined || config.auth.credentialsFile === undefined) {
      logger.info("SIGHUP: no SQLGATE_CREDENTIALS_FILE to reload");
      return;
    }
    gateway.reloadCredentials().then(
      (count) => logger.info({ credentials: count }, "credentials reloaded"),
      (err: Error) =>
        logger.error({ error: err.message }, "credentials not reloaded; the previous ones stay"),
    );
  });

  try {
    let url = config.mysql.url;
    if (url === undefined) {
      embedded = await startEmbeddedMysql({
        dataDir: config.dataDir,
        // A binary log for change streams (ChangeService).
        serverArgs: binlogServerArgs,
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
    if (stopping !== undefined) return await stopAndExit();

    const tls =
      config.tls === undefined
        ? undefined
        : {
            cert: readFileSync(config.tls.certFile),
            key: readFileSync(config.tls.keyFile),
            clientCa:
              config.tls.clientCaFile === undefined
                ? undefined
                : readFileSync(config.tls.clientCaFile),
          };
    gateway = await createGateway(config, { mysqlUrl: url, logger, tls });
    await waitForMysql(gateway.db, config.mysql.startupTimeoutMs, logger);
    if (stopping !== undefined) return await stopAndExit();
    await gateway.start();
    if (stopping !== undefined) return await stopAndExit();
    await gateway.app.listen({ host: config.listen.host, port: config.listen.port });
    const address = gateway.app.server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    logger.info(
      { mysql: gateway.db.target, tls: tls !== undefined },
      `sqlgate listening on ${tls ? "https" : "http"}://${host}:${address.port}`,
    );
    if (config.auth.credentialsFile === undefined) {
      logger.warn(
        `NO AUTHENTICATION: SQLGATE_CREDENTIALS_FILE is not set, so anyone who can reach ${host}:${address.port} can use the database${
          config.auth.allowInsecure
            ? " (SQLGATE_ALLOW_INSECURE=true)"
            : "; this is allowed on loopback addresses only"
        }. Create credentials with \`sqlgate credential create\`.`,
      );
    }
    started = true;
    if (stopping !== undefined) await stopAndExit();
  } catch (err) {
    await stop();
    throw err;
  }
}

/** `promise`, or a rejection after `ms`. */
async function withDeadline(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not done after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
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
