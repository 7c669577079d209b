/**
 * Sessions that span requests, each with a MySQL connection pinned to it.
 *
 * Two kinds share one registry (and one limit, SQLGATE_MAX_TRANSACTIONS):
 * - transactions (`sqlgate.v1` BeginTransaction): the connection starts a
 *   transaction; calls with the token run one at a time, in arrival order;
 *   Commit/Rollback end it.
 * - pinned sessions (PlanetScale's API): the connection is pinned while the
 *   session holds something only that connection has (an open transaction,
 *   session variables, locks, temporary tables) and given back to the pool as
 *   soon as it holds nothing; concurrent calls are refused, not queued.
 *
 * A session left idle (or open too long) is rolled back and its connection
 * returned, and later calls with its token are told so, plainly.
 *
 * A token is checked before anything else: forged or altered tokens are
 * `invalid_argument`, another replica's `failed_precondition`, an ended
 * transaction `failed_precondition` with how it ended, an unknown one
 * `not_found`. None of them ever reaches a connection.
 */
import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ConnectionSource, Lease, ReleaseState } from "../mysql/connection-source.js";
import {
  commitWithPosition,
  type Database,
  type PoolConnection,
  resetThenRelease,
  runControlStatement,
} from "../mysql/database.js";
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

/** Who opens a session, and where its connection comes from. */
export interface SessionOwner {
  /** The credential's name ("" without credentials); only it may use the session. */
  readonly owner: string;
  /** Sessions the owner may hold open at once; 0: only the registry's limit. */
  readonly ownerLimit: number;
  /** The pools of the owner's database (and account). */
  readonly db: Pick<Database, "acquireForTransaction" | "killQuery">;
}

export interface BeginOptions extends SessionOwner {
  readonly isolation: IsolationLevel | undefined;
  readonly readOnly: boolean;
  /** How long to wait for a connection. */
  readonly timeoutMs: number;
}

export interface PinOptions extends SessionOwner {
  /** Make the session read-only (SET SESSION TRANSACTION READ ONLY). */
  readonly readOnly: boolean;
  /** How long to wait for a connection. */
  readonly timeoutMs: number;
  /** A transaction open this long on the session is rolled back and the session ended. */
  readonly transactionTimeoutMs: number;
  /** The setting that sets `transactionTimeoutMs`, named when it ends a session. */
  readonly transactionTimeoutSetting: string;
}

/** What a statement left on a pinned session's connection (see settle). */
export interface PinnedState {
  /** MySQL reports a transaction open; undefined when it did not say (a result set). */
  readonly openTransaction: boolean | undefined;
  /** The statement set up the next transaction (SET TRANSACTION) without opening it. */
  readonly transactionPending: boolean;
}

export interface SourceOptions {
  /** Refuse a call while another is running on the session (`aborted`), rather than queue it. */
  readonly exclusive?: boolean;
}

export interface SessionRegistry {
  begin(options: BeginOptions): Promise<{ token: string; idleTimeoutMs: number }>;
  /** A new pinned session (see above), with no transaction open. */
  pin(options: PinOptions): Promise<string>;
  /**
   * The session's connection as a source for statements. Throws for a bad
   * token, or `permission_denied` when `owner` did not open it.
   */
  source(token: string, owner: string, options?: SourceOptions): ConnectionSource;
  /**
   * After a statement on a pinned session: gives its connection back to the
   * pool when it holds nothing any more, else keeps it (timing the open
   * transaction). Resolves whether the session is still open.
   */
  settle(token: string, state: PinnedState): boolean;
  /** Ends a pinned session: rolls back what it holds and gives its connection back. */
  release(token: string, owner: string): Promise<void>;
  /** Whether the session `token` names is open. Throws for a forged token. */
  isOpen(token: string): boolean;
  /** Commits; resolves with the replication position after it ("" if not tracked or nothing written). */
  commit(token: string, owner: string, timeoutMs: number): Promise<string>;
  rollback(token: string, owner: string, timeoutMs: number): Promise<void>;
  /** Open transactions. */
  readonly size: number;
  /** Rolls back every open transaction (shutdown). */
  close(): Promise<void>;
}

