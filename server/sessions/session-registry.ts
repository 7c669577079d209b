/**
 * Interactive transactions across requests. BeginTransaction pins a
 * connection and returns a signed token; calls with the token run on that
 * connection one at a time, in arrival order; Commit/Rollback end it. A
 * transaction left idle (or open too long) is rolled back and its connection
 * returned, and later calls with its token are told so, plainly.
 *
 * A token is checked before anything else: forged or altered tokens are
 * `invalid_argument`, another replica's `failed_precondition`, an ended
 * transaction `failed_precondition` with how it ended, an unknown one
 * `not_found`. None of them ever reaches a connection.
 */
import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { type ConnectionSource, type Lease, resetThenRelease } from "../mysql/connection-source.js";
import { type Database, type PoolConnection, runControlStatement } from "../mysql/database.js";
import { limitExceeded } from "../mysql/errors.js";
import type { TokenCodec } from "./session-token.js";

export interface SessionRegistryOptions {
  readonly maxOpen: number;
  readonly idleTimeoutMs: number;
  readonly maxLifetimeMs: number;
  /** This replica's name, written into its tokens. */
  readonly node: string;
  readonly codec: TokenCodec;
}

export type IsolationLevel =
  | "READ UNCOMMITTED"
  | "READ COMMITTED"
  | "REPEATABLE READ"
  | "SERIALIZABLE";

export interface BeginOptions {
  readonly isolation: IsolationLevel | undefined;
  readonly readOnly: boolean;
  /** How long to wait for a connection. */
  readonly timeoutMs: number;
}

export interface SessionRegistry {
  begin(options: BeginOptions): Promise<{ token: string; idleTimeoutMs: number }>;
  /** The transaction's connection as a source for statements. Throws for a bad token. */
  source(token: string): ConnectionSource;
  commit(token: string, timeoutMs: number): Promise<void>;
  rollback(token: string, timeoutMs: number): Promise<void>;
  /** Open transactions. */
  readonly size: number;
  /** Rolls back every open transaction (shutdown). */
  close(): Promise<void>;
}

interface Session {
  readonly id: string;
  readonly conn: PoolConnection;
  /** Resolves when the call holding the session's turn is done. */
  tail: Promise<void>;
  idleTimer: NodeJS.Timeout | undefined;
  readonly lifetimeTimer: NodeJS.Timeout;
  /** Set when the session must end as soon as its current call is done. */
  endWhenIdle: string | undefined;
  /** Set when a statement changed the connection's database: it is not reused. */
  reconnectAtEnd: boolean;
  ended: boolean;
}

/** How many ended transactions are remembered, to tell callers how theirs ended. */
const endedMemory = 10_000;

