/**
 * The gateway's logger: pino JSON lines (or pretty lines for development),
 * with secrets redacted wherever they could appear.
 */
import { type Logger, pino } from "pino";
import type { LogConfig } from "../config.js";

export type { Logger };

/** Paths that may hold secrets in logged objects. */
const redact = [
  "password",
  "*.password",
  "url",
  "*.url",
  "req.headers.authorization",
  "headers.authorization",
  'req.headers["proxy-authorization"]',
];

export function createLogger(config: LogConfig): Logger {
  return pino({
    level: config.level,
    redact: { paths: redact, censor: "[redacted]" },
    ...(config.pretty ? { transport: { target: "pino-pretty", options: { colorize: true } } } : {}),
  });
}