interface Session {
  readonly id: string;
  readonly kind: "transaction" | "pinned";
  readonly owner: string;
  readonly conn: PoolConnection;
  /** Stops statements on `conn`: its pools' side connection. */
  readonly killer: Pick<Database, "killQuery">;
  /** A call holds the session's turn. */
  busy: boolean;
  /** Pinned sessions: a statement left session state (variables, locks, temporary tables). */
  holdsState: boolean;
  /** The session is read-only (a transaction begun READ ONLY, a read-only pinned session). */
  readOnly: boolean;
  /** Pinned sessions: how long a transaction may stay open on it. */
  readonly transactionLimit:
    | Pick<PinOptions, "transactionTimeoutMs" | "transactionTimeoutSetting">
    | undefined;
  /** Pinned sessions: ends the session when its open transaction runs too long. */
  transactionTimer: NodeJS.Timeout | undefined;
  /** Resolves when the call holding the session's turn is done. */
  tail: Promise<void>;
  idleTimer: NodeJS.Timeout | undefined;
  readonly lifetimeTimer: NodeJS.Timeout;
  /** Set when the session must end as soon as its current call is done. */
  endWhenIdle: string | undefined;
  /** The code later calls get once it has ended so. */
  endCode: Code;
  /** Set when a statement changed the connection's database: it is not reused. */
  reconnectAtEnd: boolean;
  ended: boolean;
}

/** How many ended transactions are remembered, to tell callers how theirs ended. */
const endedMemory = 10_000;

