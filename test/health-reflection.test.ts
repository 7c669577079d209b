/**
 * gRPC health checking and server reflection on the gateway's one port, with
 * the clients that rely on them: @grpc/grpc-js for health (as load balancers
 * and Kubernetes' gRPC probes do), `buf curl` with no schema for reflection,
 * and connect-node's gRPC transport for the older v1alpha reflection.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { create, fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  type HealthCheckRequest,
  HealthCheckRequestSchema,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ServerReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import {
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  ServerReflection as ServerReflectionV1alpha,
} from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ExecuteResponseSchema } from "../gen/sqlgate/v1/database_pb.js";
import { startEmbeddedMysql } from "../server/devdb/embedded-mysql.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

const run = promisify(execFile);

/** A grpc-js health client on `port`, closed when the test ends. */
function healthClient(t: { after(fn: () => unknown): void }, port: number) {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const serialize = (m: HealthCheckRequest) => Buffer.from(toBinary(HealthCheckRequestSchema, m));
  const deserialize = (b: Buffer) => fromBinary(HealthCheckResponseSchema, b);
  return {
    check: (service: string) =>
      new Promise<HealthCheckResponse>((resolve, reject) => {
        client.makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          serialize,
          deserialize,
          create(HealthCheckRequestSchema, { service }),
          (err, res) => (err ? reject(err) : resolve(res as HealthCheckResponse)),
        );
      }),
    /** The Watch call; read its statuses with `next()`, end it with `cancel()`. */
    watch(service: string) {
      const call = client.makeServerStreamRequest(
        "/grpc.health.v1.Health/Watch",
        serialize,
        deserialize,
        create(HealthCheckRequestSchema, { service }),
      );
      call.on("error", () => {}); // CANCELLED once the test cancels it.
      const received: ServingStatus[] = [];
      const waiting: ((s: ServingStatus) => void)[] = [];
      call.on("data", (res: HealthCheckResponse) => {
        const w = waiting.shift();
        if (w) w(res.status);
        else received.push(res.status);
      });
      return {
        next: () =>
          new Promise<ServingStatus>((resolve) => {
            const s = received.shift();
            if (s !== undefined) resolve(s);
            else waiting.push(resolve);
          }),
        cancel: () => call.cancel(),
      };
    },
  };
}

function bufCurl(args: string[]) {
  return run("npx", ["buf", "curl", "--http2-prior-knowledge", ...args], {
    maxBuffer: 16 * 1024 * 1024,
  });
}

test("health: SERVING with MySQL, NOT_FOUND for unknown services, Watch starts with SERVING", async (t) => {
  const { url } = await createTestDatabase(t);
  const gateway = await startGateway(t, url);
  const health = healthClient(t, gateway.port);

  for (const service of ["", "sqlgate.v1.DatabaseService", "sqlgate.v1.IngestService"]) {
    assert.equal((await health.check(service)).status, ServingStatus.SERVING, service);
  }
  await assert.rejects(health.check("no.such.Service"), (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.NOT_FOUND);
    return true;
  });

  const watch = health.watch("sqlgate.v1.DatabaseService");
  assert.equal(await watch.next(), ServingStatus.SERVING);
  watch.cancel();

  const unknown = health.watch("no.such.Service");
  assert.equal(await unknown.next(), ServingStatus.SERVICE_UNKNOWN);
  unknown.cancel();
});

test("health: NOT_SERVING once MySQL is gone, and Watch reports the change", async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-health-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const mysql = await startEmbeddedMysql({ dataDir });
  t.after(() => mysql.stop());
  const gateway = await startGateway(t, mysql.url);
  const health = healthClient(t, gateway.port);

  const watch = health.watch("");
  assert.equal(await watch.next(), ServingStatus.SERVING);
  await mysql.stop();
  assert.equal((await health.check("")).status, ServingStatus.NOT_SERVING);
  assert.equal(await watch.next(), ServingStatus.NOT_SERVING);
  watch.cancel();
});

