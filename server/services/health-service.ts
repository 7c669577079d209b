/**
 * `grpc.health.v1.Health`, as gRPC load balancers and Kubernetes' gRPC probes
 * expect it (https://github.com/grpc/grpc/blob/master/doc/health-checking.md).
 * Every sqlgate service needs MySQL and nothing else, so each one is SERVING
 * exactly when MySQL answers a ping.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type Health,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/grpc/health/v1/health_pb.js";
import { coreFrom } from "./context-values.js";

/** A probe's own deadline is often 1 s: answer NOT_SERVING before it gives up. */
const pingTimeoutMs = 500;

/** Watch polls MySQL this often while a client watches. */
const watchIntervalMs = 1000;

/**
 * The health service for `serviceNames` (fully-qualified) and the empty name,
 * which by the protocol stands for the whole server.
 */
export function createHealthService(serviceNames: readonly string[]): ServiceImpl<typeof Health> {
  const known = new Set(["", ...serviceNames]);

  async function status(ctx: HandlerContext): Promise<ServingStatus> {
    const core = coreFrom(ctx.values);
    if (core.closing.aborted) return ServingStatus.NOT_SERVING;
    try {
      await core.ping(pingTimeoutMs);
      return ServingStatus.SERVING;
    } catch {
      return ServingStatus.NOT_SERVING;
    }
  }

  const response = (s: ServingStatus): HealthCheckResponse =>
    create(HealthCheckResponseSchema, { status: s });

  return {
    async check(req, ctx) {
      // The protocol: an unknown service is the NOT_FOUND status, not a message.
      if (!known.has(req.service)) {
        throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
      }
      return response(await status(ctx));
    },

    async list(_req, ctx) {
      const s = await status(ctx);
      return create(HealthListResponseSchema, {
        statuses: Object.fromEntries([...known].map((name) => [name, response(s)])),
      });
    },

    // The protocol: the current status at once, then each change; an unknown
    // service is SERVICE_UNKNOWN and the call stays open. It ends when the
    // client cancels, or with NOT_SERVING when the gateway closes.
    async *watch(req, ctx) {
      const closing = coreFrom(ctx.values).closing;
      const signal = AbortSignal.any([ctx.signal, closing]);
      let last: ServingStatus | undefined;
      try {
        for (;;) {
          const s = known.has(req.service) ? await status(ctx) : ServingStatus.SERVICE_UNKNOWN;
          if (s !== last) {
            last = s;
            yield response(s);
          }
          await sleep(watchIntervalMs, undefined, { signal });
        }
      } catch (err) {
        if (!signal.aborted) throw err;
      }
      if (closing.aborted && !ctx.signal.aborted && last !== ServingStatus.NOT_SERVING) {
        yield response(ServingStatus.NOT_SERVING);
      }
    },
  };
}