export function createSessionRegistry(
  db: Database,
  options: SessionRegistryOptions,
): SessionRegistry {
  const sessions = new Map<string, Session>();
  const endings = new Map<string, string>();
  let beginning = 0;

  const remember = (id: string, how: string) => {
    if (endings.size >= endedMemory) {
      const oldest = endings.keys().next().value;
      if (oldest !== undefined) endings.delete(oldest);
    }
    endings.set(id, how);
  };

  /** Ends `session`: rolls it back (or destroys its connection) and remembers how. */
  const end = async (session: Session, how: string, finish: "rollback" | "destroy" | "none") => {
    if (session.ended) return;
    session.ended = true;
    sessions.delete(session.id);
    remember(session.id, how);
    clearTimeout(session.idleTimer);
    clearTimeout(session.lifetimeTimer);
    if (finish === "destroy" || session.reconnectAtEnd) {
      session.conn.destroy();
      return;
    }
    if (finish === "rollback") {
      try {
        await runControlStatement(session.conn, "ROLLBACK");
      } catch {
        session.conn.destroy();
        return;
      }
    }
    // The next transaction starts from a fresh session (variables, temporary tables, locks).
    resetThenRelease(session.conn);
  };

  const armIdleTimer = (session: Session) => {
    clearTimeout(session.idleTimer);
    session.idleTimer = setTimeout(
      () =>
        void end(
          session,
          `it was rolled back after ${options.idleTimeoutMs} ms without a call (SQLGATE_TRANSACTION_IDLE_TIMEOUT_MS)`,
          "rollback",
        ),
      options.idleTimeoutMs,
    );
  };

  /** The open session named by `token`, or the error that says why there is none. */
  const find = (token: string): Session => {
    const claims = options.codec.verify(token);
    if (claims.node !== options.node) {
      throw new ConnectError(
        `this transaction belongs to gateway replica ${claims.node}, not this one (${options.node})`,
        Code.FailedPrecondition,
      );
    }
    const session = sessions.get(claims.sessionId);
    if (session !== undefined) return session;
    const how = endings.get(claims.sessionId);
    if (how !== undefined) {
      throw new ConnectError(`the transaction has ended: ${how}`, Code.FailedPrecondition);
    }
    throw new ConnectError(
      "no such transaction on this gateway (it ended long ago, or the gateway restarted; it was rolled back)",
      Code.NotFound,
    );
  };

  /**
   * Waits for the session's turn: calls on one transaction run one at a
   * time, in the order they arrived. Resolves with the function that passes
   * the turn on.
   */
  const takeTurn = async (session: Session, timeoutMs: number): Promise<() => void> => {
    const previous = session.tail;
    let passOn!: () => void;
    session.tail = new Promise<void>((resolve) => {
      passOn = resolve;
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      previous.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      void previous.then(passOn);
      throw new ConnectError(
        "the transaction's previous call did not finish within this call's deadline",
        Code.DeadlineExceeded,
      );
    }
    if (session.ended) {
      passOn();
      throw new ConnectError(
        `the transaction has ended: ${endings.get(session.id) ?? "ended"}`,
        Code.FailedPrecondition,
      );
    }
    clearTimeout(session.idleTimer);
    session.idleTimer = undefined;
    return passOn;
  };

  /** Takes the turn, runs `fn` on the connection, and ends the session with `how`. */
  const finish = async (token: string, timeoutMs: number, sql: "COMMIT" | "ROLLBACK") => {
    const session = find(token);
    const passOn = await takeTurn(session, timeoutMs);
    try {
      await runControlStatement(session.conn, sql);
      await end(session, sql === "COMMIT" ? "it was committed" : "it was rolled back", "none");
    } catch (err) {
      // A failed COMMIT leaves nothing to keep: MySQL has rolled the transaction back.
      await end(
        session,
        `${sql} failed (${(err as Error).message}); it was rolled back`,
        "rollback",
      );
      throw err;
    } finally {
      passOn();
    }
  };

  return {
    async begin({ isolation, readOnly, timeoutMs }) {
      if (sessions.size + beginning >= options.maxOpen) {
        throw limitExceeded(
          `${options.maxOpen} transactions are open already (SQLGATE_MAX_TRANSACTIONS)`,
          "SQLGATE_MAX_TRANSACTIONS",
          options.maxOpen,
          "commit or roll back open transactions, or raise SQLGATE_MAX_TRANSACTIONS",
        );
      }
      beginning++;
      let conn: PoolConnection;
      try {
        conn = await db.acquireForTransaction(timeoutMs);
      } finally {
        beginning--;
      }
      try {
        if (isolation !== undefined) {
          await runControlStatement(conn, `SET TRANSACTION ISOLATION LEVEL ${isolation}`);
        }
        await runControlStatement(
          conn,
          `START TRANSACTION ${readOnly ? "READ ONLY" : "READ WRITE"}`,
        );
      } catch (err) {
        conn.destroy();
        throw err;
      }
      const id = randomBytes(16).toString("base64url");
      const session: Session = {
        id,
        conn,
        tail: Promise.resolve(),
        idleTimer: undefined,
        lifetimeTimer: setTimeout(() => {
          const how = `it was rolled back after ${options.maxLifetimeMs} ms open (SQLGATE_TRANSACTION_MAX_LIFETIME_MS)`;
          // A call in progress finishes first; the session ends when it is done.
          session.endWhenIdle = how;
          if (session.idleTimer !== undefined) void end(session, how, "rollback");
        }, options.maxLifetimeMs),
        endWhenIdle: undefined,
        reconnectAtEnd: false,
        ended: false,
      };
      sessions.set(id, session);
      armIdleTimer(session);
      return {
        token: options.codec.sign({ sessionId: id, node: options.node }),
        idleTimeoutMs: options.idleTimeoutMs,
      };
    },

    source(token) {
      const session = find(token);
      return {
        async lease(timeoutMs): Promise<Lease> {
          const passOn = await takeTurn(session, timeoutMs);
          return {
            conn: session.conn,
            inTransaction: true,
            release(state) {
              // Session state (variables, temporary tables) belongs to the
              // transaction; a changed database is cleared when it ends.
              if (state === "reconnect") session.reconnectAtEnd = true;
              if (state === "broken") {
                void end(session, "its connection broke; MySQL rolled it back", "destroy");
              } else if (state === "transactionEnded") {
                void end(
                  session,
                  "a statement in it ended MySQL's transaction (COMMIT, ROLLBACK, or DDL, which commits implicitly)",
                  "none",
                );
              } else if (state === "rolledBack") {
                // InnoDB has rolled the whole transaction back: carrying on
                // would run the next statements in autocommit mode.
                void end(
                  session,
                  "MySQL rolled it back after a deadlock; begin a new one",
                  "rollback",
                );
              } else if (session.endWhenIdle !== undefined) {
                void end(session, session.endWhenIdle, "rollback");
              } else {
                armIdleTimer(session);
              }
              passOn();
            },
          };
        },
      };
    },

    commit: (token, timeoutMs) => finish(token, timeoutMs, "COMMIT"),
    rollback: (token, timeoutMs) => finish(token, timeoutMs, "ROLLBACK"),

    get size() {
      return sessions.size;
    },

    async close() {
      await Promise.all(
        [...sessions.values()].map((s) =>
          end(s, "the gateway shut down; it was rolled back", "rollback"),
        ),
      );
    },
  };
}
