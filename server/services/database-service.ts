/**
 * `sqlgate.v1.DatabaseService`: thin adapters from requests to the SQL core
 * and the transaction registry, and from their results to responses.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type DatabaseService,
  type ExecuteOptions,
  type ExecuteResponse,
  ExecuteResponseSchema,
  IsolationLevel,
  StreamExecuteResponseSchema,
} from "../../gen/sqlgate/v1/database_pb.js";
import type { ConnectionSource } from "../mysql/connection-source.js";
import { type Principal, principalFrom } from "../principal.js";
import type { IsolationLevel as SqlIsolationLevel } from "../sessions/session-registry.js";
import type { CallOptions, ExecutedStatement } from "../sql/sql-executor.js";
import { coreFrom, type GatewayCore } from "./context-values.js";

/** Where a request's statements run: its transaction's connection, or the pool. */
function sourceFor(
  core: GatewayCore,
  principal: Principal,
  session: string,
  options: ExecuteOptions | undefined,
): ConnectionSource {
  if (session === "") return core.scopeFor(principal).pool;
  if (options?.readOnly) {
    throw new ConnectError(
      "options.readOnly does not apply inside a transaction: begin it with readOnly instead",
      Code.InvalidArgument,
    );
  }
  return core.sessions.source(session, principal.name);
}

function callOptions(
  options: ExecuteOptions | undefined,
  principal: Principal,
  ctx: HandlerContext,
): CallOptions {
  return {
    signal: ctx.signal,
    deadlineMs: ctx.timeoutMs(),
    timeoutMs: options?.timeoutMs ?? 0,
    maxRows: options?.maxRows ?? 0,
    readOnly: (options?.readOnly ?? false) || principal.role === "read_only",
    confinedTo: principal.database,
  };
}

function microsSince(started: number): bigint {
  return BigInt(Math.round((performance.now() - started) * 1000));
}

function responseOf(result: ExecutedStatement, started: number): ExecuteResponse {
  return create(ExecuteResponseSchema, {
    fields: result.fields,
    rows: result.rows,
    rowsAffected: result.rowsAffected,
    lastInsertId: result.lastInsertId,
    warningCount: result.warningCount,
    truncated: result.truncated,
    info: result.info,
    timing: { serverUs: microsSince(started), mysqlUs: BigInt(result.mysqlUs) },
  });
}

/** The field number of StreamExecuteResponse.rows. */
const streamRowsField = StreamExecuteResponseSchema.field.rows.number;

const isolationSql: Record<IsolationLevel, SqlIsolationLevel | undefined> = {
  [IsolationLevel.UNSPECIFIED]: undefined,
  [IsolationLevel.READ_UNCOMMITTED]: "READ UNCOMMITTED",
  [IsolationLevel.READ_COMMITTED]: "READ COMMITTED",
  [IsolationLevel.REPEATABLE_READ]: "REPEATABLE READ",
  [IsolationLevel.SERIALIZABLE]: "SERIALIZABLE",
};

/** The time a transaction call may wait: its deadline, else the pool's acquire timeout. */
function waitMs(core: GatewayCore, ctx: HandlerContext): number {
  return ctx.timeoutMs() ?? core.acquireTimeoutMs;
}

export const databaseService: ServiceImpl<typeof DatabaseService> = {
  async execute(req, ctx) {
    const started = performance.now();
    const core = coreFrom(ctx.values);
    const principal = principalFrom(ctx.values);
    const source = sourceFor(core, principal, req.session, req.options);
    return responseOf(
      await core.sql.execute(source, req, callOptions(req.options, principal, ctx)),
      started,
    );
  },

  async executeBatch(req, ctx) {
    const started = performance.now();
    const core = coreFrom(ctx.values);
    const principal = principalFrom(ctx.values);
    const source = sourceFor(core, principal, req.session, req.options);
    const results = await core.sql.batch(
      source,
      req.statements,
      req.atomic,
      callOptions(req.options, principal, ctx),
    );
    return { results: results.map((result) => responseOf(result, started)) };
  },

  async *streamExecute(req, ctx) {
    const started = performance.now();
    const core = coreFrom(ctx.values);
    const principal = principalFrom(ctx.values);
    const source = sourceFor(core, principal, req.session, req.options);
    // Binary responses carry rows pre-encoded (see sql/row-wire.ts); JSON cannot.
    const binary = !(ctx.requestHeader.get("content-type") ?? "").includes("json");
    const wireRowsField = binary ? streamRowsField : undefined;
    for await (const chunk of core.sql.stream(
      source,
      req,
      callOptions(req.options, principal, ctx),
      wireRowsField,
    )) {
      const message = create(StreamExecuteResponseSchema, {
        fields: chunk.fields ?? [],
        rows: chunk.rows,
        ...(chunk.summary === undefined
          ? {}
          : {
              rowsAffected: chunk.summary.rowsAffected,
              lastInsertId: chunk.summary.lastInsertId,
              warningCount: chunk.summary.warningCount,
              timing: { serverUs: microsSince(started) },
            }),
      });
      // create() does not copy `$unknown` from its init.
      if (chunk.wireRows !== undefined) message.$unknown = [chunk.wireRows];
      yield message;
    }
  },

  async beginTransaction(req, ctx) {
    const core = coreFrom(ctx.values);
    const principal = principalFrom(ctx.values);
    const { token, idleTimeoutMs } = await core.sessions.begin({
      isolation: isolationSql[req.isolation],
      readOnly: req.readOnly || principal.role === "read_only",
      timeoutMs: waitMs(core, ctx),
      owner: principal.name,
      ownerLimit: principal.limits.maxTransactions,
      db: core.scopeFor(principal).db,
    });
    return { session: token, idleTimeoutMs };
  },

  async commitTransaction(req, ctx) {
    const core = coreFrom(ctx.values);
    await core.sessions.commit(req.session, principalFrom(ctx.values).name, waitMs(core, ctx));
    return {};
  },

  async rollbackTransaction(req, ctx) {
    const core = coreFrom(ctx.values);
    await core.sessions.rollback(req.session, principalFrom(ctx.values).name, waitMs(core, ctx));
    return {};
  },
};
