/**
 * When the SDK retries a write, and how long it waits.
 *
 * Only calls that carry idempotency keys are retried (the gateway records each
 * key in the transaction that applies its rows, so a batch that did commit
 * before the failure is acknowledged as a duplicate, never applied twice).
 * Even so, only failures that a later attempt can fix are retried: a bad
 * table or value fails the same way every time and is surfaced at once.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { DatabaseError } from "./database-error.js";

/**
 * Codes that mean "try again later", whatever sent them:
 * - `unavailable`: the gateway or MySQL is down or restarting, or the
 *   connection could not be made (connect-node maps ECONNREFUSED here).
 * - `resource_exhausted`: the gateway's ingest buffers stayed full for the
 *   call's deadline; they drain as MySQL catches up.
 * - `aborted`: connect-node's code for a connection reset under the call
 *   (ECONNRESET, "socket hang up" over HTTP/1.1), and the gateway's for a
 *   transaction that lost a deadlock or a conflict.
 * - `deadline_exceeded`: the call took longer than its deadline, typically
 *   behind full buffers or a slow MySQL.
 */
const retryableCodes: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.DeadlineExceeded,
]);

/**
 * Node error codes of a connection that failed or went away: seen in the
 * `cause` chain that connect-node keeps on the ConnectError it raises.
 */
const connectionErrorCodes: ReadonlySet<string> = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_HTTP2_STREAM_ERROR",
  "ERR_HTTP2_SESSION_ERROR",
  "ERR_HTTP2_GOAWAY_SESSION",
  "ERR_HTTP2_INVALID_SESSION",
  "ERR_HTTP2_PING_CANCEL",
  "ERR_HTTP2_STREAM_CANCEL",
  // undici (Node's fetch): the socket closed or failed under a request.
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/**
 * How fetch implementations word a request that never got an answer (a
 * `TypeError`, by the Fetch standard): Node/undici, Chromium, Firefox,
 * WebKit. connect-web reports it as `unknown` with the TypeError as cause.
 */
const fetchFailure =
  /^(fetch failed|failed to fetch|networkerror|load failed|network connection was lost)/i;

/**
 * Whether a failed call is worth sending again: the failure is transient
 * (the gateway, MySQL or the network is down or overloaded, or the
 * transaction lost a deadlock) rather than a verdict on the call itself (a
 * syntax error, a duplicate key, a missing table), which fails the same way
 * every time. Accepts a `DatabaseError`, a `ConnectError` or anything else
 * (which is never retryable).
 *
 * It says nothing about whether sending again is *safe*: a write that failed
 * with `unavailable` or a dropped connection may have committed. The ingest
 * writer retries only calls that carry idempotency keys; `transaction()`
 * retries only MySQL's own conflict verdicts. Besides {@link retryableCodes},
 * `internal`, `canceled` and `unknown` are retried only when they describe
 * the connection rather than an answer from the gateway:
 * - connect-node raises `internal` with the Node error as `cause` when a
 *   socket or HTTP/2 session fails in a way it has no better code for
 *   (for example ERR_STREAM_PREMATURE_CLOSE).
 * - an HTTP/2 stream reset arrives as "http/2 stream closed with error code
 *   ..." (connect-node's connectErrorFromH2ResetCode); when the TCP connection
 *   under an HTTP/2 session drops, Node resets its open streams with CANCEL,
 *   so a dropped h2c connection surfaces as `canceled`, not `unavailable`.
 * - connect-web raises `unknown` with fetch's `TypeError` ("fetch failed")
 *   as cause when the request got no answer at all.
 * An `internal` error that the gateway sent (a bug, logged there with its
 * stack) has none of these, and is surfaced rather than retried for a minute.
 * The caller's own cancellation is never passed here.
 */
export function isRetryable(err: unknown): boolean {
  const connectError =
    err instanceof DatabaseError ? err.cause : err instanceof ConnectError ? err : undefined;
  if (connectError === undefined) return false;
  // A message over the gateway's SQLGATE_MAX_BODY_BYTES (connect-es's
  // readMaxBytes) is refused the same way however often it is sent.
  if (
    connectError.code === Code.ResourceExhausted &&
    connectError.rawMessage.includes("readMaxBytes")
  ) {
    return false;
  }
  if (retryableCodes.has(connectError.code)) return true;
  if (
    connectError.code !== Code.Internal &&
    connectError.code !== Code.Canceled &&
    connectError.code !== Code.Unknown
  ) {
    return false;
  }
  return isConnectionFailure(connectError);
}

function isConnectionFailure(err: ConnectError): boolean {
  if (err.rawMessage.startsWith("http/2 stream closed with error code")) return true;
  // Read by shape, not `instanceof`: the fetch that failed may come from
  // another realm than the SDK (a worker's or a sandbox's globals).
  const seen = new Set<unknown>();
  for (let e: unknown = err.cause; typeof e === "object" && e !== null && !seen.has(e); ) {
    seen.add(e);
    const { code, name, message, cause } = e as Record<string, unknown>;
    if (typeof code === "string" && connectionErrorCodes.has(code)) return true;
    if (name === "TypeError" && typeof message === "string" && fetchFailure.test(message)) {
      return true;
    }
    e = cause;
  }
  return false;
}

/** Retry timing: exponential from `baseDelayMs` up to `maxDelayMs`. */
export interface BackoffOptions {
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/**
 * The wait before retry number `attempt` (0 for the first): the exponential
 * step `min(maxDelayMs, baseDelayMs * 2^attempt)`, of which a random half is
 * taken off ("equal jitter"), so that the writers of a fleet that failed
 * together do not retry together, while each one's wait still grows.
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions): number {
  const step = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.min(attempt, 30));
  return step / 2 + Math.random() * (step / 2);
}
