/**
 * The CLI's one SQL call. It goes through the generated DatabaseService on
 * the SDK client's transport because the SDK has no `execute` yet; when it
 * has, this module is the only one to switch to `client.execute`.
 */
import { createClient as createServiceClient } from "@connectrpc/connect";
import { DatabaseService, type ExecuteResponse } from "../../gen/sqlgate/v1/database_pb.js";
import type { Value } from "../../gen/sqlgate/v1/value_pb.js";
import type { SqlgateClient } from "../src/index.js";

export type SqlResult = ExecuteResponse;

/**
 * Runs one statement with positional `params` (lossless values, bound as the
 * MySQL type their kind names) and returns the gateway's whole answer.
 * Failures are `ConnectError`s carrying a `SqlError` detail when MySQL
 * raised them.
 */
export async function executeSql(
  client: SqlgateClient,
  sql: string,
  params: readonly Value[],
): Promise<SqlResult> {
  const service = createServiceClient(DatabaseService, client.transport);
  return service.execute({ sql, typedParams: [...params] });
}
