/** Registers every service on the Connect router, and nothing else. */
import type { ConnectRouter } from "@connectrpc/connect";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { IngestService } from "../gen/sqlgate/v1/ingest_pb.js";
import { databaseService } from "./services/database-service.js";
import { ingestService } from "./services/ingest-service.js";

export function routes(router: ConnectRouter): void {
  router.service(DatabaseService, databaseService);
  router.service(IngestService, ingestService);
}
