/**
 * `DatabaseError`: the one error type of the SDK's SQL methods.
 *
 * The gateway reports a failed statement as a Connect error whose code says
 * what kind of failure it was (README, "Errors") and whose details carry
 * MySQL's own verdict (`sqlgate.v1.SqlError`) or the gateway limit that was
 * reached (`sqlgate.v1.LimitExceeded`). A `DatabaseError` lifts those details
 * onto plain properties, so that a caller can branch on `err.errno === 1062`
 * without decoding protobuf details, and keeps the original `ConnectError` as
 * `cause` for everything else (metadata, raw details).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { LimitExceededSchema, SqlErrorSchema } from "../../gen/sqlgate/v1/value_pb.js";

/**
 * A Connect error code by its protocol name, as the Connect protocol writes
 * it on the wire ("invalid_argument", "already_exists", ...): the names are
 * stable across languages and readable in logs, unlike the numbers.
 */
export type ErrorCode =
  | "canceled"
  | "unknown"
  | "invalid_argument"
  | "deadline_exceeded"
  | "not_found"
  | "already_exists"
  | "permission_denied"
  | "resource_exhausted"
  | "failed_precondition"
  | "aborted"
  | "out_of_range"
  | "unimplemented"
  | "internal"
  | "unavailable"
  | "data_loss"
  | "unauthenticated";

const codeNames: Record<Code, ErrorCode> = {
  [Code.Canceled]: "canceled",
  [Code.Unknown]: "unknown",
  [Code.InvalidArgument]: "invalid_argument",
  [Code.DeadlineExceeded]: "deadline_exceeded",
  [Code.NotFound]: "not_found",
  [Code.AlreadyExists]: "already_exists",
  [Code.PermissionDenied]: "permission_denied",
  [Code.ResourceExhausted]: "resource_exhausted",
  [Code.FailedPrecondition]: "failed_precondition",
  [Code.Aborted]: "aborted",
  [Code.OutOfRange]: "out_of_range",
  [Code.Unimplemented]: "unimplemented",
  [Code.Internal]: "internal",
  [Code.Unavailable]: "unavailable",
  [Code.DataLoss]: "data_loss",
  [Code.Unauthenticated]: "unauthenticated",
};

/** The gateway limit a call ran into (`sqlgate.v1.LimitExceeded`). */
export interface LimitExceededInfo {
  /** The configuration setting an operator can raise, e.g. `SQLGATE_MAX_RESPONSE_BYTES`. */
  readonly setting: string;
  /** The limit in force (limits are far below 2^53, so a number). */
  readonly limit: number;
  /** What to do instead, e.g. "use StreamExecute, or select fewer rows or columns". */
  readonly hint: string;
}

/**
 * A failed SQL call: a statement MySQL refused, a gateway limit, a deadline,
 * a dropped connection, or a value the SDK could not convert.
 *
 * MySQL's fields (`errno`, `sqlState`, `sqlMessage`) are set when MySQL
 * reported the error, and undefined otherwise (a deadline, a network
 * failure), so `err.errno === undefined` tells "MySQL said no" from "the call
 * did not get through".
 */
export class DatabaseError extends Error {
  override readonly name = "DatabaseError";
  /** The Connect code, by name; the README's error table says which situation has which. */
  readonly code: ErrorCode;
  /** MySQL's error number, for example 1062 (ER_DUP_ENTRY), when MySQL reported the error. */
  readonly errno: number | undefined;
  /** MySQL's SQLSTATE, for example "23000", when MySQL reported the error. */
  readonly sqlState: string | undefined;
  /** MySQL's own message, without the gateway's prefixes, when MySQL reported the error. */
  readonly sqlMessage: string | undefined;
  /** In a batch: the index of the statement that failed. */
  readonly statementIndex: number | undefined;
  /** The gateway limit that was reached, for `resource_exhausted` errors that name one. */
  readonly limitExceeded: LimitExceededInfo | undefined;
  /** The Connect error this one was made from: metadata, raw details, its own cause. */
  override readonly cause: ConnectError;

  constructor(cause: ConnectError) {
    super(cause.message, { cause });
    this.cause = cause;
    this.code = codeNames[cause.code] ?? "unknown";
    const sql = cause.findDetails(SqlErrorSchema)[0];
    this.errno = sql?.errno;
    this.sqlState = sql?.sqlState;
    this.sqlMessage = sql?.message;
    this.statementIndex = sql?.statementIndex;
    const limit = cause.findDetails(LimitExceededSchema)[0];
    this.limitExceeded =
      limit === undefined
        ? undefined
        : { setting: limit.setting, limit: Number(limit.limit), hint: limit.hint };
  }
}

/**
 * `reason` as a `DatabaseError`: a `DatabaseError` as it is, anything else
 * through `ConnectError.from` (an `AbortError` becomes `canceled`, any other
 * error `unknown`, with the original as the ConnectError's cause).
 */
export function databaseErrorFrom(reason: unknown): DatabaseError {
  if (reason instanceof DatabaseError) return reason;
  return new DatabaseError(ConnectError.from(reason));
}

/**
 * Whether `err` (or an error in its `cause` chain) says that a transaction
 * lost a conflict with another one: `aborted` carrying MySQL's errno. The
 * gateway answers `aborted` for a deadlock (1213, MySQL rolled the
 * transaction back), a lock wait timeout (1205, the statement was rolled
 * back but the transaction lost the race), an error during COMMIT (1180) and
 * SQLSTATE class 40 ("transaction rollback"). Only MySQL's verdict counts:
 * connect-node also raises `aborted` for a connection reset, after which a
 * COMMIT may or may not have happened, and running the transaction again
 * could apply it twice.
 */
export function isTransactionConflict(err: unknown): boolean {
  const seen = new Set<unknown>();
  for (let e: unknown = err; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    if (e instanceof DatabaseError) {
      return e.code === "aborted" && e.errno !== undefined;
    }
  }
  return false;
}
