/**
 * `sqlgate.v1.DatabaseService`: a thin adapter from requests to the SQL core
 * and from its results to responses. Methods not implemented here answer
 * `unimplemented`.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type DatabaseService,
  type ExecuteRequest,
  type ExecuteResponse,
  ExecuteResponseSchema,
} from "../../gen/sqlgate/v1/database_pb.js";
import { coreFrom } from "./context-values.js";

function refuseSession(session: string): void {
  if (session !== "") {
    throw new ConnectError(
      "interactive transactions are not available in this version of sqlgate",
      Code.Unimplemented,
    );
  }
}

async function execute(req: ExecuteRequest, ctx: HandlerContext): Promise<ExecuteResponse> {
  const started = performance.now();
  const core = coreFrom(ctx.values);
  refuseSession(req.session);
  const result = await core.sql.execute(req, {
    signal: ctx.signal,
    deadlineMs: ctx.timeoutMs(),
    timeoutMs: req.options?.timeoutMs ?? 0,
    maxRows: req.options?.maxRows ?? 0,
    readOnly: req.options?.readOnly ?? false,
  });
  return create(ExecuteResponseSchema, {
    fields: result.fields,
    rows: result.rows,
    rowsAffected: result.rowsAffected,
    lastInsertId: result.lastInsertId,
    warningCount: result.warningCount,
    truncated: result.truncated,
    info: result.info,
    timing: {
      serverUs: BigInt(Math.round((performance.now() - started) * 1000)),
      mysqlUs: BigInt(result.mysqlUs),
    },
  });
}

export const databaseService: Partial<ServiceImpl<typeof DatabaseService>> = { execute };
