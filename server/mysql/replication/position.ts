/**
 * Replication positions: how far a server's history goes, as GTIDs.
 *
 * A position is a list of streams of transactions, each with the number of
 * the last transaction it includes:
 * - MariaDB: `domain-server-sequence` per replication domain (`0-1-42`), as
 *   `@@last_gtid`, `@@gtid_binlog_pos` and `MASTER_GTID_WAIT` spell them;
 * - MySQL: `uuid:1-N` per source server, a GTID set that
 *   `WAIT_FOR_EXECUTED_GTID_SET` takes. A transaction's own GTID (`uuid:N`,
 *   from session tracking) becomes `uuid:1-N`: reading it after everything
 *   before it is what read-your-writes needs anyway. Of a server's
 *   `gtid_executed`, only the unbroken run from 1 counts (a gap means an
 *   earlier transaction is still missing).
 * A server has reached a position when each of its streams is at least that
 * far. The empty position, before any write, is reached by every server.
 * The SDK combines positions the same way (client/src/consistency.ts), so
 * the spelling is part of the API: one number per stream, the largest wins.
 */

/** One stream's place in a position: the text before its number, and the number. */
interface StreamMark {
  readonly prefix: string;
  readonly sequence: bigint;
}

/** A parsed position: each stream (MariaDB domain, MySQL source UUID) and its mark. */
export type Position = ReadonlyMap<string, StreamMark>;

const mariadbGtid = /^(\d+)-(\d+)-(\d+)$/;
const mysqlGtidSet = /^([0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}):(.+)$/i;

/** Parses `text` (empty: no position); undefined if it is neither engine's spelling. */
export function parsePosition(text: string): Position | undefined {
  const streams = new Map<string, StreamMark>();
  for (const item of text.split(",")) {
    const gtid = item.trim();
    if (gtid === "") continue;
    const mariadb = mariadbGtid.exec(gtid);
    if (mariadb !== null) {
      const [, domain, server, sequence] = mariadb as unknown as [string, string, string, string];
      mark(streams, `domain ${domain}`, {
        prefix: `${domain}-${server}-`,
        sequence: BigInt(sequence),
      });
      continue;
    }
    const mysql = mysqlGtidSet.exec(gtid);
    if (mysql === null) return undefined;
    const [, uuid, intervals] = mysql as unknown as [string, string, string];
    const sequence = runFromOne(intervals);
    if (sequence === undefined) return undefined;
    const source = uuid.toLowerCase();
    mark(streams, source, { prefix: `${source}:1-`, sequence });
  }
  return streams;
}

/**
 * The end of the run of transactions from 1 in MySQL intervals (`1-42:45`
 * gives 42); a lone `N` is a transaction's own GTID and gives N.
 */
function runFromOne(intervals: string): bigint | undefined {
  const parts = intervals.split(":");
  if (parts.length === 1 && /^\d+$/.test(parts[0] as string)) return BigInt(parts[0] as string);
  let end = 0n;
  for (const part of parts) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (match === null) return undefined;
    const first = BigInt(match[1] as string);
    const last = match[2] === undefined ? first : BigInt(match[2]);
    if (first <= end + 1n && last > end) end = last;
  }
  return end;
}

/** Records `next` for `stream` unless a later mark is there already. */
function mark(streams: Map<string, StreamMark>, stream: string, next: StreamMark): void {
  if ((streams.get(stream)?.sequence ?? -1n) < next.sequence) streams.set(stream, next);
}

/** Whether a server at `current` has applied everything `wanted` names. */
export function hasReached(current: Position, wanted: Position): boolean {
  for (const [stream, { sequence }] of wanted) {
    if ((current.get(stream)?.sequence ?? -1n) < sequence) return false;
  }
  return true;
}

/** A position at least as far as both. */
export function combine(a: Position, b: Position): Position {
  const streams = new Map(a);
  for (const [stream, next] of b) mark(streams, stream, next);
  return streams;
}

/** The engines' spelling of `position`. */
export function formatPosition(position: Position): string {
  return [...position.values()].map(({ prefix, sequence }) => `${prefix}${sequence}`).join(",");
}
