/**
 * Read consistency with MySQL replicas behind the gateway.
 *
 * Every response that wrote carries `position`, the primary's replication
 * position after the write. The client keeps the newest one it has seen and
 * sends it as `minPosition` with each read outside a transaction: a replica
 * serves the read only once it has applied that write, else the primary does.
 * So a client reads its own writes through replicas with no code of its own.
 *
 * Positions are lists of streams (a MariaDB domain `d-s-N`, a MySQL source
 * `uuid:1-N`), each with the number of its last transaction; the newest of
 * two positions takes the larger number per stream, as the gateway does
 * (server/mysql/replication/position.ts).
 */
import { ReadFrom } from "../../gen/sqlgate/v1/database_pb.js";

/**
 * Where a client's reads go:
 * - `"strong"`: always the primary.
 * - `"read-your-writes"`: a replica that has applied this client's newest
 *   write, else the primary.
 * - `"eventual"`: any usable replica, however far behind (within the
 *   gateway's SQLGATE_REPLICA_MAX_LAG_MS).
 * Unset (a client without `withConsistency`): the gateway's
 * SQLGATE_READ_FROM decides, and reads that go to a replica are
 * read-your-writes.
 */
export type Consistency = "strong" | "read-your-writes" | "eventual";

/** The newest position a client has seen. */
export interface PositionTracker {
  readonly newest: string;
  /** Takes in a response's `position` ("" changes nothing). */
  see(position: string): void;
}

export function createPositionTracker(): PositionTracker {
  let newest = "";
  return {
    get newest() {
      return newest;
    },
    see(position) {
      if (position !== "" && position !== newest) newest = combinePositions(newest, position);
    },
  };
}

/** The stream a GTID item belongs to, and its number; undefined for an unknown spelling. */
function streamOf(item: string): { stream: string; sequence: bigint } | undefined {
  const mariadb = /^(\d+)-\d+-(\d+)$/.exec(item);
  if (mariadb !== null)
    return { stream: mariadb[1] as string, sequence: BigInt(mariadb[2] as string) };
  const mysql = /^([0-9a-f-]+):(?:1-)?(\d+)$/i.exec(item);
  if (mysql !== null) {
    return { stream: (mysql[1] as string).toLowerCase(), sequence: BigInt(mysql[2] as string) };
  }
  return undefined;
}

/** A position at least as far as both `a` and `b`. */
export function combinePositions(a: string, b: string): string {
  const streams = new Map<string, { item: string; sequence: bigint }>();
  for (const item of `${a},${b}`.split(",")) {
    if (item === "") continue;
    const parsed = streamOf(item);
    // A spelling this client does not know: trust the gateway's latest word.
    if (parsed === undefined) return b;
    const known = streams.get(parsed.stream);
    if (known === undefined || known.sequence < parsed.sequence) {
      streams.set(parsed.stream, { item, sequence: parsed.sequence });
    }
  }
  return [...streams.values()].map((s) => s.item).join(",");
}

/** `options.readFrom` and `options.minPosition` of a read, under `consistency`. */
export function readRouting(
  consistency: Consistency | undefined,
  tracker: PositionTracker,
): { readFrom: ReadFrom; minPosition: string } {
  switch (consistency) {
    case undefined:
      return { readFrom: ReadFrom.UNSPECIFIED, minPosition: tracker.newest };
    case "strong":
      return { readFrom: ReadFrom.PRIMARY, minPosition: "" };
    case "read-your-writes":
      return { readFrom: ReadFrom.REPLICA, minPosition: tracker.newest };
    case "eventual":
      return { readFrom: ReadFrom.REPLICA, minPosition: "" };
    default:
      throw new TypeError(
        `consistency: expected "strong", "read-your-writes" or "eventual", got ${String(consistency)}`,
      );
  }
}
