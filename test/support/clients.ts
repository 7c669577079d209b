/**
 * Every kind of client people use against sqlgate, each able to call
 * DatabaseService.Execute: the connect-node transports (Connect JSON and
 * binary, gRPC, gRPC-Web), @grpc/grpc-js, curl over HTTP/1.1 and h2c, and
 * `buf curl`. Tests run the same assertions through all of them.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import {
  create,
  fromBinary,
  fromJson,
  type MessageInitShape,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  DatabaseService,
  type ExecuteRequest,
  ExecuteRequestSchema,
  type ExecuteResponse,
  ExecuteResponseSchema,
} from "../../gen/sqlgate/v1/database_pb.js";

const run = promisify(execFile);

export type ExecuteInit = MessageInitShape<typeof ExecuteRequestSchema>;

export interface ExecuteClient {
  readonly name: string;
  execute(request: ExecuteInit): Promise<ExecuteResponse>;
}

const executePath = "/sqlgate.v1.DatabaseService/Execute";

function viaTransport(name: string, transport: Transport): ExecuteClient {
  const client = createClient(DatabaseService, transport);
  return { name, execute: (request) => client.execute(request) };
}

function viaGrpcJs(port: number): ExecuteClient {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return {
    name: "@grpc/grpc-js",
    execute: (request) =>
      new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          executePath,
          (m: ExecuteRequest) => Buffer.from(toBinary(ExecuteRequestSchema, m)),
          (b: Buffer) => fromBinary(ExecuteResponseSchema, b),
          create(ExecuteRequestSchema, request),
          (err, res) => {
            if (err) reject(new ConnectError(err.details, err.code as number as Code));
            else if (res) resolve(res);
          },
        );
      }),
  };
}

/** A Connect JSON error body as a ConnectError, so all clients fail alike. */
function errorFromJson(body: string): ConnectError {
  const parsed = JSON.parse(body) as { code?: string; message?: string };
  const code = Object.entries(Code).find(
    ([key]) => key.replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c.toLowerCase()) === parsed.code,
  )?.[1] as Code | undefined;
  return new ConnectError(parsed.message ?? body, code ?? Code.Unknown);
}

/** curl with a Connect JSON body on stdin; `-w` appends the HTTP status. */
function viaCurl(baseUrl: string, http2: boolean): ExecuteClient {
  return {
    name: http2 ? "curl --http2-prior-knowledge" : "curl HTTP/1.1",
    async execute(request) {
      const body = JSON.stringify(
        toJson(ExecuteRequestSchema, create(ExecuteRequestSchema, request)),
      );
      const child = spawn("curl", [
        "-sS",
        http2 ? "--http2-prior-knowledge" : "--http1.1",
        "-H",
        "content-type: application/json",
        "-w",
        "\n%{http_code}",
        "--data-binary",
        "@-",
        `${baseUrl}${executePath}`,
      ]);
      child.stdin.end(body);
      let stdout = "";
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk;
      });
      await new Promise<void>((resolve, reject) => {
        child.once("error", reject);
        child.once("close", (code) =>
          code === 0 ? resolve() : reject(new Error(`curl exited with ${code}`)),
        );
      });
      return parseCurlOutput(stdout);
    },
  };
}

function parseCurlOutput(stdout: string): ExecuteResponse {
  const cut = stdout.lastIndexOf("\n");
  const status = Number(stdout.slice(cut + 1));
  const body = stdout.slice(0, cut);
  if (status !== 200) throw errorFromJson(body);
  return fromJson(ExecuteResponseSchema, JSON.parse(body));
}

/** `buf curl` (the Go client) with the schema read from proto/. */
function viaBufCurl(baseUrl: string): ExecuteClient {
  return {
    name: "buf curl",
    async execute(request) {
      const body = JSON.stringify(
        toJson(ExecuteRequestSchema, create(ExecuteRequestSchema, request)),
      );
      try {
        const { stdout } = await run(
          "npx",
          [
            "buf",
            "curl",
            "--schema",
            "proto",
            "--protocol",
            "connect",
            "--http2-prior-knowledge",
            "-d",
            body,
            `${baseUrl}${executePath}`,
          ],
          { maxBuffer: 64 * 1024 * 1024 },
        );
        return fromJson(ExecuteResponseSchema, JSON.parse(stdout));
      } catch (err) {
        const stdout = (err as { stdout?: string }).stdout ?? "";
        const json = stdout.trim() ? stdout : ((err as { stderr?: string }).stderr ?? "");
        throw errorFromJson(json.slice(json.indexOf("{")));
      }
    },
  };
}

/** Every client, over cleartext, against a gateway at `baseUrl` on `port`. */
export function allClients(baseUrl: string, port: number): ExecuteClient[] {
  return [
    viaTransport(
      "Connect JSON, HTTP/1.1",
      createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
    ),
    viaTransport(
      "Connect binary, h2c",
      createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }),
    ),
    viaTransport(
      "Connect JSON, h2c",
      createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: false }),
    ),
    viaTransport("gRPC, h2c", createGrpcTransport({ baseUrl })),
    viaTransport(
      "gRPC-Web binary, HTTP/1.1",
      createGrpcWebTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true }),
    ),
    viaGrpcJs(port),
    viaCurl(baseUrl, false),
    viaCurl(baseUrl, true),
    viaBufCurl(baseUrl),
  ];
}

/** A typed DatabaseService client over connect-node's Connect transport. */
export function databaseClient(baseUrl: string, httpVersion: "1.1" | "2" = "2") {
  return createClient(DatabaseService, createConnectTransport({ baseUrl, httpVersion }));
}

/** The ConnectError `promise` rejects with; fails the test if it resolves. */
export async function refusal(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail("the call succeeded");
}
