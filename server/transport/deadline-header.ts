/**
 * A call's deadline as its request headers name it: Connect's
 * `connect-timeout-ms`, or gRPC's `grpc-timeout` (a number and a unit).
 */

/** gRPC's timeout units, in milliseconds. */
const grpcUnits: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};

/** The deadline in whole milliseconds (at least 1), or undefined when the call names none. */
export function deadlineMsOf(
  header: (name: string) => string | null | undefined,
): number | undefined {
  const connect = header("connect-timeout-ms");
  if (typeof connect === "string" && /^\d+$/.test(connect)) return Number(connect);
  const grpc = /^(\d+)([HMSmun])$/.exec(header("grpc-timeout") ?? "");
  if (!grpc) return undefined;
  return Math.max(1, Math.ceil(Number(grpc[1]) * (grpcUnits[grpc[2] ?? "S"] ?? 1000)));
}
