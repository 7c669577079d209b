/**
 * One table-driven mapping from MySQL and driver errors to Connect codes.
 *
 * The order of precedence is: MySQL's errno (the most specific), then the
 * SQLSTATE class (covers errnos this table does not name, on MySQL and MariaDB
 * alike), then Node/mysql2 client error codes (the server was never reached or
 * the connection broke). Each MySQL error carries a `sqlgate.v1.SqlError`
 * detail with errno, SQLSTATE and message, and keeps the original as `cause`.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { LimitExceededSchema, SqlErrorSchema } from "../../gen/sqlgate/v1/value_pb.js";

/** The fields of a mysql2 error (or any Node error) that the mapping reads. */
export interface MysqlLikeError {
  readonly message: string;
  readonly code?: string | undefined;
  readonly errno?: number | undefined;
  readonly sqlState?: string | undefined;
  readonly sqlMessage?: string | undefined;
  readonly fatal?: boolean | undefined;
}

/**
 * MySQL server error numbers and their codes. Names and numbers from
 * https://dev.mysql.com/doc/mysql-errors/8.0/en/server-error-reference.html and
 * MariaDB's include/mysqld_error.h.
 */
const codeByErrno: ReadonlyMap<number, Code> = new Map<number, Code>([
  // Malformed statements and wrong arguments: the caller must change the request.
  [1064, Code.InvalidArgument], // ER_PARSE_ERROR
  [1149, Code.InvalidArgument], // ER_SYNTAX_ERROR
  [1054, Code.InvalidArgument], // ER_BAD_FIELD_ERROR: unknown column
  [1210, Code.InvalidArgument], // ER_WRONG_ARGUMENTS (e.g. to mysqld_stmt_execute)
  [1048, Code.InvalidArgument], // ER_BAD_NULL_ERROR
  [1364, Code.InvalidArgument], // ER_NO_DEFAULT_FOR_FIELD
  [1366, Code.InvalidArgument], // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
  [1292, Code.InvalidArgument], // ER_TRUNCATED_WRONG_VALUE
  [1264, Code.InvalidArgument], // ER_WARN_DATA_OUT_OF_RANGE
  [1406, Code.InvalidArgument], // ER_DATA_TOO_LONG
  [1136, Code.InvalidArgument], // ER_WRONG_VALUE_COUNT_ON_ROW
  [1065, Code.InvalidArgument], // ER_EMPTY_QUERY
  [1390, Code.InvalidArgument], // ER_PS_MANY_PARAM: more than 65,535 placeholders
  [1193, Code.InvalidArgument], // ER_UNKNOWN_SYSTEM_VARIABLE
  [1300, Code.InvalidArgument], // ER_INVALID_CHARACTER_STRING
  [1243, Code.InvalidArgument], // ER_UNKNOWN_STMT_HANDLER
  [1327, Code.InvalidArgument], // ER_SP_UNDECLARED_VAR
  [1436, Code.ResourceExhausted], // ER_STACK_OVERRUN_NEED_MORE: an expression too deep
  [1052, Code.InvalidArgument], // ER_NON_UNIQ_ERROR: ambiguous column
  [1241, Code.InvalidArgument], // ER_OPERAND_COLUMNS
  [1242, Code.InvalidArgument], // ER_SUBQUERY_NO_1_ROW
  // Objects that do not exist.
  [1146, Code.NotFound], // ER_NO_SUCH_TABLE
  [1051, Code.NotFound], // ER_BAD_TABLE_ERROR (DROP TABLE of an unknown table)
  [1049, Code.NotFound], // ER_BAD_DB_ERROR
  [1305, Code.NotFound], // ER_SP_DOES_NOT_EXIST
  [1091, Code.NotFound], // ER_CANT_DROP_FIELD_OR_KEY
  [1176, Code.NotFound], // ER_KEY_DOES_NOT_EXITS
  // Objects that already exist.
  [1062, Code.AlreadyExists], // ER_DUP_ENTRY
  [1586, Code.AlreadyExists], // ER_DUP_ENTRY_WITH_KEY_NAME
  [1022, Code.AlreadyExists], // ER_DUP_KEY
  [1050, Code.AlreadyExists], // ER_TABLE_EXISTS_ERROR
  [1007, Code.AlreadyExists], // ER_DB_CREATE_EXISTS
  [1060, Code.AlreadyExists], // ER_DUP_FIELDNAME
  [1061, Code.AlreadyExists], // ER_DUP_KEYNAME
  // Constraints that the current data violates: retrying the same call fails again.
  [1451, Code.FailedPrecondition], // ER_ROW_IS_REFERENCED_2
  [1452, Code.FailedPrecondition], // ER_NO_REFERENCED_ROW_2
  [3819, Code.FailedPrecondition], // ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
  [4025, Code.FailedPrecondition], // ER_CONSTRAINT_FAILED (MariaDB)
  [1046, Code.FailedPrecondition], // ER_NO_DB_ERROR: no database selected
  // Concurrency conflicts: the client may retry the whole transaction.
  [1213, Code.Aborted], // ER_LOCK_DEADLOCK
  [1205, Code.Aborted], // ER_LOCK_WAIT_TIMEOUT
  [1180, Code.Aborted], // ER_ERROR_DURING_COMMIT
  // Privileges and read-only refusals.
  [1044, Code.PermissionDenied], // ER_DBACCESS_DENIED_ERROR
  [1045, Code.PermissionDenied], // ER_ACCESS_DENIED_ERROR
  [1142, Code.PermissionDenied], // ER_TABLEACCESS_DENIED_ERROR
  [1143, Code.PermissionDenied], // ER_COLUMNACCESS_DENIED_ERROR
  [1227, Code.PermissionDenied], // ER_SPECIFIC_ACCESS_DENIED_ERROR
  [1370, Code.PermissionDenied], // ER_PROCACCESS_DENIED_ERROR
  [1792, Code.PermissionDenied], // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
  [1290, Code.PermissionDenied], // ER_OPTION_PREVENTS_STATEMENT (--read-only)
  // LOAD DATA LOCAL refused: the gateway turns the LOCAL_FILES capability off.
  [1148, Code.PermissionDenied], // ER_NOT_ALLOWED_COMMAND
  [3948, Code.PermissionDenied], // ER_CLIENT_LOCAL_FILES_DISABLED (MySQL)
  [4166, Code.PermissionDenied], // ER_LOAD_INFILE_CAPABILITY_DISABLED (MariaDB)
  // Statements stopped by time limits or KILL.
  [1317, Code.Canceled], // ER_QUERY_INTERRUPTED
  [3024, Code.DeadlineExceeded], // ER_QUERY_TIMEOUT (MySQL max_execution_time)
  [1969, Code.DeadlineExceeded], // ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
  // Server capacity: retrying later may succeed.
  [1040, Code.Unavailable], // ER_CON_COUNT_ERROR: too many connections
  [1203, Code.ResourceExhausted], // ER_TOO_MANY_USER_CONNECTIONS
  [1041, Code.ResourceExhausted], // ER_OUT_OF_RESOURCES
  [1114, Code.ResourceExhausted], // ER_RECORD_FILE_FULL: table is full
  [1153, Code.ResourceExhausted], // ER_NET_PACKET_TOO_LARGE: over max_allowed_packet
  [1461, Code.ResourceExhausted], // ER_MAX_PREPARED_STMT_COUNT_REACHED
  [1104, Code.ResourceExhausted], // ER_TOO_BIG_SELECT
  [1053, Code.Unavailable], // ER_SERVER_SHUTDOWN
  [1927, Code.Unavailable], // ER_CONNECTION_KILLED (MariaDB)
  // Statements this server cannot run.
  [1235, Code.Unimplemented], // ER_NOT_SUPPORTED_YET
  [1295, Code.Unimplemented], // ER_UNSUPPORTED_PS
]);

