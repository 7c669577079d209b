/**
 * `sqlgate.v1.DatabaseService`: thin adapters from requests to the SQL core
 * and the transaction registry, and from their results to responses.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type BeginTransactionRequest,
  type DatabaseService,
  type ExecuteOptions,
  type ExecuteResponse,
  ExecuteResponseSchema,
  IsolationLevel,
  ReadFrom,
  StreamExecuteResponseSchema,
} from "../../gen/sqlgate/v1/database_pb.js";
import { primaryName } from "../mysql/replication/read-router.js";
import { type Principal, principalFrom } from "../principal.js";
import type { IsolationLevel as SqlIsolationLevel } from "../sessions/session-registry.js";
import type { CallOptions, ExecutedStatement } from "../sql/sql-executor.js";
import { coreFrom, type GatewayCore, type Scope } from "./context-values.js";
import { type CallRoute, positionFrom, routeCall } from "./read-routing.js";

function callOptions(
  options: ExecuteOptions | undefined,
  principal: Principal,
  route: CallRoute,
  ctx: HandlerContext,
): CallOptions {
  return {
    signal: ctx.signal,
    deadlineMs: ctx.timeoutMs(),
    timeoutMs: options?.timeoutMs ?? 0,
    maxRows: options?.maxRows ?? 0,
    readOnly: (options?.readOnly ?? false) || principal.role === "read_only" || route.readOnly,
    confinedTo: principal.database,
  };
}

/** Names the server that ran the call in a header, when there is a choice of servers. */
function tellServedBy(ctx: HandlerContext, servedBy: string | undefined): string {
  if (servedBy === undefined) return "";
  ctx.responseHeader.set("sqlgate-served-by", servedBy);
  return servedBy;
}

function microsSince(started: number): bigint {
  return BigInt(Math.round((performance.now() - started) * 1000));
}

function responseOf(result: ExecutedStatement, started: number, servedBy: string): ExecuteResponse {
  return create(ExecuteResponseSchema, {
    fields: result.fields,
    rows: result.rows,
    rowsAffected: result.rowsAffected,
    lastInsertId: result.lastInsertId,
    warningCount: result.warningCount,
    truncated: result.truncated,
    info: result.info,
    timing: { serverUs: microsSince(started), mysqlUs: BigInt(result.mysqlUs) },
    position: result.position,
    servedBy,
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

/**
 * The server a new transaction runs on: a replica when a read-only one asks
 * for it and one has applied its `minPosition`, else the primary.
 */
function transactionServer(
  core: GatewayCore,
  principal: Principal,
  req: BeginTransactionRequest,
  readOnly: boolean,
): { db: Scope["db"]; servedBy: string | undefined } {
  const scope = core.scopeFor(principal);
  const replicas = core.replicaReads;
  if (req.readFrom === ReadFrom.REPLICA && !readOnly) {
    throw new ConnectError(
      "readFrom REPLICA needs a read-only transaction (readOnly: true): writes run on the primary",
      Code.InvalidArgument,
    );
  }
  const position = positionFrom(req.minPosition);
  const wantsReplica =
    readOnly &&
    (req.readFrom === ReadFrom.REPLICA ||
      (req.readFrom === ReadFrom.UNSPECIFIED && replicas?.byDefault === true));
  const replica = wantsReplica
    ? replicas?.router.transactionReplica(scope.target, position)
    : undefined;
  if (replica !== undefined) return replica;
  return { db: scope.db, servedBy: replicas === undefined ? undefined : primaryName };
}

/** The time a transaction call may wait: its deadline, else the pool's acquire timeout. */
function waitMs(core: GatewayCore, ctx: HandlerContext): number {
  return ctx.timeoutMs() ?? core.acquireTimeoutMs;
}

export const databaseService: ServiceImpl<typeof DatabaseService> = {
  async execute(req, ctx) {
    const started = performance.now();
    const core = coreFrom(ctx.values);
    const principal = principalFrom(ctx.values);
    const route = routeCall(core, principal, {
      session: req.session,
      options: req.options,
      statements: [req],
    });
    const result = await core.sql.execute(
      route.source,
      req,
      callOptions(req.options, principal, route, ctx),
    );
    return responseOf(result, started, tellServedBy(ctx, route.servedBy()));
  },

  async executeBatch(req, ctx) {
    const started = performance.now();
    const core = coreFrom(ctx.values);
    const principal = principalFrom(ctx.values);
    const route = routeCall(core, principal, req);
    const results = await core.sql.batch(
      route.source,
      req.statements,
      req.atomic,
      callOptions(req.options, principal, route, ctx),
    );
    const servedBy = tellServedBy(ctx, route.servedBy());
    return {
      results: results.map((result) => responseOf(result, started, servedBy)),
      position: results.findLast((result) => result.position !== "")?.position ?? "",
      servedBy,
    };
  },

  async *streamExecute(req, ctx) {
    const started = performance.now();
    const core = coreFrom(ctx.values);
    const principal = principalFrom(ctx.values);
    const route = routeCall(core, principal, {
      session: req.session,
      options: req.options,
      statements: [req],
    });
    // Binary responses carry rows pre-encoded (see sql/row-wire.ts); JSON cannot.
    const binary = !(ctx.requestHeader.get("content-type") ?? "").includes("json");
    const wireRowsField = binary ? streamRowsField : undefined;
    let first = true;
    for await (const chunk of core.sql.stream(
      route.source,
      req,
      callOptions(req.options, principal, route, ctx),
      wireRowsField,
    )) {
      // The connection is leased by now: the route knows its server.
      const servedBy = first ? tellServedBy(ctx, route.servedBy()) : "";
      first = false;
      const message = create(StreamExecuteResponseSchema, {
        fields: chunk.fields ?? [],
        rows: chunk.rows,
        servedBy,
        ...(chunk.summary === undefined
          ? {}
          : {
              rowsAffected: chunk.summary.rowsAffected,
              lastInsertId: chunk.summary.lastInsertId,
              warningCount: chunk.summary.warningCount,
              timing: { serverUs: microsSince(started) },
              position: chunk.summary.position,
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
    const readOnly = req.readOnly || principal.role === "read_only";
    const { db, servedBy } = transactionServer(core, principal, req, readOnly);
    const { token, idleTimeoutMs } = await core.sessions.begin({
      isolation: isolationSql[req.isolation],
      readOnly,
      timeoutMs: waitMs(core, ctx),
      owner: principal.name,
      ownerLimit: principal.limits.maxTransactions,
      db,
    });
    return { session: token, idleTimeoutMs, servedBy: tellServedBy(ctx, servedBy) };
  },

  async commitTransaction(req, ctx) {
    const core = coreFrom(ctx.values);
    const position = await core.sessions.commit(
      req.session,
      principalFrom(ctx.values).name,
      waitMs(core, ctx),
    );
    return { position };
  },

  async rollbackTransaction(req, ctx) {
    const core = coreFrom(ctx.values);
    await core.sessions.rollback(req.session, principalFrom(ctx.values).name, waitMs(core, ctx));
    return {};
  },
};
