/**
 * `psdb.v1alpha1.Database`, PlanetScale's HTTP API, so that
 * @planetscale/database and the ORMs on it work unchanged. Statements arrive
 * as final SQL text and run with MySQL's text protocol; rows go back as MySQL
 * sent them (see sql/execute-text.ts). SQL errors are answered in-band (HTTP
 * 200) with the session, as the driver expects; every response carries the
 * session to send next.
 *
 * A session pins a MySQL connection only while it holds something only that
 * connection has: an open transaction, session variables, locks, temporary
 * tables (see sessions/session-registry.ts). Everything else runs on the pool.
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Role } from "../../../gen/psdb/data/v1/data_pb.js";
import {
  type Database,
  type ExecuteRequest,
  type ExecuteResponse,
  ExecuteResponseSchema,
} from "../../../gen/psdb/v1alpha1/database_pb.js";
import type { QueryResult } from "../../../gen/vitess/query/v22/query_pb.js";
import type { RPCError } from "../../../gen/vitess/vtrpc/v22/vtrpc_pb.js";
import type { PlanetScaleConfig } from "../../config.js";
import { type Principal, principalFrom } from "../../principal.js";
import { coreFrom, type GatewayCore } from "../../services/context-values.js";
import type { RawResult } from "../../sql/execute-text.js";
import type { CallOptions } from "../../sql/sql-executor.js";
import { parseSqlText } from "../../sql/sql-text.js";
import { interpolate } from "./bind-variables.js";
import type { PsdbSessions, SessionRef } from "./psdb-session.js";
import { rpcErrorFrom } from "./vitess-errors.js";
import { vitessField } from "./vitess-fields.js";

export interface PsdbServiceOptions {
  readonly limits: PlanetScaleConfig;
  readonly sessions: PsdbSessions;
}

function callOptions(ctx: HandlerContext, principal: Principal): CallOptions {
  return {
    signal: ctx.signal,
    deadlineMs: ctx.timeoutMs(),
    timeoutMs: 0,
    maxRows: 0,
    readOnly: principal.role === "read_only",
    confinedTo: principal.database,
  };
}

/** PlanetScale's role for a credential's. */
const roleOf = { read_write: Role.readwriter, read_only: Role.reader, ingest_only: Role.writer };

function queryResultOf(result: RawResult): QueryResult {
  return {
    $typeName: "vitess.query.v22.QueryResult",
    fields: result.columns.map(vitessField),
    rowsAffected: result.rowsAffected,
    insertId: result.lastInsertId,
    rows: result.rows.map((row) => ({
      $typeName: "vitess.query.v22.Row",
      lengths: row.lengths.map(BigInt),
      values: row.values,
    })),
    info: "",
    sessionStateChanges: "",
    insertIdChanged: false,
  };
}

/** `ROLLBACK` alone (not `ROLLBACK TO SAVEPOINT`): harmless on a session that has ended. */
const plainRollback = /^\s*ROLLBACK(\s+WORK)?\s*;?\s*$/i;

