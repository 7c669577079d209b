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
import {
  type Database,
  type ExecuteRequest,
  type ExecuteResponse,
  ExecuteResponseSchema,
} from "../../../gen/psdb/v1alpha1/database_pb.js";
import type { QueryResult } from "../../../gen/vitess/query/v22/query_pb.js";
import type { RPCError } from "../../../gen/vitess/vtrpc/v22/vtrpc_pb.js";
import type { PlanetScaleConfig } from "../../config.js";
import { coreFrom, type GatewayCore } from "../../services/context-values.js";
import type { RawResult } from "../../sql/execute-text.js";
import type { CallOptions } from "../../sql/sql-executor.js";
import { parseSqlText } from "../../sql/sql-text.js";
import { interpolate } from "./bind-variables.js";
import type { PsdbSessions } from "./psdb-session.js";
import { rpcErrorFrom } from "./vitess-errors.js";
import { vitessField } from "./vitess-fields.js";

export interface PsdbServiceOptions {
  readonly limits: PlanetScaleConfig;
  readonly sessions: PsdbSessions;
}

function callOptions(ctx: HandlerContext): CallOptions {
  return {
    signal: ctx.signal,
    deadlineMs: ctx.timeoutMs(),
    timeoutMs: 0,
    maxRows: 0,
    readOnly: false,
  };
}

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
    req: ExecuteRequest,
    given: string | undefined,
    ctx: HandlerContext,
    started: number,
  ): Promise<ExecuteResponse> => {
    let query = req.query;
    let token = given;
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
        if (token === undefined && text.sessionEffect !== "none") {
          token = await core.sessions.pin({
            timeoutMs: ctx.timeoutMs() ?? core.acquireTimeoutMs,
            transactionTimeoutMs: limits.transactionTimeoutMs,
            transactionTimeoutSetting: "SQLGATE_PSDB_TRANSACTION_TIMEOUT_MS",
          });
          pinnedHere = true;
        }
        const source =
          token === undefined ? core.pool : core.sessions.source(token, { exclusive: true });
        const raw = await core.sql.executeText(source, text.sql, callOptions(ctx), {
          maxRows: limits.maxRows,
          maxBytes: limits.maxResultBytes,
          timeoutMs: text.isRead ? limits.readTimeoutMs : limits.writeTimeoutMs,
          maxRowsSetting: "SQLGATE_PSDB_MAX_ROWS",
          maxBytesSetting: "SQLGATE_PSDB_MAX_RESULT_BYTES",
        });
        result = queryResultOf(raw);
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
        await core.sessions.release(token).catch(() => {});
      }
      if (token !== undefined && !core.sessions.isOpen(token)) token = undefined;
      inTransaction = token !== undefined;
    }
    return create(ExecuteResponseSchema, {
      session: sessions.sessionFor(token, {
        database: core.database,
        inTransaction,
        lastInsertId,
      }),
      result,
      error,
      timing: (performance.now() - started) / 1000,
    });
  };

  return {
    async createSession(_req, ctx) {
      const core = coreFrom(ctx.values);
      return {
        branch: core.database,
        user: { username: "", psid: "", role: 0 },
        session: sessions.sessionFor(undefined, {
          database: core.database,
          inTransaction: false,
          lastInsertId: 0n,
        }),
      };
    },

    async execute(req, ctx) {
      const started = performance.now();
      const core = coreFrom(ctx.values);
      let token: string | undefined;
      try {
        token = sessions.pinnedToken(req.session);
      } catch (err) {
        return create(ExecuteResponseSchema, {
          session: sessions.sessionFor(undefined, {
            database: core.database,
            inTransaction: false,
            lastInsertId: 0n,
          }),
          error: rpcErrorFrom(err),
        });
      }
      return execute(core, req, token, ctx, started);
    },

    async prepare(req, ctx) {
      const core = coreFrom(ctx.values);
      const facts = { database: core.database, inTransaction: false, lastInsertId: 0n };
      let token: string | undefined;
      try {
        token = sessions.pinnedToken(req.session);
        const source =
          token === undefined ? core.pool : core.sessions.source(token, { exclusive: true });
        const described = await core.sql.describe(source, req.query, callOptions(ctx));
        return {
          session: sessions.sessionFor(token, { ...facts, inTransaction: token !== undefined }),
          fields: described.columns.map(vitessField),
          paramsCount: described.parameterCount,
        };
      } catch (err) {
        if (token !== undefined && !core.sessions.isOpen(token)) token = undefined;
        return {
          session: sessions.sessionFor(token, { ...facts, inTransaction: token !== undefined }),
          error: rpcErrorFrom(err),
        };
      }
    },

    async closeSession(req, ctx) {
      const core = coreFrom(ctx.values);
      const facts = { database: core.database, inTransaction: false, lastInsertId: 0n };
      try {
        const token = sessions.pinnedToken(req.session);
        if (token !== undefined && core.sessions.isOpen(token)) await core.sessions.release(token);
        return { session: sessions.sessionFor(undefined, facts) };
      } catch (err) {
        return { session: sessions.sessionFor(undefined, facts), error: rpcErrorFrom(err) };
      }
    },
  };
}

const noSummary = {
  rowsAffected: 0n,
  lastInsertId: 0n,
  warningCount: 0,
  info: "",
  outsideTransaction: true,
  inTransaction: false,
};
