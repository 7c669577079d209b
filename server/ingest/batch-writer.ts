/**
 * Applies one batch of ingest parts (the rows of many calls) in one MySQL
 * transaction: few large multi-row INSERTs, the parts' idempotency keys
 * recorded in the same transaction, one COMMIT.
 *
 * When the batch fails on data (a duplicate key, a NULL into NOT NULL, a value
 * out of range), MySQL does not say which row was at fault, so the batch is
 * rolled back and split in halves, each applied on its own, down to the single
 * part that fails: only that part's call gets the MySQL error; every other
 * part is written. Errors that concern a table as a whole (it is gone, a
 * column is unknown, no privilege) fail every part for that table at once.
 */
import { Code, type ConnectError } from "@connectrpc/connect";
import { type PoolConnection, positionOf, type StateChanges } from "../mysql/database.js";
import { connectErrorFromMysql, isFatal } from "../mysql/errors.js";
import type { IngestTarget } from "./ingest-target.js";
import type { InternalTables } from "./internal-tables.js";
import { type RenderedRows, stringLiteral } from "./sql-literal.js";

/** The rows of one call (or one write-ahead log record) for one target. */
export interface IngestPart {
  readonly target: IngestTarget;
  readonly rows: RenderedRows;
  /** Applied at most once, ever, under this key (recorded with the rows). */
  readonly idempotencyKey: string | undefined;
}

export type PartOutcome =
  | {
      readonly ok: true;
      readonly duplicate: boolean;
      /** The replication position after the batch's commit, when tracked; else "". */
      readonly position: string;
    }
  | { readonly ok: false; readonly error: ConnectError };

export interface BatchWriterOptions {
  readonly tables: InternalTables;
  /** Largest statement sent, in bytes (under MySQL's max_allowed_packet). */
  readonly maxStatementBytes: number;
  /** Drops cached schema for a target whose table changed under us. */
  readonly forgetTarget: (target: IngestTarget) => void;
}

export interface BatchHooks<P extends IngestPart> {
  /** A statement to run in the same transaction as `parts` (e.g. log bookkeeping). */
  readonly recordApplied?: (parts: readonly P[]) => string;
}

/**
 * The connection broke, or MySQL went away, part-way: nothing of the batch is
 * known to be committed, unless `duringCommit`, when it may or may not be.
 */
export class BatchInterrupted extends Error {
  constructor(
    readonly error: ConnectError,
    readonly duringCommit: boolean,
  ) {
    super(error.message, { cause: error });
  }
}

/** Errors that concern a whole table or statement, never one row. */
const tableErrnos: ReadonlySet<number> = new Set([
  1146, // ER_NO_SUCH_TABLE
  1054, // ER_BAD_FIELD_ERROR
  1142, // ER_TABLEACCESS_DENIED_ERROR
  1143, // ER_COLUMNACCESS_DENIED_ERROR
  1044, // ER_DBACCESS_DENIED_ERROR
  1049, // ER_BAD_DB_ERROR
  1036, // ER_OPEN_AS_READONLY
  1290, // ER_OPTION_PREVENTS_STATEMENT (read-only server)
  1792, // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
  1064, // ER_PARSE_ERROR: our statement text, so every row would fail alike
]);

/** Errors after which the same batch may well succeed when tried again at once. */
const retryErrnos: ReadonlySet<number> = new Set([
  1213, // ER_LOCK_DEADLOCK
  1205, // ER_LOCK_WAIT_TIMEOUT
]);

const maxRetries = 3;

export interface BatchWriter {
  /** One outcome per part, in order. Throws BatchInterrupted when MySQL goes away. */
  apply<P extends IngestPart>(
    conn: PoolConnection,
    parts: readonly P[],
    hooks?: BatchHooks<P>,
  ): Promise<PartOutcome[]>;
}

type Phase = "keys" | "rows" | "commit" | "other";

class StatementFailed extends Error {
  constructor(
    override readonly cause: unknown,
    readonly phase: Phase,
    readonly target: IngestTarget | undefined,
  ) {
    super("statement failed", { cause });
  }
}

