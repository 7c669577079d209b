/**
 * Runs one statement sent as text (its values already in it) on one
 * connection, within a time limit (see running-statement.ts), and collects
 * its result as MySQL sent it: each row's cells as raw bytes in MySQL's text
 * form, back to back, with their lengths. This is the row shape of
 * PlanetScale's API (Vitess's `Row`), built without converting any value.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { PoolConnection } from "mysql2";
import type { MysqlField } from "./result-columns.js";
import {
  type QueryKiller,
  type RunningStatement,
  type StatementSummary,
  startStatement,
  summaryOf,
} from "./running-statement.js";

/** One row: each cell's byte length (-1 for NULL) and the cells' bytes back to back. */
export interface RawRow {
  readonly lengths: number[];
  readonly values: Uint8Array;
}

export interface RawResult extends StatementSummary {
  readonly columns: readonly MysqlField[];
  readonly rows: RawRow[];
}

export interface RawLimits {
  /** More rows than this fail the statement (`aborted`), as Vitess does. */
  readonly maxRows: number;
  /** More bytes of values than this fail the statement (`aborted`). */
  readonly maxBytes: number;
  readonly timeoutMs: number;
  /** The settings that set the limits, named in their errors. */
  readonly maxRowsSetting: string;
  readonly maxBytesSetting: string;
}

const noValues = new Uint8Array(0);

function rawRow(cells: readonly (Buffer | null)[]): RawRow {
  const lengths = new Array<number>(cells.length);
  let total = 0;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells[i];
    if (cell === null || cell === undefined) {
      lengths[i] = -1;
    } else {
      lengths[i] = cell.byteLength;
      total += cell.byteLength;
    }
  }
  if (total === 0) return { lengths, values: noValues };
  const values = Buffer.allocUnsafe(total);
  let at = 0;
  for (const cell of cells) {
    if (cell) at += cell.copy(values, at);
  }
  return { lengths, values };
}

/**
 * Runs `sql` as text and collects its whole result. With `typeCast: false`
 * mysql2 hands over each cell's bytes untouched (the connection's
 * character_set_results, utf8mb4, makes text UTF-8 whatever the column's
 * charset), so no value is parsed or re-encoded.
 */
export function executeText(
  conn: PoolConnection,
  killer: QueryKiller,
  sql: string,
  limits: RawLimits,
  signal: AbortSignal | undefined,
): Promise<RawResult> {
  return new Promise<RawResult>((resolve, reject) => {
    let columns: readonly MysqlField[] = [];
    const rows: RawRow[] = [];
    let bytes = 0;
    let running: RunningStatement | undefined;
    const start = async (c: PoolConnection) => ({
      command: c.query({
        sql,
        rowsAsArray: true,
        typeCast: false,
      }) as unknown as NodeJS.EventEmitter,
    });
    startStatement(conn, killer, start, limits.timeoutMs, signal, {
      onColumns(fields) {
        columns = fields;
      },
      onRow(cells) {
        if (running?.stopping) return;
        if (rows.length >= limits.maxRows) {
          running?.stop(
            new ConnectError(
              `Row count exceeded ${limits.maxRows} (${limits.maxRowsSetting}); select fewer rows, or page with LIMIT`,
              Code.Aborted,
            ),
          );
          return;
        }
        const row = rawRow(cells as (Buffer | null)[]);
        bytes += row.values.byteLength;
        if (bytes > limits.maxBytes) {
          running?.stop(
            new ConnectError(
              `the result is larger than ${limits.maxBytes} bytes (${limits.maxBytesSetting}); select fewer rows or columns`,
              Code.Aborted,
            ),
          );
          return;
        }
        rows.push(row);
      },
      onEnd(error, header) {
        if (error !== undefined) reject(error);
        else resolve({ columns, rows, ...summaryOf(header) });
      },
    }).then((r) => {
      running = r;
    }, reject);
  });
}
