/**
 * What the fast paths (transport/unary-fast-path.ts for Connect,
 * transport/grpc-unary.ts for gRPC) share: a method's route, the handler
 * context Connect's implementations expect, the request body read within its
 * limit, and the response size check.
 */
import type http from "node:http";
import type http2 from "node:http2";
import type { DescMethodUnary, DescService, JsonReadOptions } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type HandlerContext,
  type MethodImpl,
} from "@connectrpc/connect";
import {
  createAsyncIterable,
  type createMethodSerializationLookup,
  readAllBytes,
} from "@connectrpc/connect/protocol";
import { PlainHeaders } from "./plain-headers.js";

export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

export interface Route {
  readonly spec: { kind: "unary"; method: DescMethodUnary; impl: MethodImpl<DescMethodUnary> };
  readonly service: DescService;
  readonly url: string;
  readonly serializers: ReturnType<typeof createMethodSerializationLookup>;
  readonly encodeBinary: ((message: unknown) => Uint8Array) | undefined;
  readonly jsonOptions: Partial<JsonReadOptions>;
  readonly errorBody: ((json: Uint8Array) => Uint8Array) | undefined;
}

export interface CallSetup {
  readonly signal: AbortSignal;
  readonly timeoutMs: number | undefined;
  readonly contextValues: (req: NodeRequest) => ContextValues;
  readonly protocolName: "connect" | "grpc";
  /** The response's content type, which a handler may change. */
  readonly contentType: string;
}

/** A call's context, as Connect builds it for a handler (see unary-fast-path.ts for what differs). */
export function handlerContext(route: Route, req: NodeRequest, setup: CallSetup): HandlerContext {
  const { signal, timeoutMs, contextValues, protocolName, contentType } = setup;
  const due = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const responseHeader = new PlainHeaders();
  responseHeader.set("content-type", contentType);
  return {
    method: route.spec.method,
    service: route.service,
    requestMethod: "POST",
    protocolName,
    url: route.url,
    signal,
    timeoutMs: due === undefined ? noTimeout : () => due - Date.now(),
    requestHeader: PlainHeaders.fromNode(req.headers),
    responseHeader,
    responseTrailer: new PlainHeaders(),
    values: contextValues(req),
  };
}

const noTimeout = () => undefined;

/** A request header as one string (repeated ones joined), or null. */
export function headerOf(req: NodeRequest, name: string): string | null {
  const value = req.headers[name];
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(", ") : value;
}

/** `bytes`, unless they exceed the response limit (Connect's message for it). */
export function limited(bytes: Uint8Array, writeMaxBytes: number): Uint8Array {
  if (bytes.byteLength > writeMaxBytes) {
    throw new ConnectError(
      `message size ${bytes.byteLength} is larger than configured writeMaxBytes ${writeMaxBytes}`,
      Code.ResourceExhausted,
    );
  }
  return bytes;
}

/** The reason when the client goes away before the answer. */
const clientGone = new ConnectError("the client cancelled the call", Code.Canceled);

/** A call's signal and what aborts it. */
export interface CallLifetime {
  readonly signal: AbortSignal;
  /** Aborts the signal with `reason` (a failure), unless it is aborted already. */
  fail(reason: unknown): void;
  /** Stops the deadline and the watch on the response: the answer is ready. */
  settle(): void;
}

/**
 * The signal a fast-path call runs with: aborted when its deadline passes,
 * when the response closes before the answer is ready (the client went away;
 * a watch of our own, as HTTP/2's compat response already reports itself
 * finished when its stream is reset), or on a failure.
 */
export function watchCall(res: NodeResponse, timeoutMs: number | undefined): CallLifetime {
  const controller = new AbortController();
  const abort = (reason: unknown) => {
    if (!controller.signal.aborted) controller.abort(reason);
  };
  let deadline: NodeJS.Timeout | undefined;
  if (timeoutMs !== undefined) {
    const expired = () => abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
    if (timeoutMs <= 0) expired();
    else deadline = setTimeout(expired, timeoutMs);
  }
  const onClose = () => abort(clientGone);
  res.once("close", onClose);
  return {
    signal: controller.signal,
    fail: abort,
    settle() {
      clearTimeout(deadline);
      res.off("close", onClose);
    },
  };
}

/** What `collect` read: the chunks, their size, and whether the body ended. */
export interface Collected {
  readonly chunks: Buffer[];
  readonly size: number;
  readonly ended: boolean;
}

/**
 * Reads the request body until it ends or more than `cap` bytes have come
 * (then the request is paused, the rest unread). Fails with `canceled` if the
 * request errors or is destroyed first (the body deadline in one-port.ts).
 */
export function collect(req: NodeRequest, cap: number): Promise<Collected> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.byteLength;
      if (size > cap) {
        done();
        req.pause();
        resolve({ chunks, size, ended: false });
      }
    };
    const onEnd = () => {
      done();
      resolve({ chunks, size, ended: true });
    };
    const onError = (err: Error) => {
      done();
      reject(new ConnectError(err.message, Code.Canceled, undefined, undefined, err));
    };
    const onClose = () => {
      done();
      reject(new ConnectError("the request body did not arrive", Code.Canceled));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}

/** The chunks as one buffer. */
export function joined({ chunks, size }: Collected): Buffer {
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

/**
 * The request body, within `readMaxBytes`: a body over the limit, or shorter
 * or longer than its content-length, is handed to Connect's `readAllBytes`,
 * so that it fails with Connect's own error.
 */
export async function readBody(req: NodeRequest, readMaxBytes: number): Promise<Uint8Array> {
  const lengthHint = headerOf(req, "content-length");
  if (lengthHint !== null && Number(lengthHint) > readMaxBytes) {
    return readAllBytes(createAsyncIterable([]), readMaxBytes, lengthHint);
  }
  const body = await collect(req, readMaxBytes);
  if (body.ended && (lengthHint === null || Number(lengthHint) === body.size)) return joined(body);
  return readAllBytes(createAsyncIterable(body.chunks), readMaxBytes, lengthHint);
}
