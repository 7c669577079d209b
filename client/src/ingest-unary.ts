/**
 * IngestService.WriteStream played as unary Write calls, for transports that
 * cannot stream a request body (fetch: browsers, edge workers, connect-web).
 *
 * The ingest writer sends its chunks on a client stream and counts them as
 * acknowledged when the stream's summary arrives. This adapter gives it the
 * same contract over `Write`: each chunk of the "stream" is one `Write` with
 * the chunk's own idempotency key (the gateway feeds both methods through the
 * same batches and records keys the same way), and the "summary" is the sum
 * of their answers, returned only after the writer has ended the stream and
 * every Write has succeeded. If any Write fails, the whole stream fails with
 * that error and the writer resends all of its chunks with the same keys,
 * exactly as after a failed WriteStream: the chunks that did commit are
 * answered as duplicates. So the writer's batching, backpressure, retries and
 * exactly-once guarantee carry over unchanged.
 *
 * Over fetch, the SDK's writers default to one chunk per "stream"
 * (`maxStreamChunks: 1`, see client-core.ts): each Write is then its own
 * unit of acknowledgement and retry, so one lost answer resends one chunk,
 * not a stream's worth. Writes of one client run at most
 * {@link maxInFlight} at a time, whatever the number of streams.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import {
  type IngestService,
  type WriteStreamRequestSchema,
  type WriteStreamResponse,
  WriteStreamResponseSchema,
} from "../../gen/sqlgate/v1/ingest_pb.js";

/**
 * Writes in flight at once for one client's streams: enough to overlap
 * round trips, few enough for a browser's six connections per host.
 */
export const maxInFlight = 4;

/** `client` with `writeStream` replaced by unary `write` calls (see the module comment). */
export function createUnaryIngestClient(
  client: Client<typeof IngestService>,
): Client<typeof IngestService> {
  const slots = createSlots(maxInFlight);
  return {
    write: (request, options) => client.write(request, options),
    writeStream: (requests, options) => writeStreamAsUnary(client, slots, requests, options),
  };
}

interface Slots {
  /** Resolves when a slot is free, and takes it. */
  take(): Promise<void>;
  give(): void;
}

function createSlots(size: number): Slots {
  let free = size;
  const waiting: (() => void)[] = [];
  return {
    take() {
      if (free > 0) {
        free--;
        return Promise.resolve();
      }
      return new Promise((resolve) => waiting.push(resolve));
    },
    give() {
      const next = waiting.shift();
      if (next !== undefined) next();
      else free++;
    },
  };
}

async function writeStreamAsUnary(
  client: Client<typeof IngestService>,
  slots: Slots,
  requests: AsyncIterable<MessageInitShape<typeof WriteStreamRequestSchema>>,
  options: CallOptions = {},
): Promise<WriteStreamResponse> {
  const deadline =
    options.timeoutMs !== undefined && options.timeoutMs > 0
      ? Date.now() + options.timeoutMs
      : undefined;
  let table = "";
  let columns: string[] = [];
  let rowsWritten = 0n;
  let batches = 0;
  let duplicateBatches = 0;
  let failure: unknown;
  let failed = false;
  const inFlight = new Set<Promise<void>>();

  const fail = (err: unknown) => {
    if (failed) return;
    failed = true;
    failure = err;
  };
  /** Sends one chunk in a slot taken by the caller, and gives the slot back. */
  const send = (request: MessageInitShape<typeof WriteStreamRequestSchema>) => {
    const remainingMs = deadline === undefined ? undefined : deadline - Date.now();
    if (remainingMs !== undefined && remainingMs <= 0) {
      slots.give();
      fail(new ConnectError("the stream's deadline passed", Code.DeadlineExceeded));
      return;
    }
    const call: Promise<void> = client
      .write(
        {
          table,
          columns,
          rows: request.rows ?? [],
          idempotencyKey: request.idempotencyKey ?? "",
          durability: request.durability ?? 0,
          onConflict: request.onConflict ?? 0,
        },
        {
          ...(options.signal !== undefined ? { signal: options.signal } : {}),
          ...(remainingMs !== undefined ? { timeoutMs: remainingMs } : {}),
          ...(options.headers !== undefined ? { headers: options.headers } : {}),
        },
      )
      .then((response) => {
        rowsWritten += response.rowsWritten;
        batches += response.batches;
        duplicateBatches += response.duplicateBatches;
      }, fail)
      .finally(() => {
        slots.give();
        inFlight.delete(call);
      });
    inFlight.add(call);
  };

  for await (const request of requests) {
    if (table === "") {
      // The first chunk names the table and columns; later ones leave them empty.
      table = request.table ?? "";
      columns = [...(request.columns ?? [])];
    }
    await slots.take();
    if (failed) {
      slots.give();
      break;
    }
    send(request);
  }
  await Promise.all(inFlight);
  if (failed) throw ConnectError.from(failure);
  return create(WriteStreamResponseSchema, { rowsWritten, batches, duplicateBatches });
}
