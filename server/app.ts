/**
 * Builds the fastify instance: the one-port transport, the Connect services
 * with their limits, and the plain HTTP health routes. `buildApp` never
 * listens, so tests can build several apps in one process.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createContextValues, type ServiceImpl } from "@connectrpc/connect";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import { type FastifyInstance, fastify, LogController } from "fastify";
import { Database as PsdbDatabase } from "../gen/psdb/v1alpha1/database_pb.js";
import { createAuthInterceptor } from "./auth/auth-interceptor.js";
import type { CredentialStore } from "./auth/credentials.js";
import { createForwarding } from "./cluster/forwarding.js";
import type { ConsoleConfig, LimitsConfig } from "./config.js";
import type { Database } from "./mysql/database.js";
import type { ReplicaStatus } from "./mysql/replication/replica-set.js";
import { createCallObserver } from "./observability/call-observer.js";
import type { Logger } from "./observability/logger.js";
import { type ChangeSinkCounters, createMetrics } from "./observability/metrics.js";
import { kClientCertificateName, type PrincipalLimits } from "./principal.js";
import { fastUnaryMethods, routes } from "./routes.js";
import { createCoreInjector, type GatewayCore } from "./services/context-values.js";
import type { TokenCodec } from "./sessions/session-token.js";
import { compressMinBytes } from "./transport/compression.js";
import { consoleRoute } from "./transport/console-route.js";
import {
  clientCertificateName,
  createOnePortServer,
  type RequestHandler,
  type TlsOptions,
} from "./transport/one-port.js";
import { psdbHttp, psdbJsonOptions, withErrorObject } from "./transport/psdb-http.js";
import {
  createUnaryFastPath,
  type FastUnaryMethod,
  type UnaryFastPath,
} from "./transport/unary-fast-path.js";

export interface AppOptions {
  readonly core: GatewayCore;
  /** PlanetScale's API, served at `/psdb.v1alpha1.Database/*`. */
  readonly planetscale: Partial<ServiceImpl<typeof PsdbDatabase>>;
  readonly db: Database;
  /** Every set of pools (for metrics). */
  readonly pools: () => readonly Database[];
  /** The MySQL replicas reads may go to, as last checked (metrics, `/readyz`). */
  readonly replicas: () => readonly ReplicaStatus[];
  /** The JetStream change sink's state (metrics); undefined without one. */
  readonly changeSink: () => ChangeSinkCounters | undefined;
  /** Calls slower than this are logged as warnings. */
  readonly slowCallMs: number;
  /** The credentials calls must present; undefined: none needed (loopback only). */
  readonly credentials: CredentialStore | undefined;
  /** Each credential's limits unless it sets its own. */
  readonly credentialLimits: PrincipalLimits;
  /** Signs tokens and hops between replicas. */
  readonly codec: TokenCodec;
  /** This replica's name and the replicas sessions may be forwarded to. */
  readonly cluster: { readonly node: string; readonly peers: readonly string[] };
  readonly limits: LimitsConfig;
  readonly logger: Logger;
  readonly tls?: TlsOptions | undefined;
  /** Connection ageing and keepalive (see transport/one-port.ts). */
  readonly connections?: {
    readonly maxConnectionAgeMs: number;
    readonly maxConnectionAgeGraceMs: number;
    readonly keepaliveIntervalMs: number;
    readonly keepaliveTimeoutMs: number;
  };
  /** HTTP/2 streams per connection (default 10,000). */
  readonly maxConcurrentStreams?: number;
  /** The browser console at `/console` (default: not served). */
  readonly console?: ConsoleConfig;
  /**
   * Execute and Write on the unary fast path (transport/unary-fast-path.ts);
   * false sends them through the Connect router like every other call (tests
   * compare the two).
   */
  readonly unaryFastPath?: boolean;
}

/** The request handler, asking the fast path first once it exists. */
function withFastPath(
  handler: RequestHandler,
  fastPath: () => UnaryFastPath | undefined,
): RequestHandler {
  return (req, res) => {
    if (fastPath()?.(req, res) !== true) handler(req, res);
  };
}

/** Readiness waits this long for MySQL to answer a ping. */
const readinessTimeoutMs = 2000;

export type App = FastifyInstance<Server, IncomingMessage, ServerResponse, Logger>;

