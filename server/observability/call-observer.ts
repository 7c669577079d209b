/**
 * Watches every call: counts it by method and code, times it, counts the
 * MySQL errors calls end with (see metrics.ts), and logs it. A call that
 * ends `internal`, `unknown` or `data_loss` is logged as an error with its
 * cause and stack; one slower than SQLGATE_SLOW_CALL_MS as a warning; every
 * other call at debug level only (a log line per call costs ~40 us, so it is
 * built only when that level is on). Log lines carry the method, the code,
 * the duration, the rows returned, the credential's name and the caller's
 * `x-request-id`; never SQL text, values or headers.
 *
 * PlanetScale's API answers SQL errors in-band (HTTP 200 with an `error`):
 * those count with the error's code, which shares its number with Connect's.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { stdSerializers } from "pino";
import { principalFrom } from "../principal.js";
import type { Logger } from "./logger.js";
import type { CallMetrics } from "./metrics.js";

export interface CallObserverOptions {
  readonly logger: Logger;
  readonly metrics: CallMetrics;
  /** Calls slower than this are logged as warnings. */
  readonly slowCallMs: number;
}

/** What a finished call's response says about it: rows, and an in-band error. */
interface Outcome {
  /** Undefined for success. */
  readonly code: Code | undefined;
  readonly error: ConnectError | undefined;
  readonly rows: number | undefined;
  readonly errno: number | undefined;
}

const serverFaults = new Set([Code.Internal, Code.Unknown, Code.DataLoss]);

/** The MySQL errno of an error, from its cause or from PlanetScale's message form. */
function errnoOf(error: ConnectError | undefined, message: string | undefined): number | undefined {
  const cause = error?.cause as { errno?: unknown } | undefined;
  if (typeof cause?.errno === "number" && cause.errno >= 1000) return cause.errno;
  const match = message === undefined ? null : /\(errno (\d+)\)/.exec(message);
  return match ? Number(match[1]) : undefined;
}

/** The outcome of a unary response message. */
function outcomeOf(message: unknown): Outcome {
  const m = message as {
    rows?: unknown[];
    result?: { rows?: unknown[] };
    error?: { $typeName?: string; code?: number; message?: string };
  };
  const rows = m.rows?.length ?? m.result?.rows?.length;
  if (m.error?.$typeName === "vitess.vtrpc.v22.RPCError" && m.error.code) {
    return {
      code: m.error.code as Code,
      error: undefined,
      rows,
      errno: errnoOf(undefined, m.error.message),
    };
  }
  return { code: undefined, error: undefined, rows, errno: undefined };
}

/**
 * Node's errors for writing a response to an HTTP/2 stream or session the
 * client has reset or closed: the call was cancelled by the client, not
 * failed by the server. (Socket errors such as ECONNRESET stay faults: MySQL's
 * connection raises them too.)
 */
const clientGoneErrors = new Set([
  "ERR_HTTP2_INVALID_STREAM",
  "ERR_HTTP2_STREAM_CANCEL",
  "ERR_HTTP2_SESSION_ERROR",
]);

function outcomeOfError(err: unknown): Outcome {
  const error = ConnectError.from(err);
  const cause = (error.cause as { code?: unknown } | undefined)?.code;
  if (typeof cause === "string" && clientGoneErrors.has(cause)) {
    return { code: Code.Canceled, error, rows: undefined, errno: undefined };
  }
  return { code: error.code, error, rows: undefined, errno: errnoOf(error, error.rawMessage) };
}

/** An error's cause, with message and stack (pino serializes only `err` so). */
function causeOf(error: ConnectError | undefined): unknown {
  const cause = error?.cause;
  return cause instanceof Error ? stdSerializers.errWithCause(cause) : cause;
}

/** `messages`, then `done` with the outcome once they end, fail or are abandoned. */
async function* watched<T>(messages: AsyncIterable<T>, done: (outcome: Outcome) => void) {
  let outcome: Outcome = { code: undefined, error: undefined, rows: undefined, errno: undefined };
  try {
    yield* messages;
  } catch (err) {
    outcome = outcomeOfError(err);
    throw err;
  } finally {
    done(outcome);
  }
}

export function createCallObserver(options: CallObserverOptions): Interceptor {
  const { logger, metrics, slowCallMs } = options;
  return (next) => async (req) => {
    const started = performance.now();
    const method = `${req.service.typeName}/${req.method.name}`;
    const finish = (outcome: Outcome) => {
      const ms = performance.now() - started;
      const code = outcome.code === undefined ? "ok" : codeToString(outcome.code);
      metrics.record(method, code, ms / 1000);
      if (outcome.errno !== undefined) metrics.mysqlError(outcome.errno);
      const fault = outcome.code !== undefined && serverFaults.has(outcome.code);
      const level = fault ? "error" : ms > slowCallMs ? "warn" : "debug";
      if (!logger.isLevelEnabled(level)) return;
      const line = {
        requestId: req.header.get("x-request-id") ?? randomUUID(),
        method,
        code,
        ms: Math.round(ms * 1000) / 1000,
        ...(outcome.rows === undefined ? {} : { rows: outcome.rows }),
        ...(outcome.errno === undefined ? {} : { errno: outcome.errno }),
        credential: principalFrom(req.contextValues).name || undefined,
        ...(fault ? { err: outcome.error, cause: causeOf(outcome.error) } : {}),
      };
      logger[level](line, fault ? "call failed" : ms > slowCallMs ? "slow call" : "call");
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      finish(outcomeOfError(err));
      throw err;
    }
    if (!res.stream) {
      finish(outcomeOf(res.message));
      return res;
    }
    return { ...res, message: watched(res.message, finish) };
  };
}