export function createPsdbService(
  options: PsdbServiceOptions,
): Partial<ServiceImpl<typeof Database>> {
  const { limits, sessions } = options;

  /** Runs one statement for a session; resolves with the response, errors included. */
  const execute = async (
    core: GatewayCore,
    principal: Principal,
    req: ExecuteRequest,
    given: SessionRef,
    ctx: HandlerContext,
    started: number,
  ): Promise<ExecuteResponse> => {
    const scope = core.scopeFor(principal);
    const owner = principal.name;
    let query = req.query;
    let token = given.pinned;
    let prelude = given.prelude;
    let result: QueryResult | undefined;
    let error: RPCError | undefined;
    let inTransaction = false;
    let lastInsertId = 0n;
    let pinnedHere = false;
    try {
      if (Object.keys(req.bindVariables).length > 0) query = interpolate(query, req.bindVariables);
      if (token !== undefined && !core.sessions.isOpen(token) && plainRollback.test(query)) {
        // Whatever the session held was rolled back when it ended.
        token = undefined;
        result = queryResultOf({ columns: [], rows: [], ...noSummary });
      } else {
        const text = parseSqlText(query, "verbatim");
        // A SET TRANSACTION outside a session holding a connection is kept in
        // the session, to run before its next statement, instead of pinning
        // a connection for it (Prisma's adapter sends one and never returns).
        const forNextTransaction =
          token === undefined && text.firstWord === "SET" && text.sessionEffect === "transaction";
        const call: CallOptions = {
          ...callOptions(ctx, principal),
          prelude: token === undefined ? prelude : undefined,
        };
        if (token === undefined && text.sessionEffect !== "none" && !forNextTransaction) {
          token = await core.sessions.pin({
            owner,
            ownerLimit: principal.limits.maxTransactions,
            db: scope.db,
            readOnly: call.readOnly,
            timeoutMs: ctx.timeoutMs() ?? core.acquireTimeoutMs,
            transactionTimeoutMs: limits.transactionTimeoutMs,
            transactionTimeoutSetting: "SQLGATE_PSDB_TRANSACTION_TIMEOUT_MS",
          });
          pinnedHere = true;
        }
        const source =
          token === undefined
            ? scope.pool
            : core.sessions.source(token, owner, { exclusive: true });
        const raw = await core.sql.executeText(source, text.sql, call, {
          maxRows: limits.maxRows,
          maxBytes: limits.maxResultBytes,
          timeoutMs: text.isRead ? limits.readTimeoutMs : limits.writeTimeoutMs,
          maxRowsSetting: "SQLGATE_PSDB_MAX_ROWS",
          maxBytesSetting: "SQLGATE_PSDB_MAX_RESULT_BYTES",
        });
        result = queryResultOf(raw);
        // Run now (to check it), and kept for the next statement; else consumed.
        prelude = forNextTransaction ? [...(prelude ?? []), text.sql] : undefined;
        lastInsertId = raw.lastInsertId;
        inTransaction = raw.inTransaction ?? token !== undefined;
        if (
          token !== undefined &&
          !core.sessions.settle(token, {
            openTransaction: raw.inTransaction,
            transactionPending: text.sessionEffect === "transaction" && raw.inTransaction === false,
          })
        ) {
          token = undefined;
        }
      }
    } catch (err) {
      error = rpcErrorFrom(err);
      if (token !== undefined && pinnedHere) {
        // Nothing was held before this statement, and it failed: hold nothing.
        await core.sessions.release(token, owner).catch(() => {});
      }
      if (token !== undefined && !core.sessions.isOpen(token)) token = undefined;
      inTransaction = token !== undefined;
    }
    return create(ExecuteResponseSchema, {
      session: sessions.sessionFor(
        owner,
        { pinned: token, prelude: token === undefined ? prelude : undefined },
        { database: scope.database, inTransaction, lastInsertId },
      ),
      result,
      error,
      timing: (performance.now() - started) / 1000,
    });
  };

  /** The session to return with nothing pinned. */
  const freshSession = (core: GatewayCore, principal: Principal) =>
    sessions.sessionFor(
      principal.name,
      {},
      {
        database: core.scopeFor(principal).database,
        inTransaction: false,
        lastInsertId: 0n,
      },
    );

  return {
    async createSession(_req, ctx) {
      const core = coreFrom(ctx.values);
      const principal = principalFrom(ctx.values);
      return {
        branch: core.scopeFor(principal).database,
        user: { username: principal.name, psid: "", role: roleOf[principal.role] },
        session: freshSession(core, principal),
      };
    },

    async execute(req, ctx) {
      const started = performance.now();
      const core = coreFrom(ctx.values);
      const principal = principalFrom(ctx.values);
      let ref: SessionRef;
      try {
        ref = sessions.read(req.session, principal.name);
      } catch (err) {
        return create(ExecuteResponseSchema, {
          session: freshSession(core, principal),
          error: rpcErrorFrom(err),
        });
      }
      return execute(core, principal, req, ref, ctx, started);
    },

    async prepare(req, ctx) {
      const core = coreFrom(ctx.values);
      const principal = principalFrom(ctx.values);
      const scope = core.scopeFor(principal);
      let ref: SessionRef = {};
      const sessionNow = () =>
        sessions.sessionFor(principal.name, ref, {
          database: scope.database,
          inTransaction: ref.pinned !== undefined,
          lastInsertId: 0n,
        });
      try {
        ref = sessions.read(req.session, principal.name);
        const source =
          ref.pinned === undefined
            ? scope.pool
            : core.sessions.source(ref.pinned, principal.name, { exclusive: true });
        const described = await core.sql.describe(source, req.query, callOptions(ctx, principal));
        return {
          session: sessionNow(),
          fields: described.columns.map(vitessField),
          paramsCount: described.parameterCount,
        };
      } catch (err) {
        if (ref.pinned !== undefined && !core.sessions.isOpen(ref.pinned)) ref = {};
        return { session: sessionNow(), error: rpcErrorFrom(err) };
      }
    },

    async closeSession(req, ctx) {
      const core = coreFrom(ctx.values);
      const principal = principalFrom(ctx.values);
      try {
        const token = sessions.read(req.session, principal.name).pinned;
        if (token !== undefined && core.sessions.isOpen(token)) {
          await core.sessions.release(token, principal.name);
        }
        return { session: freshSession(core, principal) };
      } catch (err) {
        return { session: freshSession(core, principal), error: rpcErrorFrom(err) };
      }
    },
  };
}

const noSummary = {
  rowsAffected: 0n,
  lastInsertId: 0n,
  warningCount: 0,
  info: "",
  position: "",
  outsideTransaction: true,
  inTransaction: false,
};
