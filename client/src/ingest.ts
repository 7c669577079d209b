/**
 * `client.ingest`: bulk writes through IngestService, one call at a time
 * (`write`) or as a buffered stream of rows (`writer`).
 */
import type { Client } from "@connectrpc/connect";
import type { IngestService } from "../../gen/sqlgate/v1/ingest_pb.js";
import {
  createIngestWriter,
  type IngestWriter,
  type IngestWriterOptions,
} from "./ingest-writer.js";
import { rowFromJs } from "./values.js";
import {
  durabilityFromOption,
  onConflictFromOption,
  type WriteDurability,
  type WriteOnConflict,
} from "./write-policy.js";

export interface WriteOptions {
  /**
   * Names this batch: if a batch with the same key was applied already (a
   * retry after a lost answer), the gateway acknowledges it as a duplicate and
   * writes nothing. Without a key, sending a batch again writes it again.
   */
  readonly idempotencyKey?: string;
  /** When the call returns; the gateway's default (`"committed"`) if unset. */
  readonly durability?: WriteDurability;
  /** What a row with an existing key does; the gateway's default (`"error"`) if unset. */
  readonly onConflict?: WriteOnConflict;
  /** The call's deadline (the gateway caps it at SQLGATE_MAX_TIMEOUT_MS). */
  readonly timeoutMs?: number;
  /** Cancels the call. */
  readonly signal?: AbortSignal;
}

/** The gateway's answer to one `write`. */
export interface WriteResult {
  /** Rows applied; 0 for a batch skipped as a duplicate. */
  readonly rowsWritten: number;
  /** Gateway batches (MySQL transactions, or log appends) that held the rows. */
  readonly batches: number;
  /** 1 if the batch's idempotency key had been applied already. */
  readonly duplicateBatches: number;
  /** COMMITTED, with read replicas: the replication position of the rows' batch; else "". */
  readonly position: string;
}

export interface IngestClient {
  /**
   * Writes `rows` (arrays of values for `columns`, converted as `valueFromJs`
   * says) in one unary call, which works from any fetch-based runtime. It is
   * not retried: pass an `idempotencyKey` and retry it yourself if the
   * outcome of a failed call must be settled.
   */
  write(
    table: string,
    columns: readonly string[],
    rows: readonly (readonly unknown[])[],
    options?: WriteOptions,
  ): Promise<WriteResult>;
  /**
   * A buffered writer for a steady flow of rows: chunks, streams, backpressure
   * and exactly-once retries (see `IngestWriterOptions`). Close it to flush.
   */
  writer(table: string, columns: readonly string[], options?: IngestWriterOptions): IngestWriter;
}

/**
 * `client.ingest` over IngestService; `seen` takes each answer's replication
 * position, so that later reads through replicas see the rows.
 */
export function createIngestClient(
  client: Client<typeof IngestService>,
  seen: (position: string) => void = () => {},
): IngestClient {
  return {
    async write(table, columns, rows, options = {}) {
      const response = await client.write(
        {
          table,
          columns: [...columns],
          rows: rows.map((row) => rowFromJs(row, columns)),
          idempotencyKey: options.idempotencyKey ?? "",
          durability: durabilityFromOption(options.durability),
          onConflict: onConflictFromOption(options.onConflict),
        },
        {
          ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
          ...(options.signal !== undefined ? { signal: options.signal } : {}),
        },
      );
      seen(response.position);
      return {
        rowsWritten: Number(response.rowsWritten),
        batches: response.batches,
        duplicateBatches: response.duplicateBatches,
        position: response.position,
      };
    },
    writer: (table, columns, options) => createIngestWriter(client, table, columns, options),
  };
}
