/**
 * The Connect protocol's unary POST, served for the hottest methods (Execute,
 * Write, PlanetScale's Execute) without the router's per-call machinery: no `URL`, one
 * AbortController instead of three, no reason-less abort (each builds a
 * DOMException with a stack), no async generators for bodies, and fastify's
 * routing skipped. The performance notes measured that machinery at more
 * than half of a point query's gateway CPU. Unlike Connect, the call's signal
 * is not aborted once the call has ended (an abort and its event cost ~4% of
 * a call): it aborts only for the deadline, the client going away, or a
 * failure; the handlers here remove their listeners themselves.
 *
 * It behaves as Connect's handler does, reusing Connect's own pieces for
 * everything a caller can observe: the same interceptors run (authentication,
 * limits, the call observer, forwarding), `connect-timeout-ms` is parsed and
 * capped by `parseTimeout`, bodies are limited by `readAllBytes`, messages go
 * through the same (limited) serializers, errors become the same JSON with the
 * same HTTP status, responses at or above `compressMinBytes` are compressed
 * as negotiated. gRPC's unary call (binary, over HTTP/2) is served the same
 * way by grpc-unary.ts. Anything unusual (GET, a compressed request body,
 * another content type, gRPC-Web, a shutting-down gateway) is not taken: the
 * caller hands it to the Connect router, which answers it as before.
 * test/unary-fast-path.test.ts sends the same requests both ways and
 * compares the answers (status, headers, bodies; timings aside).
 */
import { isUtf8 } from "node:buffer";
import type http from "node:http";
import type { DescMethodUnary, JsonReadOptions } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type Interceptor,
  type MethodImpl,
} from "@connectrpc/connect";
import {
  type Compression,
  compressionNegotiate,
  createMethodSerializationLookup,
  invokeUnaryImplementation,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  contentTypeUnaryJson,
  contentTypeUnaryProto,
  errorToJsonBytes,
  parseTimeout,
} from "@connectrpc/connect/protocol-connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import {
  handlerContext,
  headerOf,
  limited,
  type NodeRequest,
  type NodeResponse,
  type Route,
  readBody,
  watchCall,
} from "./fast-call.js";
import { grpcRequestTypes, serveGrpcUnary } from "./grpc-unary.js";

/** A unary method served on the fast path, with its implementation. */
export interface FastUnaryMethod {
  readonly method: DescMethodUnary;
  readonly impl: MethodImpl<DescMethodUnary>;
  /**
   * Writes a response in the binary format, byte for byte as `toBinary`
   * does, but faster (see services/execute-response-wire.ts).
   */
  readonly encodeBinary?: (message: never) => Uint8Array;
  /** JSON options of this method's service, if they differ from the gateway's. */
  readonly jsonOptions?: Partial<JsonReadOptions>;
  /** Rewrites an error's JSON body (PlanetScale's API adds its own `error` object). */
  readonly errorBody?: (json: Uint8Array) => Uint8Array;
}

export interface UnaryFastPathOptions {
  readonly methods: readonly FastUnaryMethod[];
  readonly interceptors: readonly Interceptor[];
  /** Context values for a request (the verified client certificate). */
  readonly contextValues: (req: NodeRequest) => ContextValues;
  readonly readMaxBytes: number;
  readonly writeMaxBytes: number;
  readonly maxTimeoutMs: number;
  readonly compressMinBytes: number;
  readonly jsonOptions: Partial<JsonReadOptions>;
  /** True once the gateway is closing: calls then go the router's way (503). */
  readonly closing: () => boolean;
  /** Counts a call taken. */
  readonly taken: () => void;
}

/** Takes the request and answers it (true), or leaves it to the router (false). */
export type UnaryFastPath = (req: NodeRequest, res: NodeResponse) => boolean;

/** Connect's server default, as the router is configured. */
const acceptCompression: Compression[] = [compressionGzip, compressionBrotli];

const requestTypes = new Map([
  ["application/proto", true],
  ["application/json", false],
  ["application/json; charset=utf-8", false],
]);