/**
 * SQLSTATE classes (the first two characters), for errnos not in the table.
 * https://en.wikipedia.org/wiki/SQLSTATE
 */
const codeBySqlStateClass: ReadonlyMap<string, Code> = new Map<string, Code>([
  ["08", Code.Unavailable], // connection exception
  ["0A", Code.Unimplemented], // feature not supported
  ["21", Code.InvalidArgument], // cardinality violation
  ["22", Code.InvalidArgument], // data exception
  ["23", Code.FailedPrecondition], // integrity constraint violation
  ["25", Code.FailedPrecondition], // invalid transaction state
  ["28", Code.PermissionDenied], // invalid authorization specification
  ["3D", Code.NotFound], // invalid catalog (database) name
  ["40", Code.Aborted], // transaction rollback
  ["42", Code.InvalidArgument], // syntax error or access rule violation
  ["70", Code.Canceled], // operation canceled (MySQL: query interrupted)
]);

/**
 * Node and mysql2 client-side codes: the server was not reached, or the
 * connection broke mid-call. All of these are worth retrying once MySQL is back.
 */
const codeByClientCode: ReadonlyMap<string, Code> = new Map<string, Code>([
  ["ECONNREFUSED", Code.Unavailable],
  ["ECONNRESET", Code.Unavailable],
  ["ENOENT", Code.Unavailable], // Unix socket missing: server not started
  ["EPIPE", Code.Unavailable],
  ["ETIMEDOUT", Code.Unavailable],
  ["EHOSTUNREACH", Code.Unavailable],
  ["ENETUNREACH", Code.Unavailable],
  ["ENOTFOUND", Code.Unavailable],
  ["EAI_AGAIN", Code.Unavailable],
  ["PROTOCOL_CONNECTION_LOST", Code.Unavailable],
  ["PROTOCOL_SEQUENCE_TIMEOUT", Code.Unavailable],
  ["POOL_CLOSED", Code.Unavailable],
  ["ER_SERVER_SHUTDOWN", Code.Unavailable],
]);

