/**
 * `sqlgate.v1.ChangeService`: a credential's view of the change feed. Table
 * patterns are resolved against its database, and a credential confined to
 * one database follows only that database's tables.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { ChangeService } from "../../gen/sqlgate/v1/changes_pb.js";
import type { ChangeMessage } from "../changes/change-messages.js";
import { createTableAccess, type TableAccess } from "../changes/table-access.js";
import { tableFilter } from "../changes/table-filter.js";
import { principalFrom } from "../principal.js";
import { coreFrom, type Scope } from "./context-values.js";

/** How long a credential's right to read a table is trusted before MySQL is asked again. */
const accessTtlMs = 30_000;
const accessTimeoutMs = 5_000;

/** One access check per set of pools, i.e. per MySQL account and database. */
const accessByScope = new WeakMap<Scope, TableAccess>();

function accessOf(scope: Scope): TableAccess {
  let access = accessByScope.get(scope);
  if (access === undefined) {
    access = createTableAccess({
      pool: scope.pool,
      ttlMs: accessTtlMs,
      timeoutMs: accessTimeoutMs,
    });
    accessByScope.set(scope, access);
  }
  return access;
}

/**
 * `messages` with the changes of tables `access` may not read left out; a
 * transaction left with nothing is not sent (a part always is, so that the
 * parts still end with the last).
 */
async function* readableOnly(
  messages: AsyncGenerator<ChangeMessage>,
  access: TableAccess,
): AsyncGenerator<ChangeMessage> {
  for await (const message of messages) {
    const event = message.event;
    if (event.case !== "transaction") {
      yield message;
      continue;
    }
    const all = event.value.changes;
    const readable: boolean[] = [];
    for (const change of all) {
      readable.push(await access.mayRead(change.database ?? "", change.table ?? ""));
    }
    const changes = all.filter((_, i) => readable[i]);
    if (changes.length === 0 && !event.value.part) continue;
    const { position, commitTime, part, lastPart } = event.value;
    yield {
      event: { case: "transaction", value: { position, commitTime, part, lastPart, changes } },
    };
  }
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
    const scope = core.scopeFor(principal);
    const tables = tableFilter(req.tables, scope.database, principal.database);
    const messages = changes.feed.subscribe({
      tables,
      from: req.from,
      includeBefore: req.includeBefore,
      heartbeatMs: req.heartbeatMs > 0 ? req.heartbeatMs : changes.heartbeatMs,
      // A stream has no natural end: it ends when the gateway starts closing.
      signal: AbortSignal.any([ctx.signal, core.closing]),
    });
    // A credential with a MySQL account of its own sees what that account may read.
    yield* principal.account === undefined ? messages : readableOnly(messages, accessOf(scope));
  },
};
