/**
 * What change streams need from the server before a binlog reader can start,
 * and whether a saved position can still be resumed.
 *
 * The reader decodes rows from the binlog (binlog-reader.ts), so the server
 * must write one (`log_bin`), as rows (`binlog_format=ROW`), with every
 * column of the row before and after (`binlog_row_image=FULL`: updates and
 * deletes carry the whole old row), and with each table's column names and
 * types in the binlog itself (`binlog_row_metadata=FULL`, MariaDB 10.5+ and
 * MySQL 8.0.1+): without it the decoder names columns after today's table,
 * so a row written before an `ALTER TABLE ... RENAME COLUMN` replays under
 * the new name (measured, shared/scale-notes.md).
 * https://mariadb.com/kb/en/replication-and-binary-log-system-variables/
 */

/** Runs one SQL statement and gives its rows as arrays of column values. */
export type BinlogQuery = (sql: string) => Promise<readonly (readonly unknown[])[]>;

/** A server setting that keeps change streams from working. */
export interface BinlogSettingProblem {
  /** The system variable, e.g. `binlog_format`. */
  readonly setting: string;
  /** Its current value; undefined when the server has no such variable. */
  readonly value: string | undefined;
  /** The value change streams need. */
  readonly expected: string;
  /** One line for people, naming the setting, its value and the fix. */
  readonly message: string;
}

/** The settings every server needs, with the value each must have. */
const required: readonly (readonly [setting: string, expected: string, why: string])[] = [
  ["log_bin", "ON", "no binlog is written"],
  ["binlog_format", "ROW", "changes are logged as statements, not rows"],
  ["binlog_row_image", "FULL", "updates and deletes do not log the whole row"],
  [
    "binlog_row_metadata",
    "FULL",
    "column names come from today's table, not from the binlog (wrong after a rename)",
  ],
];

/**
 * Settings only some servers have (MySQL 8.0), which must keep their
 * defaults: compressed transactions and partial JSON updates are events the
 * decoder cannot read, so their rows would be lost.
 */
const optional: readonly (readonly [setting: string, expected: string, why: string])[] = [
  ["binlog_transaction_compression", "OFF", "compressed transactions cannot be decoded"],
  ["binlog_row_value_options", "", "partial JSON updates cannot be decoded"],
];

/**
 * Checks the server's binlog settings for change streams; resolves with
 * every problem at once (empty when all is well), so an operator fixes them
 * in one go. Needs no privilege beyond connecting.
 */
export async function checkBinlogSettings(query: BinlogQuery): Promise<BinlogSettingProblem[]> {
  const names = [...required, ...optional].map(([setting]) => `'${setting}'`).join(",");
  const rows = await query(`SHOW GLOBAL VARIABLES WHERE Variable_name IN (${names})`);
  const values = new Map(rows.map((row) => [String(row[0]).toLowerCase(), String(row[1] ?? "")]));
  const problems: BinlogSettingProblem[] = [];
  const check = (setting: string, expected: string, why: string, mustExist: boolean) => {
    const value = values.get(setting);
    if (value === undefined && !mustExist) return;
    if (value !== undefined && value.toUpperCase() === expected) return;
    const shown = value === undefined ? "unsupported by this server" : `'${value}'`;
    problems.push({
      setting,
      value,
      expected,
      message: `${setting} is ${shown}, needs '${expected}': ${why}`,
    });
  };
  for (const [setting, expected, why] of required) check(setting, expected, why, true);
  for (const [setting, expected, why] of optional) check(setting, expected, why, false);
  return problems;
}

/**
 * The server options that give an embedded MariaDB (server/devdb) what
 * checkBinlogSettings asks for: binlog files `binlog.NNNNNN` in the data
 * directory, rows with full images and full metadata, and server id 1 (a
 * binlog needs a server id; binlog readers must each use another one).
 * Files are kept until purged (`expire_logs_days` stays 0).
 */
export const binlogServerArgs: readonly string[] = Object.freeze([
  "--log-bin=binlog",
  "--binlog-format=ROW",
  "--binlog-row-image=FULL",
  "--binlog-row-metadata=FULL",
  "--server-id=1",
]);