/** Whether an error object came from the MySQL server rather than the client. */
function isServerError(err: MysqlLikeError): err is MysqlLikeError & { errno: number } {
  return typeof err.errno === "number" && err.errno >= 1000 && typeof err.sqlState === "string";
}

/** The Connect code for a MySQL or driver error. */
export function codeFromMysql(err: MysqlLikeError): Code {
  if (isServerError(err)) {
    return (
      codeByErrno.get(err.errno) ??
      codeBySqlStateClass.get((err.sqlState ?? "").slice(0, 2)) ??
      Code.Unknown
    );
  }
  if (err.code !== undefined) {
    const code = codeByClientCode.get(err.code);
    if (code !== undefined) return code;
  }
  if (err.fatal === true) return Code.Unavailable;
  return Code.Internal;
}

/**
 * Converts an error from mysql2 (or a Node socket error) to a ConnectError with
 * the right code and a `SqlError` detail. ConnectErrors pass through unchanged.
 */
export function connectErrorFromMysql(err: unknown, statementIndex?: number): ConnectError {
  if (err instanceof ConnectError) return err;
  if (!(err instanceof Error))
    return new ConnectError(String(err), Code.Internal, undefined, undefined, err);
  const e = err as Error & MysqlLikeError;
  const code = codeFromMysql(e);
  if (isServerError(e)) {
    const message = e.sqlMessage ?? e.message;
    const where = statementIndex === undefined ? "" : `statement ${statementIndex}: `;
    return new ConnectError(
      `${where}${message} (errno ${e.errno}, SQLSTATE ${e.sqlState})`,
      code,
      undefined,
      [
        {
          desc: SqlErrorSchema,
          value: create(SqlErrorSchema, {
            errno: e.errno,
            sqlState: e.sqlState ?? "",
            message,
            ...(statementIndex === undefined ? {} : { statementIndex }),
          }),
        },
      ],
      err,
    );
  }
  if (code === Code.Unavailable) {
    return new ConnectError(
      `MySQL is unavailable (${e.code !== undefined && e.code !== e.message ? `${e.code}: ${e.message}` : e.message}); retry later`,
      code,
      undefined,
      undefined,
      err,
    );
  }
  return new ConnectError(e.message, code, undefined, undefined, err);
}

/**
 * A `resource_exhausted` error for a gateway limit, with a `LimitExceeded`
 * detail naming the setting, so that nobody has to hunt for which limit hit.
 */
export function limitExceeded(
  message: string,
  setting: string,
  limit: number,
  hint: string,
): ConnectError {
  return new ConnectError(message, Code.ResourceExhausted, undefined, [
    {
      desc: LimitExceededSchema,
      value: create(LimitExceededSchema, { setting, limit: BigInt(limit), hint }),
    },
  ]);
}

/** Server errors after which the server has closed the connection. */
const connectionEndingErrnos: ReadonlySet<number> = new Set([
  1927, // ER_CONNECTION_KILLED (MariaDB)
  1053, // ER_SERVER_SHUTDOWN
]);

/**
 * Whether `err` broke its connection (mysql2 marks such errors `fatal`; a few
 * server errors close it too): the connection must be destroyed, never reused.
 */
export function isFatal(err: unknown): boolean {
  const cause = (err instanceof ConnectError ? err.cause : err) as
    | { fatal?: unknown; errno?: unknown }
    | undefined;
  return cause?.fatal === true || connectionEndingErrnos.has(cause?.errno as number);
}

/**
 * Whether MySQL rolled back the whole open transaction with this error: InnoDB
 * does so on a deadlock (1213) and when COMMIT fails (1180), while a lock wait
 * timeout (1205) undoes only the statement.
 */
export function endsTransaction(err: unknown): boolean {
  const cause = (err instanceof ConnectError ? err.cause : err) as { errno?: unknown } | undefined;
  return cause?.errno === 1213 || cause?.errno === 1180;
}
