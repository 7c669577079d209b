/** Registers every service on the Connect router, and names the fast path's methods. */
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ChangeService } from "../gen/sqlgate/v1/changes_pb.js";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { IngestService } from "../gen/sqlgate/v1/ingest_pb.js";
import { changeService } from "./services/change-service.js";
import { databaseService } from "./services/database-service.js";
import { encodeExecuteResponse } from "./services/execute-response-wire.js";
import { createHealthService } from "./services/health-service.js";
import { ingestService } from "./services/ingest-service.js";
import { createReflectionServices } from "./services/reflection-service.js";
import type { FastUnaryMethod } from "./transport/unary-fast-path.js";

/** The hottest unary methods, also served on the fast path (transport/unary-fast-path.ts). */
export const fastUnaryMethods: readonly FastUnaryMethod[] = [
  {
    method: DatabaseService.method.execute,
    impl: databaseService.execute,
    encodeBinary: encodeExecuteResponse,
  },
  { method: IngestService.method.write, impl: ingestService.write },
];

export function routes(router: ConnectRouter): void {
  router.service(DatabaseService, databaseService);
  router.service(IngestService, ingestService);
  router.service(ChangeService, changeService);
  router.service(Health, createHealthService([DatabaseService.typeName, IngestService.typeName]));
  // Reflection lists what the router serves, itself included.
  const reflection = createReflectionServices(() => [
    ...new Map<string, DescService>(
      router.handlers.map((h) => [h.service.typeName, h.service]),
    ).values(),
  ]);
  router.service(ServerReflection, reflection.v1);
  router.service(ServerReflectionV1alpha, reflection.v1alpha);
}
