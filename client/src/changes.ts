/**
 * Change streams in the SDK: `client.changes.subscribe({ tables })` is an
 * async iterator of committed transactions, schema changes and heartbeats,
 * with rows decoded as `execute` decodes them, that resumes by itself.
 *
 * - Resuming: when the stream breaks (the gateway restarted or went away,
 *   the network dropped, or the gateway ended it for reading too slowly) it
 *   is opened again from the position of the last whole transaction
 *   handed out, so every later transaction arrives and none twice; parts
 *   of a large transaction already handed out are not handed out again.
 *   Attempts back off from 100 ms to 5 s; errors that another attempt would
 *   not cure (a bad table pattern, a missing privilege, a binlog not set up,
 *   a position no longer in the binlog) end the iteration with a
 *   `DatabaseError`.
 * - Ending: `break` out of the loop, or abort `signal`: the call is
 *   cancelled on the gateway at once.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import {
  ChangeOp,
  type ChangeService,
  type RowChange,
  type SubscribeRequest,
  type SubscribeResponse,
} from "../../gen/sqlgate/v1/changes_pb.js";
import { type Field, FieldSchema } from "../../gen/sqlgate/v1/value_pb.js";
import { databaseErrorFrom } from "./database-error.js";
import { createRowDecoder, pickValueOptions, type RowDecoder, type ValueOptions } from "./rows.js";

/** What to follow, and from where. */
export interface SubscribeOptions extends ValueOptions {
  /** `db.table`, `table` (in the credential's database), `db.*` or `*` (the default). */
  readonly tables?: readonly string[];
  /** A `position` from an earlier event or a write's result; unset: from now. */
  readonly from?: string;
  /** Updates carry the row before the change too (deletes always do). */
  readonly includeBefore?: boolean;
  /** Heartbeats this often while nothing changes; unset: the gateway's default. */
  readonly heartbeatMs?: number;
  /** Ends the subscription. */
  readonly signal?: AbortSignal;
  /** Attempts in a row to open the stream again before giving up (default: no limit). */
  readonly maxRetries?: number;
}

export type ChangeOperation = "insert" | "update" | "delete";

/** One row's change, its rows decoded as `execute` decodes rows (objects by column name). */
export interface RowChangeEvent {
  readonly database: string;
  readonly table: string;
  readonly op: ChangeOperation;
  /** The row before the change: deletes, and updates with `includeBefore`. */
  readonly before?: Record<string, unknown>;
  /** The row after the change: inserts and updates. */
  readonly after?: Record<string, unknown>;
}

export type ChangeEvent =
  | {
      readonly type: "transaction";
      /** Resume after this transaction with `from: position`. */
      readonly position: string;
      readonly commitTime: Date;
      readonly changes: readonly RowChangeEvent[];
      /** 1, 2, ... for the parts of a large transaction (0 for a whole one). */
      readonly part: number;
      readonly lastPart: boolean;
    }
  | {
      readonly type: "schema";
      readonly position: string;
      readonly database: string;
      readonly sql: string;
    }
  | { readonly type: "heartbeat"; readonly position: string };

export interface ChangesClient {
  /** Committed changes as they happen; see the module's comment. */
  subscribe(options?: SubscribeOptions): AsyncIterable<ChangeEvent>;
}

/** Codes after which opening the stream again may succeed. */
const resumable = new Set([
  Code.Unavailable,
  Code.Internal,
  Code.Unknown,
  Code.ResourceExhausted,
  Code.DeadlineExceeded,
  Code.Aborted,
]);

const firstBackoffMs = 100;
const maxBackoffMs = 5000;

type ChangeServiceClient = Client<typeof ChangeService>;

/**
 * The raw messages of a subscription that resumes by itself (the SDK's
 * `subscribe` decodes them; the command line prints them as they are).
 */
