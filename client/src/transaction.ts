/**
 * `client.transaction(fn)`: an interactive transaction around a callback,
 * committed when it resolves, rolled back when it throws, and run again when
 * MySQL picked it as the loser of a conflict.
 */
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { type DatabaseService, IsolationLevel } from "../../gen/sqlgate/v1/database_pb.js";
import { type DatabaseError, databaseErrorFrom, isTransactionConflict } from "./database-error.js";
import { backoffDelayMs } from "./retry.js";

/** Isolation levels, spelt as in `SET TRANSACTION ISOLATION LEVEL`, lower case. */
export type IsolationLevelName =
  | "read uncommitted"
  | "read committed"
  | "repeatable read"
  | "serializable";

export interface TransactionOptions {
  /** The isolation level; unset: the server's default (REPEATABLE READ unless configured). */
  readonly isolation?: IsolationLevelName;
  /** START TRANSACTION READ ONLY: MySQL refuses writes (`permission_denied`). */
  readonly readOnly?: boolean;
  /**
   * How many times the callback runs again after the transaction lost a
   * conflict (`aborted` from MySQL: deadlock, lock wait timeout); default 2,
   * so at most 3 runs. 0 never retries. Other errors are never retried: a
   * failed COMMIT whose outcome is unknown (a dropped connection) is surfaced.
   */
  readonly retries?: number;
  /** The deadline of each of BeginTransaction, CommitTransaction and RollbackTransaction. */
  readonly timeoutMs?: number;
}

const isolationLevels: Record<IsolationLevelName, IsolationLevel> = {
  "read uncommitted": IsolationLevel.READ_UNCOMMITTED,
  "read committed": IsolationLevel.READ_COMMITTED,
  "repeatable read": IsolationLevel.REPEATABLE_READ,
  serializable: IsolationLevel.SERIALIZABLE,
};

/** Waits between runs: short, jittered, growing (two losers of one deadlock should not meet again). */
const retryBackoff = { baseDelayMs: 20, maxDelayMs: 1000 };

type DatabaseClient = Client<typeof DatabaseService>;

/** What a transaction adds to the SQL methods bound to it. */
export interface RunnerHooks {
  /** Runs before each call; throws to refuse it (a transaction that has ended). */
  before?(): void;
  /** Sees every error a call rejects with (a transaction notes conflicts). */
  onError?(err: DatabaseError): void;
  /** Headers every call sends (the transaction's owner, for a balancer to route by). */
  readonly headers?: Record<string, string>;
}

/**
 * The header naming the replica that holds a transaction (the `sqlgate-node`
 * its BeginTransaction answer carried): a balancer can route its calls
 * straight there (deploy/haproxy), and any replica forwards them anyway.
 */
export const ownerHeader = "sqlgate-owner";

/**
 * Runs `fn` as `SqlgateClient.transaction` documents. `runnerFor(session,
 * hooks)` gives the SQL methods bound to a transaction's token; `seen` takes
 * the commit's replication position.
 */
export async function runTransaction<T, Runner extends object>(
  db: DatabaseClient,
  options: TransactionOptions,
  runnerFor: (session: string, hooks: RunnerHooks) => Runner,
  fn: (tx: Runner & { readonly session: string }) => Promise<T>,
  seen: (position: string) => void = () => {},
): Promise<T> {
  const retries = options.retries ?? 2;
  if (!Number.isInteger(retries) || retries < 0) {
    throw databaseErrorFrom(
      new ConnectError(
        `retries: expected a whole number of at least 0, got ${retries}`,
        Code.InvalidArgument,
      ),
    );
  }
  let isolation = IsolationLevel.UNSPECIFIED;
  if (options.isolation !== undefined) {
    const level = isolationLevels[options.isolation];
    if (level === undefined) {
      throw databaseErrorFrom(
        new ConnectError(
          `isolation: unknown level ${String(options.isolation)}`,
          Code.InvalidArgument,
        ),
      );
    }
    isolation = level;
  }
  const callOptions = options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {};
  for (let attempt = 0; ; attempt++) {
    let session: string;
    let owner: string | null = null;
    try {
      ({ session } = await db.beginTransaction(
        { isolation, readOnly: options.readOnly ?? false },
        {
          ...callOptions,
          onHeader: (header: Headers) => {
            owner = header.get("sqlgate-node");
          },
        },
      ));
    } catch (err) {
      throw databaseErrorFrom(err);
    }
    const headers: Record<string, string> = owner === null ? {} : { [ownerHeader]: owner };
    const endOptions = { ...callOptions, headers };

    // Calls through `tx` after the transaction ended (a promise the callback
    // did not await) are refused here rather than sent with a dead token.
    let ended: string | undefined;
    // A conflict seen by any call of this run, even if the callback caught it.
    let conflictSeen = false;
    const guard = () => {
      if (ended !== undefined) {
        throw new ConnectError(`the transaction has ended (${ended})`, Code.FailedPrecondition);
      }
    };
    const runner = runnerFor(session, {
      before: guard,
      onError(err) {
        if (isTransactionConflict(err)) conflictSeen = true;
      },
      headers,
    });
    const tx = { ...runner, session };

    let result: T;
    try {
      result = await fn(tx);
    } catch (err) {
      ended = "rolled back after the callback threw";
      // The rollback's own failure (the gateway ended the transaction
      // already, after a deadlock; the network) must not hide the callback's
      // error, and leaves nothing open for long: the gateway rolls back
      // transactions that stay idle (SQLGATE_TRANSACTION_IDLE_TIMEOUT_MS).
      await db.rollbackTransaction({ session }, endOptions).catch(() => undefined);
      if (attempt < retries && (conflictSeen || isTransactionConflict(err))) {
        await sleep(backoffDelayMs(attempt, retryBackoff));
        continue;
      }
      throw err;
    }

    ended = "committed";
    try {
      seen((await db.commitTransaction({ session }, endOptions)).position);
    } catch (reason) {
      const err = databaseErrorFrom(reason);
      ended = "its commit failed";
      // Run again only when nothing was committed: MySQL said the
      // transaction lost (it is rolled back), or it had lost already and the
      // gateway had ended it (the callback caught the deadlock).
      const rolledBack =
        isTransactionConflict(err) || (conflictSeen && err.code === "failed_precondition");
      if (attempt < retries && rolledBack) {
        await sleep(backoffDelayMs(attempt, retryBackoff));
        continue;
      }
      throw err;
    }
    return result;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
