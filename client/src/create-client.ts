/**
 * `createClient`: one connection to one gateway, and the SDK's services on it.
 */
import http from "node:http";
import https from "node:https";
import {
  createClient as createConnectClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { IngestService } from "../../gen/sqlgate/v1/ingest_pb.js";
import { createIngestClient, type IngestClient } from "./ingest.js";

export interface ClientOptions {
  /** The gateway's base URL, such as `http://127.0.0.1:8080` or `https://db.example.com`. */
  readonly url: string;
  /**
   * `"2"` (the default) multiplexes every call, streams included, over one
   * long-lived connection: h2c with prior knowledge for `http:`, ALPN for
   * `https:` (the gateway serves both on one port). `"1.1"` uses a keep-alive
   * pool of connections, for proxies that do not pass HTTP/2 through.
   */
  readonly httpVersion?: "1.1" | "2";
  /**
   * HTTP/2 keepalive: a PING after this long without a frame from the gateway
   * (default 30,000 ms). It finds a connection that died silently (a NAT or
   * load balancer that dropped it) before a write waits on it, and keeps
   * middleboxes from timing out a connection that an ingest daemon holds for
   * days.
   */
  readonly pingIntervalMs?: number;
  /** The connection is dropped, and calls on it fail, when a PING is unanswered this long (default 15,000 ms). */
  readonly pingTimeoutMs?: number;
  /** An idle HTTP/2 connection is closed after this long (default 15 minutes). */
  readonly idleConnectionTimeoutMs?: number;
  /** Interceptors run on every call, for example to add an `authorization` header. */
  readonly interceptors?: Interceptor[];
}

export interface SqlgateClient {
  /** Bulk writes: `write` (one call) and `writer` (buffered, streamed, retried). */
  readonly ingest: IngestClient;
  /**
   * The Connect transport (Connect protocol, binary), for services the SDK
   * does not wrap yet: `createClient(Service, client.transport)`.
   */
  readonly transport: Transport;
  /**
   * Closes the connections. Close writers first: calls still running fail.
   */
  close(): Promise<void>;
}

/**
 * A client for the gateway at `options.url`, speaking the Connect protocol
 * with binary Protobuf (smaller and faster to encode than JSON, and exact for
 * 64-bit integers and bytes without base64 or string detours).
 */
export function createClient(options: ClientOptions): SqlgateClient {
  const url = new URL(options.url);
  const interceptors = options.interceptors ?? [];
  let transport: Transport;
  let release: () => void;
  if ((options.httpVersion ?? "2") === "2") {
    const sessionManager = new Http2SessionManager(url, {
      pingIntervalMs: options.pingIntervalMs ?? 30_000,
      pingTimeoutMs: options.pingTimeoutMs ?? 15_000,
      ...(options.idleConnectionTimeoutMs !== undefined
        ? { idleConnectionTimeoutMs: options.idleConnectionTimeoutMs }
        : {}),
    });
    transport = createConnectTransport({
      baseUrl: options.url,
      httpVersion: "2",
      useBinaryFormat: true,
      sessionManager,
      interceptors,
    });
    release = () => sessionManager.abort();
  } else {
    const agent =
      url.protocol === "https:"
        ? new https.Agent({ keepAlive: true })
        : new http.Agent({ keepAlive: true });
    transport = createConnectTransport({
      baseUrl: options.url,
      httpVersion: "1.1",
      useBinaryFormat: true,
      nodeOptions: { agent },
      interceptors,
    });
    release = () => agent.destroy();
  }
  let closed = false;
  return {
    ingest: createIngestClient(createConnectClient(IngestService, transport)),
    transport,
    async close() {
      if (closed) return;
      closed = true;
      release();
    },
  };
}
