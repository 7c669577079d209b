/**
 * Serves PlanetScale's API (`/psdb.v1alpha1.Database/*`, at the host root)
 * through Connect, with what @planetscale/database needs beyond Connect's
 * defaults: unknown JSON fields are ignored (clients echo sessions verbatim,
 * PlanetScale's included), and a non-2xx answer (authentication, malformed
 * request, limits) carries, besides Connect's `code` and `message`, an
 * `error` object, which the driver turns into a `DatabaseError` rather than
 * an `UnknownError` with the message hidden.
 */
import type { DescService } from "@bufbuild/protobuf";
import {
  type ContextValues,
  createConnectRouter,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { compressMinBytes } from "./compression.js";

export interface PsdbHttpOptions<S extends DescService> {
  readonly service: S;
  readonly implementation: Partial<ServiceImpl<S>>;
  readonly interceptors: Interceptor[];
  /** Context values for a request (the verified client certificate). */
  readonly contextValues: (req: FastifyRequest) => ContextValues;
  readonly readMaxBytes: number;
  readonly writeMaxBytes: number;
  readonly maxTimeoutMs: number;
}

/** Clients echo sessions verbatim, PlanetScale's fields included: unknown fields are ignored. */
export const psdbJsonOptions = { ignoreUnknownFields: true };

async function bytesOf(body: AsyncIterable<Uint8Array> | undefined): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  if (body !== undefined) for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/**
 * A Connect JSON error body with PlanetScale's `error` object added
 * (`{"code": "INVALID_ARGUMENT", "message": ...}`); other bytes as they are.
 */
export function withErrorObject(bytes: Uint8Array): Uint8Array {
  let body: unknown;
  try {
    body = JSON.parse(
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"),
    );
  } catch {
    return bytes;
  }
  if (typeof body !== "object" || body === null || !("code" in body)) return bytes;
  const { code, message } = body as { code: unknown; message?: unknown };
  return Buffer.from(
    JSON.stringify({
      ...body,
      error: { code: String(code).toUpperCase(), message: String(message ?? code) },
    }),
  );
}

/** `response` with the `error` object added to its JSON error body, if it has one. */
async function withErrorObjectResponse(
  response: UniversalServerResponse,
): Promise<UniversalServerResponse> {
  const type = response.header?.get("content-type") ?? "";
  if (response.status < 300 || !type.startsWith("application/json")) return response;
  const augmented = withErrorObject(await bytesOf(response.body));
  response.header?.set("content-length", String(augmented.byteLength));
  return {
    ...response,
    body: (async function* () {
      yield augmented;
    })(),
  };
}

/** Registers the service's routes on `app` (an encapsulated plugin scope). */
export function psdbHttp<S extends DescService>(options: PsdbHttpOptions<S>) {
  return async (app: FastifyInstance) => {
    const router = createConnectRouter({
      interceptors: options.interceptors,
      readMaxBytes: options.readMaxBytes,
      writeMaxBytes: options.writeMaxBytes,
      maxTimeoutMs: options.maxTimeoutMs,
      acceptCompression: [compressionGzip, compressionBrotli],
      compressMinBytes,
      jsonOptions: psdbJsonOptions,
    });
    router.service(options.service, options.implementation);
    // Connect reads the bodies itself.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser("*", (_req, _payload, done) => done(null, undefined));
    for (const handler of router.handlers) {
      app.all(handler.requestPath, async (req, reply) => {
        const response = await handler(
          universalRequestFromNodeRequest(
            req.raw,
            reply.raw,
            undefined,
            options.contextValues(req),
          ),
        );
        await universalResponseToNodeResponse(await withErrorObjectResponse(response), reply.raw);
      });
    }
  };
}
