/**
 * gRPC server reflection (https://github.com/grpc/grpc/blob/master/doc/server-reflection.md),
 * so that `buf curl`, grpcurl and Postman call sqlgate without a copy of its
 * protos. Both `grpc.reflection.v1` and the older `v1alpha` that many clients
 * still try first are served by one implementation: the two versions' messages
 * are identical on the wire, so v1alpha calls are re-read as v1 messages.
 */
import {
  create,
  type DescFile,
  type DescMessage,
  type DescService,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import {
  type ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflectionRequestSchema as ServerReflectionRequestSchemaV1alpha,
  ServerReflectionResponseSchema as ServerReflectionResponseSchemaV1alpha,
  type ServerReflection as ServerReflectionV1alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** The reflection services, v1 and v1alpha, over the same answers. */
export interface ReflectionServices {
  readonly v1: ServiceImpl<typeof ServerReflection>;
  readonly v1alpha: ServiceImpl<typeof ServerReflectionV1alpha>;
}

/** Files by name and by the fully-qualified symbols they declare. */
interface SchemaIndex {
  readonly serviceNames: readonly string[];
  readonly files: ReadonlyMap<string, DescFile>;
  readonly symbols: ReadonlyMap<string, DescFile>;
}

function indexOf(services: readonly DescService[]): SchemaIndex {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const addMessage = (file: DescFile, message: DescMessage) => {
    symbols.set(message.typeName, file);
    for (const field of message.fields) symbols.set(`${message.typeName}.${field.name}`, file);
    for (const nested of message.nestedMessages) addMessage(file, nested);
    for (const nested of message.nestedEnums) symbols.set(nested.typeName, file);
    for (const ext of message.nestedExtensions) symbols.set(ext.typeName, file);
  };
  const addFile = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const message of file.messages) addMessage(file, message);
    for (const e of file.enums) symbols.set(e.typeName, file);
    for (const ext of file.extensions) symbols.set(ext.typeName, file);
    for (const service of file.services) {
      symbols.set(service.typeName, file);
      for (const method of service.methods) symbols.set(`${service.typeName}.${method.name}`, file);
    }
    for (const dep of file.dependencies) addFile(dep);
  };
  for (const service of services) addFile(service.file);
  return { serviceNames: services.map((s) => s.typeName), files, symbols };
}

/**
 * `file` and every file it imports, transitively, serialized: the protocol
 * lets a server send files a client already has, and a client needs them all
 * to build the descriptors (well-known types included).
 */
function withDependencies(file: DescFile): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    for (const dep of f.dependencies) visit(dep);
  };
  visit(file);
  return out;
}

function answer(index: SchemaIndex, req: ServerReflectionRequest): ServerReflectionResponse {
  const reply = (
    messageResponse: NonNullable<
      MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"]
    >,
  ) =>
    create(ServerReflectionResponseSchema, {
      validHost: req.host,
      originalRequest: req,
      messageResponse,
    });
  const notFound = (message: string) =>
    reply({ case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: message } });
  const files = (file: DescFile) =>
    reply({
      case: "fileDescriptorResponse",
      value: { fileDescriptorProto: withDependencies(file) },
    });

  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return reply({
        case: "listServicesResponse",
        value: { service: index.serviceNames.map((name) => ({ name })) },
      });
    case "fileByFilename": {
      const file = index.files.get(r.value);
      return file ? files(file) : notFound(`file "${r.value}" not found`);
    }
    case "fileContainingSymbol": {
      const file = index.symbols.get(r.value);
      return file ? files(file) : notFound(`symbol "${r.value}" not found`);
    }
    // sqlgate's schema declares no extensions.
    case "fileContainingExtension":
      return notFound(
        `no extension ${r.value.extensionNumber} of "${r.value.containingType}" is known`,
      );
    case "allExtensionNumbersOfType":
      return index.symbols.has(r.value)
        ? reply({
            case: "allExtensionNumbersResponse",
            value: { baseTypeName: r.value, extensionNumber: [] },
          })
        : notFound(`type "${r.value}" not found`);
    default:
      return reply({
        case: "errorResponse",
        value: { errorCode: Code.InvalidArgument, errorMessage: "empty reflection request" },
      });
  }
}

/**
 * Reflection over `services()`: read on the first call, once every service is
 * registered, so that what is listed is exactly what is served.
 */
export function createReflectionServices(
  services: () => readonly DescService[],
): ReflectionServices {
  let cached: SchemaIndex | undefined;
  const index = () => {
    cached ??= indexOf(services());
    return cached;
  };
  return {
    v1: {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) yield answer(index(), req);
      },
    },
    v1alpha: {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          const v1 = fromBinary(
            ServerReflectionRequestSchema,
            toBinary(ServerReflectionRequestSchemaV1alpha, req),
          );
          const res = answer(index(), v1);
          yield fromBinary(
            ServerReflectionResponseSchemaV1alpha,
            toBinary(ServerReflectionResponseSchema, res),
          );
        }
      },
    },
  };
}