export async function* resumingSubscription(
  client: ChangeServiceClient,
  request: Omit<Partial<SubscribeRequest>, "$typeName">,
  options: { readonly signal?: AbortSignal; readonly maxRetries?: number } = {},
): AsyncGenerator<SubscribeResponse> {
  const maxRetries = options.maxRetries ?? Number.POSITIVE_INFINITY;
  /** The last whole transaction handed out (where to resume). */
  let from = request.from ?? "";
  /** Parts of the transaction after `from` already handed out. */
  let partsOf = { position: "", last: 0 };
  let failures = 0;
  for (;;) {
    const call = new AbortController();
    const stop = () => call.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", stop, { once: true });
    const callOptions: CallOptions = { signal: call.signal };
    try {
      options.signal?.throwIfAborted();
      for await (const message of client.subscribe({ ...request, from }, callOptions)) {
        failures = 0;
        const event = message.event;
        if (event.case === "transaction") {
          const { position, part, lastPart } = event.value;
          if (part > 0) {
            if (position === partsOf.position && part <= partsOf.last) continue;
            partsOf = { position, last: part };
          }
          if (part === 0 || lastPart) {
            from = position;
            partsOf = { position: "", last: 0 };
          }
        } else if (
          event.case === "schemaChange" ||
          (event.case === "heartbeat" && partsOf.position === "")
        ) {
          // A heartbeat's position too (the stream's start, or past
          // transactions of other tables), unless a transaction is half out.
          from = event.value.position;
        }
        yield message;
      }
      // The gateway ended the stream without an error: it is closing.
      throw new ConnectError("the gateway ended the change stream", Code.Unavailable);
    } catch (err) {
      if (options.signal?.aborted) return;
      const error = ConnectError.from(err);
      failures += 1;
      if (!resumable.has(error.code) || failures > maxRetries) throw error;
      const backoff = Math.min(maxBackoffMs, firstBackoffMs * 2 ** (failures - 1));
      // Reading too slowly: open again at once, from where it stood.
      if (error.code !== Code.ResourceExhausted) await sleep(backoff, options.signal);
      if (options.signal?.aborted) return;
    } finally {
      options.signal?.removeEventListener("abort", stop);
      // A `break` in the caller's loop lands here: the call ends on the gateway too.
      call.abort();
    }
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

const opNames: Record<number, ChangeOperation> = {
  [ChangeOp.INSERT]: "insert",
  [ChangeOp.UPDATE]: "update",
  [ChangeOp.DELETE]: "delete",
};

export function createChangesClient(
  client: ChangeServiceClient,
  defaults: ValueOptions,
): ChangesClient {
  return {
    subscribe(options = {}) {
      const values: ValueOptions = { ...defaults, ...pickValueOptions(options) };
      const decoders = new Map<string, RowDecoder>();
      const decoderFor = (change: RowChange): RowDecoder => {
        const key = `${change.database}.${change.table}:${change.columns.join(",")}:${change.types.join(",")}`;
        let decoder = decoders.get(key);
        if (decoder === undefined) {
          const fields: Field[] = change.columns.map((name, i) =>
            create(FieldSchema, {
              name,
              column: name,
              table: change.table,
              database: change.database,
              type: change.types[i] ?? 0,
            }),
          );
          decoder = createRowDecoder(fields, "object", values);
          // Tables and their shapes are few; a schema change adds one.
          if (decoders.size > 1000) decoders.clear();
          decoders.set(key, decoder);
        }
        return decoder;
      };
      const request = {
        tables: [...(options.tables ?? [])],
        from: options.from ?? "",
        includeBefore: options.includeBefore ?? false,
        heartbeatMs: options.heartbeatMs ?? 0,
      };
      const messages = resumingSubscription(client, request, {
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        ...(options.maxRetries === undefined ? {} : { maxRetries: options.maxRetries }),
      });
      return {
        async *[Symbol.asyncIterator]() {
          try {
            for await (const message of messages) {
              const event = message.event;
              switch (event.case) {
                case "transaction": {
                  const tx = event.value;
                  yield {
                    type: "transaction",
                    position: tx.position,
                    commitTime:
                      tx.commitTime === undefined ? new Date(0) : timestampDate(tx.commitTime),
                    changes: tx.changes.map((change) => {
                      const decode = decoderFor(change);
                      return {
                        database: change.database,
                        table: change.table,
                        op: opNames[change.op] ?? "update",
                        ...(change.before === undefined
                          ? {}
                          : { before: decode(change.before) as Record<string, unknown> }),
                        ...(change.after === undefined
                          ? {}
                          : { after: decode(change.after) as Record<string, unknown> }),
                      };
                    }),
                    part: tx.part,
                    lastPart: tx.lastPart,
                  };
                  break;
                }
                case "schemaChange": {
                  const { position, database, sql } = event.value;
                  yield { type: "schema", position, database, sql };
                  break;
                }
                case "heartbeat":
                  yield { type: "heartbeat", position: event.value.position };
                  break;
              }
            }
          } catch (err) {
            throw databaseErrorFrom(err);
          }
        },
      };
    },
  };
}