export async function buildApp(options: AppOptions): Promise<App> {
  // Set below, once the interceptors exist; the server asks it first.
  let fastPath: UnaryFastPath | undefined;
  const app = fastify({
    loggerInstance: options.logger,
    // No log line per request: it costs ~40 us a call (performance notes).
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: "idle",
    // fastify's types expect a node:http server; ours serves both HTTP versions
    // through the same request handler, which fastify accepts at run time.
    serverFactory: (handler) =>
      createOnePortServer(
        withFastPath(handler as RequestHandler, () => fastPath),
        {
          tls: options.tls,
          maxConcurrentStreams: options.maxConcurrentStreams ?? 10_000,
          keepAliveTimeoutMs: 65_000,
          bodyTimeoutMs: options.limits.maxTimeoutMs,
          ...options.connections,
        },
      ) as unknown as Server,
  });

  // The verified client certificate (mTLS) reaches authentication as a context value.
  const contextValues = (req: { raw: { socket: unknown } }) =>
    createContextValues().set(kClientCertificateName, clientCertificateName(req.raw));
  const metrics = createMetrics({
    ingest: options.core.ingest,
    pools: options.pools,
    sessions: options.core.sessions,
    replicas: options.replicas,
    changeSink: options.changeSink,
  });
  const interceptors = [
    createCallObserver({
      logger: options.logger,
      metrics: metrics.calls,
      slowCallMs: options.slowCallMs,
    }),
    createAuthInterceptor(options.credentials, options.credentialLimits, options.codec),
    createForwarding({ ...options.cluster, codec: options.codec }),
    createCoreInjector(options.core),
  ];
  const limits = {
    readMaxBytes: options.limits.maxBodyBytes,
    writeMaxBytes: options.limits.maxResponseBytes + 1024 * 1024,
    maxTimeoutMs: options.limits.maxTimeoutMs,
  };
  // Connect ignores unknown JSON fields by default; for SQL a misspelt field
  // (`"options":{"readonly":true}`) would silently drop a safeguard, so it is
  // refused with `invalid_argument` instead.
  const jsonOptions = { ignoreUnknownFields: false };
  if (options.unaryFastPath !== false) {
    fastPath = createUnaryFastPath({
      methods: [
        ...fastUnaryMethods,
        ...(options.planetscale.execute === undefined
          ? []
          : [
              {
                method: PsdbDatabase.method.execute,
                impl: options.planetscale.execute as FastUnaryMethod["impl"],
                jsonOptions: psdbJsonOptions,
                errorBody: withErrorObject,
              },
            ]),
      ],
      interceptors,
      contextValues: (req) =>
        createContextValues().set(kClientCertificateName, clientCertificateName(req)),
      ...limits,
      compressMinBytes,
      jsonOptions,
      closing: () => options.core.closing.aborted,
      taken: () => metrics.calls.fastPath(),
    });
  }
  await app.register(fastifyConnectPlugin, {
    routes,
    interceptors,
    contextValues,
    // Connect's defaults are ~4 GiB and no deadline cap; fastify's bodyLimit
    // does not apply to Connect routes.
    ...limits,
    // Small responses go uncompressed (see compressMinBytes in transport/compression.ts).
    compressMinBytes,
    jsonOptions,
  });
  await app.register(
    psdbHttp({
      service: PsdbDatabase,
      implementation: options.planetscale,
      interceptors,
      contextValues,
      ...limits,
    }),
  );

  if (options.console?.enabled) await app.register(consoleRoute());
  app.get("/metrics", async (_req, reply) => {
    reply.header("content-type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_req, reply) => {
    // Red as soon as shutdown starts, so that load balancers stop sending calls.
    if (options.core.closing.aborted) {
      reply.code(503);
      return { status: "shutting down" };
    }
    // Replicas are details: with none usable, reads go to the primary.
    const replicas = options.replicas();
    const ingest = options.core.ingest.stats();
    const details = {
      ...(replicas.length > 0 ? { replicas } : {}),
      ...(ingest.logKind === "jetstream"
        ? {
            ingestLog: {
              kind: ingest.logKind,
              backlog: ingest.logRecords,
              lagSeconds: ingest.logLagSeconds,
              deadLetters: ingest.rejectedRecords,
            },
          }
        : {}),
    };
    try {
      await options.db.ping(readinessTimeoutMs);
      return { status: "ready", mysql: "ok", ...details };
    } catch (err) {
      reply.code(503);
      const mysql = err instanceof Error ? err.message : String(err);
      return { status: "unavailable", mysql, ...details };
    }
  });
  return app;
}