export function createSessionRegistry(options: SessionRegistryOptions): SessionRegistry {
  const sessions = new Map<string, Session>();
  /** Open sessions (and those being opened) per owner. */
  const openByOwner = new Map<string, number>();
  const disown = (owner: string) => {
    const left = (openByOwner.get(owner) ?? 1) - 1;
    if (left > 0) openByOwner.set(owner, left);
    else openByOwner.delete(owner);
  };
  /** How ended sessions ended, and the code that later calls on them get. */
  const endings = new Map<string, { how: string; code: Code }>();
  let beginning = 0;

  const remember = (id: string, how: string, code: Code) => {
    if (endings.size >= endedMemory) {
      const oldest = endings.keys().next().value;
      if (oldest !== undefined) endings.delete(oldest);
    }
    endings.set(id, { how, code });
  };

  const what = (session: Session) => (session.kind === "transaction" ? "transaction" : "session");

  /** Ends `session`: rolls it back (or destroys its connection) and remembers how. */
  const end = async (
    session: Session,
    how: string,
    finish: "rollback" | "destroy" | "none",
    code: Code = Code.FailedPrecondition,
  ) => {
    if (session.ended) return;
    session.ended = true;
    sessions.delete(session.id);
    disown(session.owner);
    remember(session.id, `${what(session)} has ended: ${how}`, code);
    clearTimeout(session.idleTimer);
    clearTimeout(session.lifetimeTimer);
    clearTimeout(session.transactionTimer);
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
    if (
      finish === "none" &&
      session.kind === "pinned" &&
      !session.holdsState &&
      !session.readOnly
    ) {
      // Unpinned with nothing held: the connection is as the pool gave it.
      session.conn.release();
      return;
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

  /** The open session named by `token` that `owner` opened, or the error that says why there is none. */
  const findOwned = (token: string, owner: string): Session => {
    const session = find(token);
    if (session.owner !== owner) {
      throw new ConnectError(
        `this ${what(session)} was opened with another credential`,
        Code.PermissionDenied,
      );
    }
    return session;
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
    const ending = endings.get(claims.sessionId);
    if (ending !== undefined) throw new ConnectError(`the ${ending.how}`, ending.code);
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
      const ending = endings.get(session.id);
      throw new ConnectError(
        `the ${ending?.how ?? `${what(session)} has ended`}`,
        ending?.code ?? Code.FailedPrecondition,
      );
    }
    clearTimeout(session.idleTimer);
    session.idleTimer = undefined;
    session.busy = true;
    return () => {
      session.busy = false;
      passOn();
    };
  };

  /** Takes the turn, runs `fn` on the connection, and ends the session with `how`. */
  const finish = async (
    token: string,
    owner: string,
    timeoutMs: number,
    sql: "COMMIT" | "ROLLBACK",
  ) => {
    const session = findOwned(token, owner);
    const passOn = await takeTurn(session, timeoutMs);
    try {
      const position =
        sql === "COMMIT"
          ? await commitWithPosition(session.conn)
          : await runControlStatement(session.conn, sql).then(() => "");
      await end(session, sql === "COMMIT" ? "it was committed" : "it was rolled back", "none");
      return position;
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

  /** A connection for a new session, within the limit on open sessions. */
  const acquire = async (
    { db, owner, ownerLimit }: SessionOwner,
    timeoutMs: number,
  ): Promise<PoolConnection> => {
    const owned = openByOwner.get(owner) ?? 0;
    if (ownerLimit > 0 && owned >= ownerLimit) {
      throw limitExceeded(
        `credential ${owner} has ${ownerLimit} transactions and sessions open already`,
        "SQLGATE_CREDENTIAL_MAX_TRANSACTIONS",
        ownerLimit,
        "commit or roll back its open transactions, or raise the credential's max_transactions",
      );
    }
    if (sessions.size + beginning >= options.maxOpen) {
      throw limitExceeded(
        `${options.maxOpen} transactions and sessions are open already (SQLGATE_MAX_TRANSACTIONS)`,
        "SQLGATE_MAX_TRANSACTIONS",
        options.maxOpen,
        "commit or roll back open transactions, or raise SQLGATE_MAX_TRANSACTIONS",
      );
    }
    beginning++;
    openByOwner.set(owner, owned + 1);
    try {
      return await db.acquireForTransaction(timeoutMs);
    } catch (err) {
      disown(owner);
      throw err;
    } finally {
      beginning--;
    }
  };

  /** Registers a session on `conn` and returns its token. */
  const open = (
    kind: Session["kind"],
    { owner, db }: Pick<SessionOwner, "owner" | "db">,
    conn: PoolConnection,
    transactionLimit?: Session["transactionLimit"],
  ): string => {
    const id = randomBytes(16).toString("base64url");
    const session: Session = {
      id,
      kind,
      owner,
      killer: db,
      conn,
      busy: false,
      holdsState: false,
      readOnly: false,
      transactionLimit,
      transactionTimer: undefined,
      tail: Promise.resolve(),
      idleTimer: undefined,
      lifetimeTimer: setTimeout(() => {
        const how = `it was rolled back after ${options.maxLifetimeMs} ms open (SQLGATE_TRANSACTION_MAX_LIFETIME_MS)`;
        // A call in progress finishes first; the session ends when it is done.
        session.endWhenIdle = how;
        if (!session.busy) void end(session, how, "rollback");
      }, options.maxLifetimeMs),
      endWhenIdle: undefined,
      endCode: Code.FailedPrecondition,
      reconnectAtEnd: false,
      ended: false,
    };
    sessions.set(id, session);
    armIdleTimer(session);
    return options.codec.sign({ sessionId: id, node: options.node });
  };

  /** What a transaction's statement left decides whether the transaction goes on. */
  const afterTransactionCall = (session: Session, state: ReleaseState) => {
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
      void end(session, "MySQL rolled it back after a deadlock; begin a new one", "rollback");
    } else if (session.endWhenIdle !== undefined) {
      void end(session, session.endWhenIdle, "rollback", session.endCode);
    } else {
      armIdleTimer(session);
    }
  };

  /** A pinned session keeps whatever its statement left; settle() decides the rest. */
  const afterPinnedCall = (session: Session, state: ReleaseState) => {
    if (state === "reconnect") session.reconnectAtEnd = true;
    if (state === "reset" || state === "reconnect") session.holdsState = true;
    if (state === "broken") {
      void end(session, "its connection broke; MySQL rolled back what it held", "destroy");
    } else if (session.endWhenIdle !== undefined) {
      void end(session, session.endWhenIdle, "rollback", session.endCode);
    } else {
      armIdleTimer(session);
    }
  };

  return {
    async begin({ isolation, readOnly, timeoutMs, ...owner }) {
      const conn = await acquire(owner, timeoutMs);
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
        disown(owner.owner);
        throw err;
      }
      return {
        token: open("transaction", owner, conn),
        idleTimeoutMs: options.idleTimeoutMs,
      };
    },

    async pin({ timeoutMs, owner, db, ownerLimit, readOnly, ...transactionLimit }) {
      const conn = await acquire({ owner, db, ownerLimit }, timeoutMs);
      if (readOnly) {
        try {
          await runControlStatement(conn, "SET SESSION TRANSACTION READ ONLY");
        } catch (err) {
          conn.destroy();
          disown(owner);
          throw err;
        }
      }
      const token = open("pinned", { owner, db }, conn, transactionLimit);
      // Read-only is session state: the connection is reset when given back.
      if (readOnly) find(token).readOnly = true;
      return token;
    },

    source(token, owner, sourceOptions) {
      const session = findOwned(token, owner);
      return {
        async lease(timeoutMs): Promise<Lease> {
          if (sourceOptions?.exclusive && session.busy) {
            throw new ConnectError(
              `the ${what(session)} is in use: another statement of it is still running (run a session's statements one after another)`,
              Code.Aborted,
            );
          }
          const passOn = await takeTurn(session, timeoutMs);
          return {
            conn: session.conn,
            killer: session.killer,
            inTransaction: session.kind === "transaction",
            readOnly: session.readOnly,
            release(state) {
              if (session.kind === "transaction") afterTransactionCall(session, state);
              else afterPinnedCall(session, state);
              passOn();
            },
          };
        },
      };
    },

    settle(token, { openTransaction, transactionPending }) {
      const session = sessions.get(options.codec.verify(token).sessionId);
      if (session === undefined || session.ended) return false;
      if (openTransaction === false) {
        clearTimeout(session.transactionTimer);
        session.transactionTimer = undefined;
        if (!session.holdsState && !transactionPending) {
          void end(
            session,
            "it held nothing any more; its connection went back to the pool",
            "none",
          );
          return false;
        }
      } else if (openTransaction === true && session.transactionTimer === undefined) {
        const limits = session.transactionLimit;
        if (limits !== undefined) {
          session.transactionTimer = setTimeout(() => {
            const how = `its transaction was rolled back after ${limits.transactionTimeoutMs} ms open (${limits.transactionTimeoutSetting})`;
            session.endWhenIdle = how;
            session.endCode = Code.Aborted;
            if (!session.busy) void end(session, how, "rollback", Code.Aborted);
          }, limits.transactionTimeoutMs);
        }
      }
      return true;
    },

    isOpen(token) {
      return sessions.has(options.codec.verify(token).sessionId);
    },

    async release(token, owner) {
      const session = findOwned(token, owner);
      const passOn = await takeTurn(session, options.idleTimeoutMs);
      try {
        await end(session, "it was closed", "rollback");
      } finally {
        passOn();
      }
    },

    commit: (token, owner, timeoutMs) => finish(token, owner, timeoutMs, "COMMIT"),
    rollback: async (token, owner, timeoutMs) => {
      await finish(token, owner, timeoutMs, "ROLLBACK");
    },

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
