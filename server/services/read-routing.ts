/**
 * Where a DatabaseService call's statements run: its transaction's
 * connection, the primary's pool, or a replica (ExecuteOptions.read_from and
 * min_position, SQLGATE_READ_FROM). The choice of replica is the read
 * router's (mysql/replication/); this decides whether to ask it.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { type ExecuteOptions, ReadFrom } from "../../gen/sqlgate/v1/database_pb.js";
import type { ConnectionSource } from "../mysql/connection-source.js";
import { type Position, parsePosition } from "../mysql/replication/position.js";
import { primaryName } from "../mysql/replication/read-router.js";
import type { Principal } from "../principal.js";
import { parseSqlText } from "../sql/sql-text.js";
import type { GatewayCore } from "./context-values.js";

/** A call's route. */
export interface CallRoute {
  readonly source: ConnectionSource;
  /** Read-only wherever it lands: it asked for (or was given) a replica. */
  readonly readOnly: boolean;
  /** Who served it, for `served_by`; undefined without replicas or in a transaction. */
  servedBy(): string | undefined;
}

/** What a call holds: its session, options, and statements (read only when needed). */
export interface RoutedCall {
  readonly session: string;
  readonly options?: ExecuteOptions | undefined;
  readonly statements: readonly { readonly sql: string }[];
  /** An atomic batch: one transaction, which runs on the primary. */
  readonly atomic?: boolean;
}

const notServed = () => undefined;
const servedByPrimary = () => primaryName;

export function routeCall(core: GatewayCore, principal: Principal, call: RoutedCall): CallRoute {
  const { options } = call;
  const readFrom = options?.readFrom ?? ReadFrom.UNSPECIFIED;
  const minPosition = options?.minPosition ?? "";
  if (call.session !== "") {
    if (options?.readOnly) {
      throw new ConnectError(
        "options.readOnly does not apply inside a transaction: begin it with readOnly instead",
        Code.InvalidArgument,
      );
    }
    if (readFrom !== ReadFrom.UNSPECIFIED || minPosition !== "") {
      throw new ConnectError(
        "options.readFrom and options.minPosition do not apply inside a transaction: begin a read-only transaction with readFrom instead",
        Code.InvalidArgument,
      );
    }
    return {
      source: core.sessions.source(call.session, principal.name),
      readOnly: false,
      servedBy: notServed,
    };
  }
  if (readFrom === ReadFrom.REPLICA && call.atomic) {
    throw new ConnectError(
      "options.readFrom REPLICA does not apply to an atomic batch (a transaction, run on the primary)",
      Code.InvalidArgument,
    );
  }
  const scope = core.scopeFor(principal);
  const replicas = core.replicaReads;
  // Checked even when no replica will serve: a bad position is the caller's mistake.
  const position = positionFrom(minPosition);
  const toReplica =
    readFrom === ReadFrom.REPLICA ||
    (readFrom === ReadFrom.UNSPECIFIED &&
      replicas?.byDefault === true &&
      call.atomic !== true &&
      call.statements.every(({ sql }) => parseSqlText(sql).isRead));
  if (replicas === undefined || !toReplica) {
    return {
      source: scope.pool,
      readOnly: toReplica,
      servedBy: replicas === undefined ? notServed : servedByPrimary,
    };
  }
  const route = replicas.router.route(scope.pool, scope.target, position);
  return { source: route, readOnly: true, servedBy: () => route.servedBy };
}

/** The position before any write (shared: most calls give none). */
const noPosition: Position = new Map();

/** `min_position` parsed, or `invalid_argument` for text no gateway returned. */
export function positionFrom(text: string): Position {
  if (text === "") return noPosition;
  const position = parsePosition(text);
  if (position === undefined) {
    throw new ConnectError(
      "options.minPosition is not a replication position: pass the `position` of an earlier response",
      Code.InvalidArgument,
    );
  }
  return position;
}
