/**
 * sqlgate's TypeScript SDK for any runtime with `fetch`
 * (`sqlgate/client/fetch`): serverless functions, edge workers, Deno, Bun,
 * browsers. The same client as the Node entry, over connect-web's Connect
 * transport; nothing it imports, directly or not, is a `node:` module.
 *
 * fetch cannot stream a request body, so the one client-streaming method,
 * IngestService.WriteStream, is not used: `ingest.writer` sends each chunk
 * as a unary Write, with the same idempotency keys and the same retries
 * (ingest-unary.ts), and `ingest.write` is unary anyway. Streamed results
 * (`stream`) work: fetch streams response bodies.
 */
import type { Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { type CredentialOptions, interceptorsWithCredentials } from "./auth.js";
import { createClientCore, type SqlgateClient } from "./client-core.js";
import { pickValueOptions, type ValueOptions } from "./rows.js";

/**
 * Options of the fetch client. The value options (`int64`, `temporal`,
 * `json`, `cast`) are client-wide defaults that each call may override.
 * Credentials (`token`, or `username` and `password`) are sent as a standard
 * `authorization` header on every call.
 */
export interface FetchClientOptions extends ValueOptions, CredentialOptions {
  /** The gateway's base URL, such as `https://db.example.com`. */
  readonly url: string;
  /**
   * `"binary"` (default): Connect with binary Protobuf, smaller and cheaper
   * to decode. `"json"`: Connect JSON, readable in a browser's network tab
   * (64-bit integers travel as strings, so values stay exact either way).
   */
  readonly format?: "binary" | "json";
  /**
   * The fetch to call, for a runtime's own (Cloudflare's service bindings,
   * a fetch with credentials or a proxy). Default: `globalThis.fetch`, looked
   * up at each call.
   */
  readonly fetch?: typeof globalThis.fetch;
  /** Interceptors run on every call, after the one that sends the credentials. */
  readonly interceptors?: Interceptor[];
  /** A deadline for every call that sets none itself (`timeoutMs` per call wins). */
  readonly timeoutMs?: number;
  /** How many times a read outside a transaction is resent after a lost call (default 2; see `ClientCoreOptions`). */
  readonly readRetries?: number;
}

/**
 * A client for the gateway at `options.url` over `fetch`. `close()` releases
 * nothing (the runtime owns fetch's connections) and exists so that code can
 * hold either entry's client. Throws a TypeError for credentials that cannot
 * be meant (a token and a password, a username without a password).
 */
export function createClient(options: FetchClientOptions): SqlgateClient {
  const transport = createConnectTransport({
    baseUrl: options.url,
    useBinaryFormat: (options.format ?? "binary") === "binary",
    // Looked up per call, not captured: a test or a polyfill may replace it.
    fetch: options.fetch ?? ((input, init) => globalThis.fetch(input, init)),
    interceptors: interceptorsWithCredentials(options, options.interceptors),
  });
  return createClientCore(transport, {
    ...pickValueOptions(options),
    clientStreaming: false,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.readRetries !== undefined ? { readRetries: options.readRetries } : {}),
  });
}

export * from "./exports.js";