/** Whether a saved position can still be resumed, and why not. */
export interface BinlogPositionCheck {
  readonly available: boolean;
  /** Why the server cannot stream from the position (when not available). */
  readonly reason?: string;
  /** The position at the start of the oldest binlog file still on the server. */
  readonly oldest: string;
  /** The position after the last transaction in the binlog (`@@gtid_binlog_pos`). */
  readonly current: string;
}

/** `domain-server-sequence` entries, e.g. `0-1-42,1-2-7`. */
interface Gtid {
  readonly domain: string;
  readonly server: string;
  readonly sequence: bigint;
}

function parseGtids(text: string): Gtid[] {
  return text
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "")
    .map((item) => {
      const match = /^(\d+)-(\d+)-(\d+)$/.exec(item);
      if (match === null) throw new Error(`not a MariaDB GTID position: '${text}'`);
      return {
        domain: match[1] as string,
        server: match[2] as string,
        sequence: BigInt(match[3] as string),
      };
    });
}

/** The highest sequence number per domain. */
function lastPerDomain(gtids: readonly Gtid[]): Map<string, bigint> {
  const last = new Map<string, bigint>();
  for (const { domain, sequence } of gtids) {
    if ((last.get(domain) ?? -1n) < sequence) last.set(domain, sequence);
  }
  return last;
}

/**
 * Whether a MariaDB server can stream from `position` (a GTID position as a
 * binlog reader saves it; `''` means from the very first transaction), so a
 * caller can tell "resume" from "take a new snapshot" before starting a
 * reader, rather than learn it from the reader's fatal error 1236.
 *
 * MariaDB streams from a position when, in every replication domain, the
 * binlog still holds everything after it: the position is not before the
 * oldest file's start, which `BINLOG_GTID_POS(<oldest file>, 4)` gives (the
 * file's Gtid_list event, "everything before this file"), and not after the
 * newest transaction of that domain (`@@gtid_binlog_state`). A domain the
 * oldest file already continues but the position lacks was purged from its
 * start. Sequence numbers are compared per domain, as `gtid_strict_mode`
 * guarantees them to grow; without strict mode the server's own search may
 * still refuse a position this check accepts (a diverged server id).
 * Needs `BINLOG MONITOR` (MariaDB 10.5+) for `SHOW BINARY LOGS`.
 */
export async function checkBinlogPosition(
  query: BinlogQuery,
  position: string,
): Promise<BinlogPositionCheck> {
  const wanted = parseGtids(position);
  const files = await query("SHOW BINARY LOGS");
  const [[current = "", state = ""] = []] = await query(
    "SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_binlog_state",
  );
  const oldestFile = files[0]?.[0];
  if (oldestFile === undefined) {
    return { available: false, reason: "the server has no binlog files", oldest: "", current: "" };
  }
  const [[oldest = ""] = []] = await query(
    `SELECT BINLOG_GTID_POS('${String(oldestFile).replace(/'/g, "''")}', 4)`,
  );
  const result = { oldest: String(oldest ?? ""), current: String(current ?? "") };
  const since = lastPerDomain(parseGtids(result.oldest));
  const until = lastPerDomain(parseGtids(String(state ?? "")));
  const at = lastPerDomain(wanted);
  const unavailable = (reason: string) => ({ available: false, reason, ...result });
  for (const [domain, sequence] of at) {
    const last = until.get(domain);
    if (last === undefined) {
      return unavailable(`domain ${domain} has no transactions in this server's binlog`);
    }
    if (sequence > last) {
      return unavailable(
        `domain ${domain} is at ${sequence} in the position but only at ${last} in the binlog`,
      );
    }
    const first = since.get(domain);
    if (first !== undefined && sequence < first) {
      return unavailable(
        `domain ${domain}: transactions after ${sequence} up to ${first} were purged from the binlog`,
      );
    }
  }
  for (const [domain, first] of since) {
    if (!at.has(domain)) {
      return unavailable(
        `domain ${domain}: the position has none of it, and transactions up to ${first} were purged`,
      );
    }
  }
  return { available: true, ...result };
}