export function createUnaryFastPath(options: UnaryFastPathOptions): UnaryFastPath {
  const routes = new Map<string, Route>();
  for (const { method, impl, encodeBinary, errorBody, ...rest } of options.methods) {
    const url = `/${method.parent.typeName}/${method.name}`;
    const jsonOptions = rest.jsonOptions ?? options.jsonOptions;
    routes.set(url, {
      spec: { kind: "unary", method, impl },
      service: method.parent,
      url,
      serializers: createMethodSerializationLookup(
        method,
        undefined,
        { ignoreUnknownFields: true, ...jsonOptions },
        options,
      ),
      encodeBinary: encodeBinary as ((message: unknown) => Uint8Array) | undefined,
      jsonOptions,
      errorBody,
    });
  }
  const interceptors = [...options.interceptors];

  const grpcOptions = { ...options, acceptCompression };
  // Writing failed (the connection went away): nothing is left to answer.
  const failed = (res: NodeResponse) => (err: unknown) => {
    if (!res.destroyed) res.destroy(err instanceof Error ? err : undefined);
  };
  return (req, res) => {
    if (req.method !== "POST") return false;
    const route = routes.get(req.url ?? "");
    if (route === undefined) return false;
    const headers = req.headers;
    const type = headers["content-type"] ?? "";
    const binary = requestTypes.get(type);
    if (binary !== undefined) {
      const encoding = headers["content-encoding"];
      if (encoding !== undefined && encoding !== "identity") return false;
      if (options.closing()) return false;
      options.taken();
      serve(route, binary, req, res, options, interceptors).catch(failed(res));
      return true;
    }
    if (grpcRequestTypes.has(type) && req.httpVersionMajor === 2) {
      const encoding = headers["grpc-encoding"];
      if (encoding !== undefined && encoding !== "identity") return false;
      if (options.closing()) return false;
      options.taken();
      serveGrpcUnary(route, req, res, grpcOptions, interceptors).catch(failed(res));
      return true;
    }
    return false;
  };
}

async function serve(
  route: Route,
  binary: boolean,
  req: NodeRequest,
  res: NodeResponse,
  options: UnaryFastPathOptions,
  interceptors: Interceptor[],
): Promise<void> {
  const timeout = parseTimeout(headerOf(req, "connect-timeout-ms"), options.maxTimeoutMs);
  const call = watchCall(res, timeout.timeoutMs);
  const context = handlerContext(route, req, {
    signal: call.signal,
    timeoutMs: timeout.timeoutMs,
    contextValues: options.contextValues,
    protocolName: "connect",
    contentType: binary ? contentTypeUnaryProto : contentTypeUnaryJson,
  });

  let status = 200;
  let body: Uint8Array;
  try {
    if (timeout.error) throw timeout.error;
    const bytes = await readBody(req, options.readMaxBytes);
    // JSON is text: bytes that are not UTF-8 must not reach MySQL as U+FFFD
    // (the router's path checks the same in transport/one-port.ts).
    if (!binary && !isUtf8(bytes)) {
      throw new ConnectError("the request body is not valid UTF-8", Code.InvalidArgument);
    }
    const input = route.serializers.getI(binary).parse(bytes);
    const output = await invokeUnaryImplementation(route.spec, context, input, interceptors);
    body =
      binary && route.encodeBinary !== undefined
        ? limited(route.encodeBinary(output), options.writeMaxBytes)
        : route.serializers.getO(binary).serialize(output);
  } catch (e) {
    call.fail(e);
    const error =
      e instanceof ConnectError
        ? e
        : new ConnectError("internal error", Code.Internal, undefined, undefined, e);
    status = codeToHttpStatus(error.code);
    context.responseHeader.set("content-type", contentTypeUnaryJson);
    error.metadata.forEach((value, key) => {
      context.responseHeader.set(key, value);
    });
    body = errorToJsonBytes(error, route.jsonOptions);
    if (route.errorBody !== undefined) body = route.errorBody(body);
  } finally {
    call.settle();
  }
  if (body.byteLength >= options.compressMinBytes) {
    const compression = compressionNegotiate(
      acceptCompression,
      null,
      headerOf(req, "accept-encoding"),
      "accept-encoding",
    ).response;
    if (compression !== null) {
      body = await compression.compress(body);
      context.responseHeader.set("content-encoding", compression.name);
    }
  }
  const out: Record<string, string> = {};
  context.responseHeader.forEach((value, key) => {
    out[key] = value;
  });
  context.responseTrailer.forEach((value, key) => {
    out[`trailer-${key}`] = value;
  });
  out["content-length"] = String(body.byteLength);
  if (res.destroyed) return;
  (res as http.ServerResponse).writeHead(status, out);
  res.end(body);
}
