/**
 * Errors as PlanetScale's API reports them: a Vitess `RPCError` with
 * vttablet's code for MySQL's errno, and MySQL's own text ending in
 * ` (errno N) (sqlstate S)`, which drivers and ORMs (Prisma's adapter) parse.
 * The gateway's own errors keep their message, with their Connect code (gRPC
 * codes and Vitess codes share numbers).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { RPCError } from "../../../gen/vitess/vtrpc/v22/vtrpc_pb.js";
import { Code as VitessCode } from "../../../gen/vitess/vtrpc/v22/vtrpc_pb.js";
import type { MysqlLikeError } from "../../mysql/errors.js";

/** vttablet's code for each MySQL errno (tabletserver's convertErrorCode). */
const codeByErrno: ReadonlyMap<number, VitessCode> = new Map([
  // Malformed statements and bad values.
  ...[
    1048, 1049, 1051, 1052, 1060, 1061, 1063, 1064, 1065, 1066, 1067, 1068, 1071, 1075, 1103, 1110,
    1136, 1149, 1166, 1193, 1210, 1221, 1222, 1231, 1232, 1241, 1242, 1264, 1265, 1292, 1366, 1367,
    1406, 1411, 1441, 1243, 1300, 1327, 1390,
  ].map((errno) => [errno, VitessCode.INVALID_ARGUMENT] as const),
  // Objects that do not exist (vttablet counts an unknown column here).
  ...[1146, 1054, 1109, 1176, 1305].map((errno) => [errno, VitessCode.NOT_FOUND] as const),
  // Objects that already exist.
  ...[1050, 1062, 1086, 1125, 1586].map((errno) => [errno, VitessCode.ALREADY_EXISTS] as const),
  // Foreign keys, read-only transactions, locks: the data or state must change first.
  ...[1046, 1091, 1099, 1100, 1169, 1173, 1179, 1216, 1217, 1223, 1451, 1452, 1792].map(
    (errno) => [errno, VitessCode.FAILED_PRECONDITION] as const,
  ),
  ...[1044, 1045, 1095, 1142, 1143, 1227].map(
    (errno) => [errno, VitessCode.PERMISSION_DENIED] as const,
  ),
  ...[1021, 1037, 1038, 1040, 1041, 1153, 1203, 1206, 1436].map(
    (errno) => [errno, VitessCode.RESOURCE_EXHAUSTED] as const,
  ),
  [1205, VitessCode.DEADLINE_EXCEEDED], // lock wait timeout
  [1213, VitessCode.ABORTED], // deadlock: the transaction was rolled back
  [1317, VitessCode.DEADLINE_EXCEEDED], // query interrupted
  [1235, VitessCode.UNIMPLEMENTED], // not supported yet
  [1053, VitessCode.UNAVAILABLE], // server shutdown
  [2006, VitessCode.UNAVAILABLE], // server gone
  [1927, VitessCode.UNAVAILABLE], // connection killed (MariaDB)
  [2013, VitessCode.DEADLINE_EXCEEDED], // lost connection during query
]);

function mysqlErrorOf(err: unknown): (MysqlLikeError & { errno: number }) | undefined {
  const cause = err instanceof ConnectError ? err.cause : err;
  if (cause instanceof Error) {
    const e = cause as Error & MysqlLikeError;
    if (typeof e.errno === "number" && e.errno >= 1000 && typeof e.sqlState === "string") {
      return e as Error & MysqlLikeError & { errno: number };
    }
  }
  return undefined;
}

/** The Vitess error for any error a statement or the gateway raised. */
export function rpcErrorFrom(err: unknown): RPCError {
  const mysql = mysqlErrorOf(err);
  if (mysql !== undefined) {
    return {
      $typeName: "vitess.vtrpc.v22.RPCError",
      message: `${mysql.sqlMessage ?? mysql.message} (errno ${mysql.errno}) (sqlstate ${mysql.sqlState})`,
      code: codeByErrno.get(mysql.errno) ?? VitessCode.UNKNOWN,
    };
  }
  const connect = ConnectError.from(err);
  return {
    $typeName: "vitess.vtrpc.v22.RPCError",
    message: connect.rawMessage,
    // gRPC codes and the Vitess codes share their numbers.
    code: connect.code === Code.Unknown ? VitessCode.UNKNOWN : (connect.code as number),
  };
}
