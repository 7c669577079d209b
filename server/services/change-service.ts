/**
 * `sqlgate.v1.ChangeService`: a credential's view of the change feed. Table
 * patterns are resolved against its database, and a credential confined to
 * one database follows only that database's tables.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { ChangeService } from "../../gen/sqlgate/v1/changes_pb.js";
import {
  type FeedMessage,
  transactionMessage,
  transactionResponseWire,
} from "../changes/change-messages.js";
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
 * `messages` with the changes of tables `access` may not read left out. A
 * transaction left with nothing is not sent; nor is such a part of a large
 * one, unless it is the last part after others were sent (the parts keep
 * their numbers, so a credential may see 1 and 3 of a transaction).
 */
async function* readableOnly(
  messages: AsyncGenerator<FeedMessage>,
  access: TableAccess,
): AsyncGenerator<FeedMessage> {
  /** The large transaction some of whose parts were sent. */
  let partsSentOf = "";
  for await (const message of messages) {
    // A statement's tables are not checked against the account: such a
    // credential gets no schema changes (their SQL may name other tables).
    if (message.case === "schemaChange") continue;
    if (message.case !== "transaction") {
      yield message;
      continue;
    }
    const slice = message.value;
    const changes: number[] = [];
    for (const i of slice.changes) {
      const change = slice.tx.tx.changes[i];
      if (change !== undefined && (await access.mayRead(change.database, change.table))) {
        changes.push(i);
      }
    }
    if (changes.length === 0) {
      const closesParts = slice.lastPart && partsSentOf === slice.tx.position;
      if (!closesParts) continue;
    } else if (slice.part > 0) {
      partsSentOf = slice.tx.position;
    }
    yield { case: "transaction", value: { ...slice, changes } };
  }
}

/**
 * A feed message as a `SubscribeResponse`: for binary responses the
 * transaction in wire format, encoded once for all its subscribers.
 */
function responseOf(message: FeedMessage, binary: boolean) {
  if (message.case !== "transaction") return { event: message };
  return binary
    ? transactionResponseWire(message.value)
    : { event: { case: "transaction" as const, value: transactionMessage(message.value) } };
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
    const readable =
      principal.account === undefined ? messages : readableOnly(messages, accessOf(scope));
    const binary = !(ctx.requestHeader.get("content-type") ?? "").includes("json");
    for await (const message of readable) yield responseOf(message, binary);
  },
};