test("health: an open Watch ends with NOT_SERVING when the gateway closes, without holding close()", async (t) => {
  const { url } = await createTestDatabase(t);
  // Closed by the test itself, not by startGateway's t.after.
  const gateway = await startGateway({ after: () => {} }, url);
  const client = new grpc.Client(`127.0.0.1:${gateway.port}`, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const call = client.makeServerStreamRequest(
    "/grpc.health.v1.Health/Watch",
    (m: HealthCheckRequest) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
    (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
    create(HealthCheckRequestSchema, {}),
  );
  const statuses: ServingStatus[] = [];
  const ended = new Promise<void>((resolve) => {
    call.on("data", (res: HealthCheckResponse) => statuses.push(res.status));
    call.on("error", () => resolve());
    call.on("end", () => resolve());
  });
  while (statuses.length === 0) await new Promise((r) => setTimeout(r, 10));

  const started = Date.now();
  await gateway.close();
  await ended;
  assert.ok(Date.now() - started < 3000, `close() took ${Date.now() - started} ms`);
  assert.deepEqual(statuses, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
});

test("reflection: buf curl lists and calls services with no schema", async (t) => {
  const { url } = await createTestDatabase(t);
  const gateway = await startGateway(t, url);

  for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
    const { stdout } = await bufCurl([
      "--reflect-protocol",
      protocol,
      "--list-services",
      gateway.baseUrl,
    ]);
    const services = stdout.trim().split("\n");
    for (const name of [
      "sqlgate.v1.DatabaseService",
      "sqlgate.v1.IngestService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]) {
      assert.ok(services.includes(name), `${protocol}: ${name} not in ${stdout}`);
    }
  }

  const methods = await bufCurl(["--list-methods", gateway.baseUrl]);
  assert.ok(
    methods.stdout.split("\n").includes("sqlgate.v1.DatabaseService/Execute"),
    methods.stdout,
  );

  for (const protocol of ["connect", "grpc", "grpcweb"]) {
    const { stdout } = await bufCurl([
      "--protocol",
      protocol,
      "-d",
      '{"sql":"SELECT 1"}',
      `${gateway.baseUrl}/sqlgate.v1.DatabaseService/Execute`,
    ]);
    const res = fromJson(ExecuteResponseSchema, JSON.parse(stdout));
    assert.equal(res.rows.length, 1, protocol);
    assert.equal(res.rows[0]?.values[0]?.kind.value, 1n, protocol);
  }
});

test("reflection: v1alpha and v1 over connect-node's gRPC transport", async (t) => {
  const { url } = await createTestDatabase(t);
  const gateway = await startGateway(t, url);
  const transport = createGrpcTransport({ baseUrl: gateway.baseUrl });

  const alpha = createClient(ServerReflectionV1alpha, transport);
  async function* requests(): AsyncIterable<ServerReflectionRequest> {
    yield create(ServerReflectionRequestSchema, {
      messageRequest: { case: "listServices", value: "" },
    });
  }
  const names: string[] = [];
  for await (const res of alpha.serverReflectionInfo(requests())) {
    assert.equal(res.messageResponse.case, "listServicesResponse");
    if (res.messageResponse.case === "listServicesResponse") {
      names.push(...res.messageResponse.value.service.map((s) => s.name));
    }
  }
  assert.ok(names.includes("sqlgate.v1.DatabaseService"), names.join());
  assert.ok(names.includes("grpc.health.v1.Health"), names.join());

  // One stream, several questions: files come with their imports, unknown
  // symbols are a NOT_FOUND error_response, not a failed call.
  const v1 = createClient(ServerReflectionV1, transport);
  const answers = [];
  for await (const res of v1.serverReflectionInfo(
    (async function* () {
      yield {
        messageRequest: {
          case: "fileContainingSymbol" as const,
          value: "sqlgate.v1.DatabaseService.Execute",
        },
      };
      yield {
        messageRequest: { case: "fileByFilename" as const, value: "google/protobuf/struct.proto" },
      };
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "no.Such" } };
    })(),
  )) {
    answers.push(res.messageResponse);
  }
  assert.equal(answers.length, 3);
  const [bySymbol, byName, missing] = answers;
  assert.equal(bySymbol?.case, "fileDescriptorResponse");
  if (bySymbol?.case === "fileDescriptorResponse") {
    const files = bySymbol.value.fileDescriptorProto.map(
      (b) => fromBinary(FileDescriptorProtoSchema, b).name,
    );
    assert.equal(files[0], "sqlgate/v1/database.proto");
    assert.ok(files.includes("google/protobuf/struct.proto"), files.join());
  }
  assert.equal(byName?.case, "fileDescriptorResponse");
  assert.equal(missing?.case, "errorResponse");
  if (missing?.case === "errorResponse") assert.equal(missing.value.errorCode, 5);
});
