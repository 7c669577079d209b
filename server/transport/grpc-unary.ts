/**
 * gRPC's unary call over HTTP/2 on the fast path (see unary-fast-path.ts):
 * one enveloped request message in, response headers, one enveloped message
 * and the status in trailers out, as Connect's gRPC handler answers. Connect's
 * own pieces decide everything a caller sees: `grpc-timeout` is parsed and
 * capped by its parser, errors become trailers through `setTrailerStatus`
 * (with `grpc-status-details-bin`), the response is compressed as
 * `grpc-accept-encoding` negotiates once it reaches `compressMinBytes`. A body
 * that is not exactly one uncompressed envelope within the limit goes through
 * Connect's own envelope transforms, so that it fails with their errors.
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  type Compression,
  compressionNegotiate,
  encodeEnvelope,
  invokeUnaryImplementation,
  pipe,
  transformDecompressEnvelope,
  transformParseEnvelope,
  transformSplitEnvelope,
} from "@connectrpc/connect/protocol";
import {
  contentTypeProto,
  grpcStatusOk,
  parseTimeout,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import {
  type CallSetup,
  type Collected,
  collect,
  handlerContext,
  headerOf,
  joined,
  limited,
  type NodeRequest,
  type NodeResponse,
  type Route,
  watchCall,
} from "./fast-call.js";

export interface GrpcUnaryOptions {
  readonly readMaxBytes: number;
  readonly writeMaxBytes: number;
  readonly maxTimeoutMs: number;
  readonly compressMinBytes: number;
  readonly acceptCompression: Compression[];
  readonly contextValues: CallSetup["contextValues"];
}

/** The gRPC content types taken (binary); `+json` and the rest go to the router. */
export const grpcRequestTypes = new Set(["application/grpc", "application/grpc+proto"]);

/** The envelope flag of a compressed message. */
const compressedFlag = 0b1;

export async function serveGrpcUnary(
  route: Route,
  req: NodeRequest,
  res: NodeResponse,
  options: GrpcUnaryOptions,
  interceptors: Interceptor[],
): Promise<void> {
  const timeout = parseTimeout(headerOf(req, "grpc-timeout"), options.maxTimeoutMs);
  const call = watchCall(res, timeout.timeoutMs);
  const context = handlerContext(route, req, {
    signal: call.signal,
    timeoutMs: timeout.timeoutMs,
    contextValues: options.contextValues,
    protocolName: "grpc",
    contentType: contentTypeProto,
  });
  context.responseTrailer.set("grpc-status", grpcStatusOk);
  const compression = compressionNegotiate(
    options.acceptCompression,
    null,
    headerOf(req, "grpc-accept-encoding"),
    "grpc-accept-encoding",
  ).response;
  if (compression !== null) context.responseHeader.set("grpc-encoding", compression.name);

  let envelope: Uint8Array | undefined;
  try {
    if (timeout.error) throw timeout.error;
    const body = await collect(req, options.readMaxBytes + 5);
    const input = await parseRequest(route, req, body, options.readMaxBytes);
    const output = await invokeUnaryImplementation(route.spec, context, input, interceptors);
    let data = limited(
      route.encodeBinary?.(output) ?? route.serializers.getO(true).serialize(output),
      options.writeMaxBytes,
    );
    let flags = 0;
    if (compression !== null && data.byteLength >= options.compressMinBytes) {
      data = await compression.compress(data);
      flags = compressedFlag;
    }
    envelope = encodeEnvelope(flags, data);
  } catch (e) {
    call.fail(e);
    setTrailerStatus(
      context.responseTrailer,
      e instanceof ConnectError
        ? e
        : new ConnectError("internal error", Code.Internal, undefined, undefined, e),
    );
  } finally {
    call.settle();
  }
  if (res.destroyed) return;
  const headers: Record<string, string> = {};
  context.responseHeader.forEach((value, key) => {
    headers[key] = value;
  });
  const trailers: Record<string, string> = {};
  context.responseTrailer.forEach((value, key) => {
    trailers[key] = value;
  });
  // gRPC runs over HTTP/2 only (see unary-fast-path.ts).
  const h2 = res as import("node:http2").Http2ServerResponse;
  h2.writeHead(200, headers);
  if (envelope !== undefined) h2.write(envelope);
  h2.addTrailers(trailers);
  h2.end();
}

/** `first`, then what is left of `req`'s body, if it was not read to its end. */
async function* rest(first: Uint8Array, req: NodeRequest | undefined): AsyncGenerator<Uint8Array> {
  yield first;
  if (req !== undefined) for await (const chunk of req) yield chunk as Uint8Array;
}

/**
 * The one request message: read directly when the body is exactly one
 * uncompressed envelope within the limit, else through Connect's envelope
 * transforms (and its single-message check) over the body read so far and
 * the rest of the request, which fail with the router's errors.
 */
async function parseRequest(route: Route, req: NodeRequest, body: Collected, readMaxBytes: number) {
  const parser = route.serializers.getI(true);
  const bytes = joined(body);
  if (body.ended && bytes.byteLength >= 5 && bytes[0] === 0) {
    const length = bytes.readUInt32BE(1);
    if (length === bytes.byteLength - 5 && length <= readMaxBytes) {
      return parser.parse(bytes.subarray(5));
    }
  }
  const messages = pipe(
    rest(bytes, body.ended ? undefined : req),
    transformSplitEnvelope(readMaxBytes),
    transformDecompressEnvelope(null, readMaxBytes),
    transformParseEnvelope(parser),
  );
  const found: MessageShape<DescMessage>[] = [];
  // As Connect's check, which stops at the second message.
  for await (const message of messages) {
    found.push(message as MessageShape<DescMessage>);
    if (found.length > 1) break;
  }
  if (found.length === 0) {
    throw new ConnectError(
      "protocol error: missing input message for unary method",
      Code.Unimplemented,
    );
  }
  if (found.length > 1) {
    throw new ConnectError(
      "protocol error: received extra input message for unary method",
      Code.Unimplemented,
    );
  }
  return found[0] as MessageShape<DescMessage>;
}
