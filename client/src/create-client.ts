/**
 * `createClient` for Node: the SDK (client-core.ts) over connect-node, with
 * HTTP/2 by default and client streaming, so the ingest writer streams its
 * chunks on WriteStream.
 */
import http from "node:http";
import https from "node:https";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { type CredentialOptions, interceptorsWithCredentials } from "./auth.js";
import { createClientCore, type SqlgateClient } from "./client-core.js";
import { createPooledHttp2Transport } from "./node/http2-pool.js";
import { pickValueOptions, type ValueOptions } from "./rows.js";

/**
 * Options of the Node client. The value options (`int64`, `temporal`,
 * `json`, `cast`) are client-wide defaults that each call may override.
 * Credentials (`token`, or `username` and `password`) are sent as a standard
 * `authorization` header on every call.
 */
export interface ClientOptions extends ValueOptions, CredentialOptions {
  /** The gateway's base URL, such as `http://127.0.0.1:8080` or `https://db.example.com`. */
  readonly url: string;
  /**
   * `"2"` (the default) multiplexes every call, streams included, over a
   * small pool of long-lived connections (`sessions`): h2c with prior
   * knowledge for `http:`, ALPN for `https:` (the gateway serves both on one
   * port). `"1.1"` uses a keep-alive pool of connections, for proxies that do
   * not pass HTTP/2 through.
   */
  readonly httpVersion?: "1.1" | "2";
  /**
   * HTTP/2 sessions (connections) that calls are spread over, round robin,
   * passing over a session that is full, stalled or reconnecting (default 4).
   */
  readonly sessions?: number;
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
  /** Interceptors run on every call, after the one that sends the credentials. */
  readonly interceptors?: Interceptor[];
  /** A deadline for every call that sets none itself (`timeoutMs` per call wins). */
  readonly timeoutMs?: number;
  /** How many times a read outside a transaction is resent after a lost call (default 2; see `ClientCoreOptions`). */
  readonly readRetries?: number;
}

/**
 * A client for the gateway at `options.url`, speaking the Connect protocol
 * with binary Protobuf (smaller and faster to encode than JSON, and exact for
 * 64-bit integers and bytes without base64 or string detours). Throws a
 * TypeError for credentials that cannot be meant (a token and a password, a
 * username without a password).
 */
export function createClient(options: ClientOptions): SqlgateClient {
  const url = new URL(options.url);
  const interceptors = interceptorsWithCredentials(options, options.interceptors);
  let transport: Transport;
  let release: () => void;
  if ((options.httpVersion ?? "2") === "2") {
    const pool = createPooledHttp2Transport({
      baseUrl: options.url,
      sessions: options.sessions,
      pingIntervalMs: options.pingIntervalMs,
      pingTimeoutMs: options.pingTimeoutMs,
      idleConnectionTimeoutMs: options.idleConnectionTimeoutMs,
      interceptors,
    });
    transport = pool.transport;
    release = () => pool.close();
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
  return createClientCore(transport, {
    ...pickValueOptions(options),
    clientStreaming: true,
    onClose: release,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.readRetries !== undefined ? { readRetries: options.readRetries } : {}),
  });
}
