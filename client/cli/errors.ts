/**
 * How the CLI reports failures: a usage mistake (exit code 2, with a pointer
 * to `--help`) or a failed call (exit code 1, with everything the gateway
 * said about it).
 */
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { LimitExceededSchema, SqlErrorSchema } from "../../gen/sqlgate/v1/value_pb.js";

/** A command line that cannot be run as written; exits with 2, as usage errors conventionally do. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The exit code for `err`: 2 for a usage mistake, 1 for anything else. */
export function exitCodeFromError(err: unknown): number {
  return err instanceof UsageError || isParseArgsError(err) ? 2 : 1;
}

/**
 * One line for stderr. A call's failure names the Connect code (what a
 * program would branch on), then MySQL's errno and SQLSTATE in the form the
 * mysql client prints (`ERROR 1146 (42S02): ...`) when MySQL raised it, or
 * the gateway setting behind a limit, so that the line can be searched for in
 * MySQL's or sqlgate's documentation as it is.
 */
export function messageFromError(err: unknown): string {
  if (err instanceof UsageError || isParseArgsError(err)) return (err as Error).message;
  // The SDK's SQL errors (DatabaseError) keep the gateway's ConnectError as
  // their cause: its details are the source for both.
  const connect = connectErrorIn(err);
  if (connect !== undefined) {
    const code = codeToString(connect.code);
    const [sql] = connect.findDetails(SqlErrorSchema);
    if (sql !== undefined) {
      const at = sql.statementIndex !== undefined ? ` (statement ${sql.statementIndex})` : "";
      return `${code}: ERROR ${sql.errno} (${sql.sqlState}): ${sql.message}${at}`;
    }
    const [limit] = connect.findDetails(LimitExceededSchema);
    if (limit !== undefined) {
      const hint = limit.hint ? `; ${limit.hint}` : "";
      return `${code}: ${connect.rawMessage} (${limit.setting}=${limit.limit}${hint})`;
    }
    return `${code}: ${connect.rawMessage}${causeText(connect.cause, connect.rawMessage)}`;
  }
  if (err instanceof Error) return `${err.message}${causeText(err.cause, err.message)}`;
  return String(err);
}

/** `err` itself or the first ConnectError among its causes. */
function connectErrorIn(err: unknown): ConnectError | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof ConnectError) return e;
  }
  return undefined;
}

/**
 * A network failure's own words (`connect ECONNREFUSED 127.0.0.1:8080`) are
 * what a person needs, when the message does not already hold them.
 */
function causeText(cause: unknown, message: string): string {
  if (!(cause instanceof Error) || message.includes(cause.message)) return "";
  return ` (${cause.message})`;
}

/** node:util parseArgs reports bad command lines with ERR_PARSE_ARGS_* codes. */
function isParseArgsError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_");
}
