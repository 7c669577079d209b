/**
 * Stateless reads sent again when their call was lost.
 *
 * A call that fails because its gateway died, restarted or could not be
 * reached may or may not have run. A write must not be sent again on a
 * guess (an INSERT would run twice), but a read may: running a SELECT twice
 * changes nothing. So `execute`, `batch` and `stream` outside a transaction
 * resend a call whose every statement reads, when the failure was the
 * connection's or the gateway's rather than a verdict on the statement.
 * Behind a balancer the new attempt goes to another replica, so a replica
 * killed mid-call costs a read a few milliseconds, not an error.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { DatabaseError } from "./database-error.js";
import { backoffDelayMs, isRetryable } from "./retry.js";

/** How many times a failed read is sent again, unless the client says otherwise. */
export const defaultReadRetries = 2;

/** Short waits: the next attempt usually reaches another replica at once. */
const readBackoff = { baseDelayMs: 25, maxDelayMs: 500 };

/**
 * First words of statements that only read. Not EXPLAIN or DESCRIBE: MySQL's
 * EXPLAIN ANALYZE and MariaDB's ANALYZE run the statement they explain, which
 * may be an UPDATE. Not WITH: MySQL 8 lets a common table expression lead an
 * UPDATE or DELETE.
 */
const readingWords = new Set(["select", "show", "values", "table"]);

/**
 * Whether `sql` only reads, judged by its first word after comments and
 * opening parentheses. A `/*! ... *\/` comment is code to MySQL, so a
 * statement starting with one is not judged a read. A SELECT that calls a
 * stored function which writes is judged a read: such a client runs its
 * SELECTs with `readRetries: 0`, or in a transaction.
 */
export function isReadStatement(sql: string): boolean {
  let i = 0;
  for (;;) {
    while (i < sql.length && /[\s(]/.test(sql.charAt(i))) i++;
    if (sql.startsWith("/*", i)) {
      if (sql.startsWith("/*!", i) || sql.startsWith("/*M!", i)) return false;
      const end = sql.indexOf("*/", i + 2);
      if (end < 0) return false;
      i = end + 2;
    } else if (sql.charAt(i) === "#" || /^--(\s|$)/.test(sql.slice(i, i + 3))) {
      const end = sql.indexOf("\n", i);
      if (end < 0) return false;
      i = end + 1;
    } else {
      break;
    }
  }
  const word = /^[A-Za-z]+/.exec(sql.slice(i, i + 16))?.[0];
  return word !== undefined && readingWords.has(word.toLowerCase());
}

/**
 * Whether a read that failed with `err` is worth sending again: the failure
 * is transient (see `isRetryable`) and the call's deadline did not pass
 * (a retry would have no time left).
 */
function isLostRead(err: unknown): boolean {
  const cause =
    err instanceof DatabaseError ? err.cause : err instanceof ConnectError ? err : undefined;
  return isRetryable(err) && cause?.code !== Code.DeadlineExceeded;
}

/** A read's attempts: the deadline they share and how many may follow the first. */
export interface ReadAttempts {
  readonly retries: number;
  /** The call's whole deadline, in ms; each attempt gets what is left of it. */
  readonly timeoutMs: number | undefined;
  readonly signal: AbortSignal | undefined;
}

/**
 * Runs `attempt` and, while it fails with a lost read and retries are left,
 * runs it again after a short jittered wait. `attempt` gets the time left of
 * the call's deadline (undefined without one).
 */
export async function withReadRetries<T>(
  attempts: ReadAttempts,
  attempt: (timeoutMs: number | undefined) => Promise<T>,
): Promise<T> {
  const deadline =
    attempts.timeoutMs !== undefined ? performance.now() + attempts.timeoutMs : undefined;
  for (let n = 0; ; n++) {
    const left =
      deadline !== undefined ? Math.max(1, Math.ceil(deadline - performance.now())) : undefined;
    try {
      return await attempt(left);
    } catch (err) {
      const wait = backoffDelayMs(n, readBackoff);
      const timeLeft = deadline === undefined || deadline - performance.now() > wait;
      if (n >= attempts.retries || attempts.signal?.aborted || !timeLeft || !isLostRead(err)) {
        throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}
