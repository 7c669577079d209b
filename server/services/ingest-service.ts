/**
 * `sqlgate.v1.IngestService`: maps requests to the ingest core (enums to
 * policies, a default deadline) and results to responses.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  Durability,
  type IngestService,
  OnConflict,
  WriteResponseSchema,
  WriteStreamResponseSchema,
} from "../../gen/sqlgate/v1/ingest_pb.js";
import type { CallDeadline } from "../ingest/group-commit.js";
import type { Durability as CoreDurability, StreamChunk } from "../ingest/ingest.js";
import type { ConflictPolicy } from "../ingest/ingest-target.js";
import { principalFrom } from "../principal.js";
import { coreFrom, type GatewayCore } from "./context-values.js";

function durabilityOf(d: Durability): CoreDurability | undefined {
  if (d === Durability.BUFFERED) return "buffered";
  if (d === Durability.COMMITTED) return "committed";
  return undefined;
}

function conflictOf(c: OnConflict): ConflictPolicy | undefined {
  if (c === OnConflict.IGNORE) return "ignore";
  if (c === OnConflict.UPDATE) return "update";
  if (c === OnConflict.ERROR) return "error";
  return undefined;
}

/**
 * The call's deadline, or the default one when the call gives none. No
 * composite AbortSignal per call: they are costly on the hot path, and the
 * core keeps one timer per waiting call instead.
 */
function deadlineOf(ctx: HandlerContext, defaultTimeoutMs: number): CallDeadline {
  return { signal: ctx.signal, timeoutMs: ctx.timeoutMs() ?? defaultTimeoutMs };
}

/**
 * The core for an ingest call. Ingest writes to the MySQL URL's database: a
 * credential confined to another database may not ingest.
 */
function ingestCore(ctx: HandlerContext): GatewayCore {
  const core = coreFrom(ctx.values);
  const principal = principalFrom(ctx.values);
  if (principal.database !== undefined && principal.database !== core.primaryDatabase) {
    throw new ConnectError(
      `ingest writes to database ${core.primaryDatabase}; credential ${principal.name} works on ${principal.database}`,
      Code.FailedPrecondition,
    );
  }
  return core;
}

export const ingestService: ServiceImpl<typeof IngestService> = {
  async write(req, ctx) {
    const core = ingestCore(ctx);
    const result = await core.ingest.write(
      {
        table: req.table,
        columns: req.columns,
        rows: req.rows,
        idempotencyKey: req.idempotencyKey,
        durability: durabilityOf(req.durability) ?? "committed",
        onConflict: conflictOf(req.onConflict) ?? "error",
      },
      deadlineOf(ctx, core.defaultTimeoutMs),
    );
    return create(WriteResponseSchema, {
      rowsWritten: BigInt(result.rowsWritten),
      batches: result.batches,
      duplicateBatches: result.duplicateBatches,
      position: result.position ?? "",
    });
  },

  async writeStream(requests, ctx) {
    const core = ingestCore(ctx);
    let received = 0;
    async function* chunks(): AsyncGenerator<StreamChunk> {
      for await (const req of requests) {
        received++;
        yield {
          table: req.table,
          columns: req.columns,
          rows: req.rows,
          idempotencyKey: req.idempotencyKey,
          durability: durabilityOf(req.durability),
          onConflict: conflictOf(req.onConflict),
        };
      }
    }
    // A chunk waits at most the default deadline for its batch, but the stream
    // itself may last as long as its client wants.
    const result = await core.ingest.writeStream(chunks(), deadlineOf(ctx, core.defaultTimeoutMs));
    if (received === 0) {
      // Not one message: a proxy that drops streamed request bodies (Caddy
      // 2.6 over HTTP/3) looks exactly so. Saying so beats a silent success.
      throw new ConnectError(
        "WriteStream received no messages: send at least one chunk, or use Write (a proxy that drops streamed request bodies, such as Caddy 2.6 over HTTP/3, sends none)",
        Code.InvalidArgument,
      );
    }
    return create(WriteStreamResponseSchema, {
      rowsWritten: BigInt(result.rowsWritten),
      batches: result.batches,
      duplicateBatches: result.duplicateBatches,
      position: result.position ?? "",
    });
  },
};
