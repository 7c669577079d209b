/**
 * When the SDK retries a write, and how long it waits.
 *
 * Only calls that carry idempotency keys are retried (the gateway records each
 * key in the transaction that applies its rows, so a batch that did commit
 * before the failure is acknowledged as a duplicate, never applied twice).
 * Even so, only failures that a later attempt can fix are retried: a bad
 * table or value fails the same way every time and is surfaced at once.
 */
import { Code, type ConnectError } from "@connectrpc/connect";

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
]);

/**
 * Whether a failed ingest call may be sent again with the same idempotency
 * keys. Besides {@link retryableCodes}, `internal` and `canceled` are retried
 * only when they describe the connection rather than an answer from the
 * gateway:
 * - connect-node raises `internal` with the Node error as `cause` when a
 *   socket or HTTP/2 session fails in a way it has no better code for
 *   (for example ERR_STREAM_PREMATURE_CLOSE).
 * - an HTTP/2 stream reset arrives as "http/2 stream closed with error code
 *   ..." (connect-node's connectErrorFromH2ResetCode); when the TCP connection
 *   under an HTTP/2 session drops, Node resets its open streams with CANCEL,
 *   so a dropped h2c connection surfaces as `canceled`, not `unavailable`.
 * An `internal` error that the gateway sent (a bug, logged there with its
 * stack) has neither, and is surfaced rather than retried for a minute.
 * The caller's own cancellation is never passed here.
 */
export function isRetryable(err: ConnectError): boolean {
  // A message over the gateway's SQLGATE_MAX_BODY_BYTES (connect-es's
  // readMaxBytes) is refused the same way however often it is sent.
  if (err.code === Code.ResourceExhausted && err.rawMessage.includes("readMaxBytes")) return false;
  if (retryableCodes.has(err.code)) return true;
  if (err.code !== Code.Internal && err.code !== Code.Canceled) return false;
  return isConnectionFailure(err);
}

function isConnectionFailure(err: ConnectError): boolean {
  if (err.rawMessage.startsWith("http/2 stream closed with error code")) return true;
  const seen = new Set<unknown>();
  for (let e: unknown = err.cause; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && connectionErrorCodes.has(code)) return true;
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
