/**
 * One BUFFERED call as a log record: a one-line JSON header naming the target
 * and the idempotency key, then the rows as the SQL text that the flusher will
 * send (sql-literal.ts), so that a replay after a crash does no decoding and
 * writes exactly the bytes that were acknowledged.
 */
import type { ConflictPolicy, IngestTarget } from "../ingest-target.js";
import type { RenderedRows } from "../sql-literal.js";

export interface LoggedWrite {
  readonly database: string;
  readonly table: string;
  readonly columns: readonly string[];
  readonly onConflict: ConflictPolicy;
  readonly idempotencyKey: string | undefined;
  readonly rows: RenderedRows;
}

interface Header {
  d: string;
  t: string;
  c: string[];
  o: ConflictPolicy;
  k?: string;
  n: number;
  /** Byte length of each chunk of rows. */
  b: number[];
  l: number;
}

export function encodeLogRecord(
  target: IngestTarget,
  rows: RenderedRows,
  idempotencyKey: string | undefined,
): Buffer {
  const header: Header = {
    d: target.database,
    t: target.table,
    c: [...target.columns],
    o: target.onConflict,
    n: rows.rowCount,
    b: [...rows.chunkBytes],
    l: rows.longestRowBytes,
  };
  if (idempotencyKey !== undefined) header.k = idempotencyKey;
  return Buffer.concat([
    Buffer.from(`${JSON.stringify(header)}\n`),
    ...rows.chunks.map((c) => Buffer.from(c)),
  ]);
}

/** Throws if `payload` is not a record written by encodeLogRecord. */
export function decodeLogRecord(payload: Buffer): LoggedWrite {
  const newline = payload.indexOf(10);
  if (newline === -1) throw new Error("log record without a header");
  const header = JSON.parse(payload.subarray(0, newline).toString()) as Header;
  const chunks: string[] = [];
  let offset = newline + 1;
  for (const length of header.b) {
    chunks.push(payload.subarray(offset, offset + length).toString());
    offset += length;
  }
  if (offset !== payload.length) throw new Error("log record rows do not match their header");
  return {
    database: header.d,
    table: header.t,
    columns: header.c,
    onConflict: header.o,
    idempotencyKey: header.k,
    rows: {
      chunks,
      chunkBytes: header.b,
      rowCount: header.n,
      bytes: payload.length - newline - 1,
      longestRowBytes: header.l,
    },
  };
}
