/**
 * `sqlgate.v1.ChangeService`: a credential's view of the change feed. Table
 * patterns are resolved against its database, and a credential confined to
 * one database follows only that database's tables.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { ChangeService } from "../../gen/sqlgate/v1/changes_pb.js";
import type { TableFilter } from "../changes/change-feed.js";
import { principalFrom } from "../principal.js";
import { coreFrom } from "./context-values.js";

/**
 * A filter from `db.table`, `table` (in `database`), `db.*` or `*` patterns;
 * with `confinedTo`, patterns may name no other database.
 */
export function tableFilter(
  patterns: readonly string[],
  database: string,
  confinedTo: string | undefined,
): TableFilter {
  const wanted = (patterns.length === 0 ? ["*"] : patterns).map((pattern) => {
    const dot = pattern.indexOf(".");
    const db = pattern === "*" ? (confinedTo ?? "*") : dot < 0 ? database : pattern.slice(0, dot);
    const table = pattern === "*" ? "*" : dot < 0 ? pattern : pattern.slice(dot + 1);
    if (db === "" || table === "") {
      throw new ConnectError(
        `tables: "${pattern}" is not db.table, table, db.* or *`,
        Code.InvalidArgument,
      );
    }
    if (confinedTo !== undefined && db !== confinedTo) {
      throw new ConnectError(
        `tables: "${pattern}" is outside database ${confinedTo}, the only one this credential may read`,
        Code.PermissionDenied,
      );
    }
    return { db, table };
  });
  return {
    matches: (db, table) =>
      wanted.some((w) => (w.db === "*" || w.db === db) && (w.table === "*" || w.table === table)),
    followsDatabase: (db) => wanted.some((w) => w.db === "*" || w.db === db),
  };
}

export const changeService: ServiceImpl<typeof ChangeService> = {
  async *subscribe(req, ctx) {
    const core = coreFrom(ctx.values);
    const principal = principalFrom(ctx.values);
    const changes = core.changes;
    if (changes === undefined) {
      throw new ConnectError(
        "change streams are not available on this gateway",
        Code.Unimplemented,
      );
    }
    const tables = tableFilter(req.tables, core.scopeFor(principal).database, principal.database);
    yield* changes.feed.subscribe({
      tables,
      from: req.from,
      includeBefore: req.includeBefore,
      heartbeatMs: req.heartbeatMs > 0 ? req.heartbeatMs : changes.heartbeatMs,
      // A stream has no natural end: it ends when the gateway starts closing.
      signal: AbortSignal.any([ctx.signal, core.closing]),
    });
  },
};