export function createBatchWriter(options: BatchWriterOptions): BatchWriter {
  const { tables, maxStatementBytes } = options;

  const run = (conn: PoolConnection, sql: string, phase: Phase, target?: IngestTarget) =>
    new Promise<unknown>((resolve, reject) => {
      conn.query({ sql, rowsAsArray: true }, (err, result) =>
        err ? reject(new StatementFailed(err, phase, target)) : resolve(result),
      );
    });

  /** Which of `keys` MySQL has already applied. */
  const appliedKeys = async (conn: PoolConnection, keys: readonly string[]) => {
    const found = new Set<string>();
    if (keys.length === 0) return found;
    const rows = (await run(
      conn,
      `SELECT idempotency_key FROM ${tables.keys} WHERE idempotency_key IN (${keys.map(stringLiteral).join(",")})`,
      "keys",
    )) as [Buffer | string][];
    for (const [key] of rows) found.add(key.toString());
    return found;
  };

  /** INSERT statements for `parts`, packed under maxStatementBytes. */
  const insertStatements = (parts: readonly IngestPart[]) => {
    const byTarget = new Map<IngestTarget, IngestPart[]>();
    for (const part of parts) {
      const list = byTarget.get(part.target);
      if (list === undefined) byTarget.set(part.target, [part]);
      else list.push(part);
    }
    const statements: { sql: string; target: IngestTarget }[] = [];
    for (const [target, list] of byTarget) {
      const overhead = target.insertOverheadBytes;
      let values: string[] = [];
      let size = overhead;
      const flush = () => {
        if (values.length === 0) return;
        statements.push({
          sql: `${target.insertPrefix}${values.join(",")}${target.insertSuffix}`,
          target,
        });
        values = [];
        size = overhead;
      };
      for (const part of list) {
        part.rows.chunks.forEach((chunk, i) => {
          const bytes = part.rows.chunkBytes[i] as number;
          if (values.length > 0 && size + 1 + bytes > maxStatementBytes) flush();
          values.push(chunk);
          size += bytes + 1;
        });
      }
      flush();
    }
    return statements;
  };

  const keyStatement = (parts: readonly IngestPart[]) =>
    `INSERT INTO ${tables.keys} (idempotency_key, target, row_count) VALUES ${parts
      .map(
        (p) =>
          `(${stringLiteral(p.idempotencyKey as string)},${stringLiteral(
            `${p.target.database}.${p.target.table}`,
          )},${p.rows.rowCount})`,
      )
      .join(",")}`;

  /** One attempt at `parts` as one transaction; sets `outcomes` on success. */
  const attempt = async <P extends IngestPart>(
    conn: PoolConnection,
    parts: readonly P[],
    hooks: BatchHooks<P>,
  ): Promise<PartOutcome[]> => {
    const keyed = parts.filter((p) => p.idempotencyKey !== undefined);
    const extra = hooks.recordApplied?.(parts);
    let statements = insertStatements(parts);
    if (keyed.length === 0 && extra === undefined && statements.length === 1) {
      // One statement is atomic by itself: autocommit saves two round trips.
      const only = statements[0] as { sql: string; target: IngestTarget };
      const position = positionOf((await run(conn, only.sql, "rows", only.target)) as StateChanges);
      return parts.map(() => ({ ok: true, duplicate: false, position }));
    }
    await run(conn, "START TRANSACTION", "other");
    let open = true;
    try {
      const applied = await appliedKeys(conn, [
        ...new Set(keyed.map((p) => p.idempotencyKey as string)),
      ]);
      const seen = new Set<string>();
      const duplicates = parts.map((p) => {
        const key = p.idempotencyKey;
        if (key === undefined) return false;
        // A key given twice in one batch (a retry racing its first attempt) applies once.
        const duplicate = applied.has(key) || seen.has(key);
        seen.add(key);
        return duplicate;
      });
      const live = parts.filter((_, i) => !duplicates[i]);
      const liveKeyed = live.filter((p) => p.idempotencyKey !== undefined);
      if (liveKeyed.length > 0) await run(conn, keyStatement(liveKeyed), "keys");
      if (live.length !== parts.length) statements = insertStatements(live);
      for (const s of statements) await run(conn, s.sql, "rows", s.target);
      if (extra !== undefined) await run(conn, extra, "other");
      open = false;
      const position = positionOf((await run(conn, "COMMIT", "commit")) as StateChanges);
      return duplicates.map((duplicate) => ({ ok: true, duplicate, position }));
    } catch (err) {
      if (open && !isFatal((err as StatementFailed).cause)) {
        await run(conn, "ROLLBACK", "other").catch(() => {});
      }
      throw err;
    }
  };

  const apply = async <P extends IngestPart>(
    conn: PoolConnection,
    parts: readonly P[],
    hooks: BatchHooks<P>,
  ): Promise<PartOutcome[]> => {
    for (let retry = 0; ; retry++) {
      try {
        return await attempt(conn, parts, hooks);
      } catch (err) {
        if (!(err instanceof StatementFailed)) throw err;
        const cause = err.cause as { errno?: number };
        const error = connectErrorFromMysql(cause);
        if (isFatal(cause) || error.code === Code.Unavailable) {
          throw new BatchInterrupted(error, err.phase === "commit");
        }
        const errno = cause.errno ?? 0;
        // A concurrent batch (another replica, a racing retry) committed one of
        // our keys after we looked: look again.
        const keyRace = err.phase === "keys" && errno === 1062;
        if ((keyRace || retryErrnos.has(errno)) && retry < maxRetries) continue;
        if (err.target !== undefined && tableErrnos.has(errno)) {
          if (errno === 1146 || errno === 1054) options.forgetTarget(err.target);
          const failing = err.target;
          const rest = parts.filter((p) => p.target !== failing);
          const restOutcomes = rest.length > 0 ? await apply(conn, rest, hooks) : [];
          let next = 0;
          return parts.map((p) =>
            p.target === failing ? { ok: false, error } : (restOutcomes[next++] as PartOutcome),
          );
        }
        if (parts.length === 1) return [{ ok: false, error }];
        const half = Math.ceil(parts.length / 2);
        const first = await apply(conn, parts.slice(0, half), hooks);
        const second = await apply(conn, parts.slice(half), hooks);
        return [...first, ...second];
      }
    }
  };

  return {
    apply: (conn, parts, hooks = {}) => apply(conn, parts, hooks),
  };
}
