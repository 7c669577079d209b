/**
 * A real gateway for tests: built exactly as main.ts builds it, with a real
 * MySQL pool, listening on a free loopback port, closed when the test ends.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { TestContext } from "node:test";
import { type Config, loadConfig } from "../../server/config.js";
import { createGateway, type Gateway } from "../../server/gateway.js";
import { createLogger } from "../../server/observability/logger.js";
import type { TlsOptions } from "../../server/transport/one-port.js";

export interface TestGateway extends Gateway {
  readonly config: Config;
  /** `http://127.0.0.1:<port>` (or https with TLS). */
  readonly baseUrl: string;
  readonly port: number;
}

export interface TestGatewayOptions {
  /** Environment settings on top of the defaults, e.g. SQLGATE_MAX_ROWS. */
  readonly env?: Record<string, string>;
  readonly tls?: TlsOptions;
  /** A fixed port (to restart a gateway where clients expect it); default: any free one. */
  readonly port?: number;
}

export async function startGateway(
  t: { after(fn: () => unknown): void } | TestContext,
  mysqlUrl: string,
  options: TestGatewayOptions = {},
): Promise<TestGateway> {
  // Each gateway owns its data directory (the ingest log), as in production.
  const dataDir =
    options.env?.SQLGATE_DATA_DIR ?? mkdtempSync(path.join(os.tmpdir(), "sqlgate-gw-"));
  const config = loadConfig({
    SQLGATE_MYSQL_URL: mysqlUrl,
    SQLGATE_LOG_LEVEL: "silent",
    SQLGATE_DATA_DIR: dataDir,
    ...options.env,
  });
  const gateway = await createGateway(config, {
    mysqlUrl,
    logger: createLogger(config.log),
    tls: options.tls,
  });
  try {
    await gateway.start();
    await gateway.app.listen({ host: "127.0.0.1", port: options.port ?? 0 });
  } catch (err) {
    await gateway.close();
    throw err;
  }
  t.after(async () => {
    await gateway.close();
    if (options.env?.SQLGATE_DATA_DIR === undefined)
      rmSync(dataDir, { recursive: true, force: true });
  });
  const address = gateway.app.server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  const scheme = options.tls ? "https" : "http";
  return {
    ...gateway,
    config,
    baseUrl: `${scheme}://127.0.0.1:${address.port}`,
    port: address.port,
  };
}
