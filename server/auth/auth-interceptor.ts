/**
 * Authenticates every call and says who it runs as (see services/principal.ts).
 *
 * Without a credential store (no SQLGATE_CREDENTIALS_FILE) every call runs as
 * the anonymous principal; config.ts allows that on loopback only. With one,
 * a call must present a credential (HTTP Basic or Bearer), or come on a TLS
 * connection whose verified client certificate's common name names one
 * (SQLGATE_TLS_CLIENT_CA), or is answered `unauthenticated`; its role then
 * decides which services it may call. A header, when sent, is what counts. gRPC
 * health and server reflection answer anyone: load balancers probe health
 * without credentials, and reflection describes only the public API.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { IngestService } from "../../gen/sqlgate/v1/ingest_pb.js";
import { hopHeader, verifyHop } from "../cluster/hop.js";
import {
  kClientCertificateName,
  kPrincipal,
  type Principal,
  type PrincipalLimits,
} from "../principal.js";
import type { TokenCodec } from "../sessions/session-token.js";
import { presentedCredential } from "./authorization-header.js";
import { createCallLimiter } from "./call-limiter.js";
import type { Credential, CredentialStore } from "./credentials.js";

const openServices = new Set([
  Health.typeName,
  ServerReflection.typeName,
  ServerReflectionV1alpha.typeName,
]);

function unauthenticated(message: string): ConnectError {
  return new ConnectError(
    message,
    Code.Unauthenticated,
    new Headers({ "www-authenticate": 'Basic realm="sqlgate", charset="UTF-8"' }),
  );
}

/** Whether `principal` may call `service` at all; throws `permission_denied` if not. */
function checkRole(principal: Principal, service: string): void {
  const ingest = service === IngestService.typeName;
  if (principal.role === "ingest_only" && !ingest) {
    throw new ConnectError(
      `credential ${principal.name} is ingest_only: it may call sqlgate.v1.IngestService only`,
      Code.PermissionDenied,
    );
  }
  if (principal.role === "read_only" && ingest) {
    throw new ConnectError(
      `credential ${principal.name} is read_only: it may not ingest`,
      Code.PermissionDenied,
    );
  }
}

/** The credential a call presents; throws `unauthenticated` for none or a wrong one. */
async function authenticate(
  store: CredentialStore,
  authorization: string | null,
  certificateName: string | undefined,
): Promise<Credential> {
  const presented = presentedCredential(authorization);
  if (presented === undefined) {
    const byCertificate = certificateName === undefined ? undefined : store.get(certificateName);
    if (byCertificate !== undefined) return byCertificate;
    throw unauthenticated(
      certificateName === undefined
        ? "this gateway needs a credential: send Authorization: Basic base64(name:password), or Bearer name.password"
        : `no credential is named ${certificateName}, the client certificate's common name`,
    );
  }
  let credential = await store.authenticate(presented.name, presented.password);
  if (credential === undefined && presented.alternative !== undefined) {
    credential = await store.authenticate(presented.name, presented.alternative);
  }
  if (credential === undefined) throw unauthenticated("unknown credential or wrong password");
  return credential;
}

/** `messages`, then `release()` once they end, fail or are abandoned. */
async function* releasingAfter<T>(messages: AsyncIterable<T>, release: () => void) {
  try {
    yield* messages;
  } finally {
    release();
  }
}

export function createAuthInterceptor(
  store: CredentialStore | undefined,
  defaults: PrincipalLimits,
  codec: TokenCodec,
): Interceptor {
  const limiter = createCallLimiter();
  const principalOf = (credential: Credential): Principal => ({
    name: credential.name,
    database: credential.database,
    role: credential.role,
    limits: { ...defaults, ...credential.limits },
    account: credential.account,
  });
  return (next) => async (req) => {
    const hop = req.header.get(hopHeader);
    if (hop !== null) {
      // Forwarded by another replica, which authenticated and limited it.
      const name = verifyHop(codec, hop);
      const credential = name === undefined || store === undefined ? undefined : store.get(name);
      if (name === undefined || (store !== undefined && credential === undefined)) {
        throw unauthenticated(
          "a forwarded call whose hop does not verify (SQLGATE_TOKEN_SECRET differs?)",
        );
      }
      if (credential !== undefined) req.contextValues.set(kPrincipal, principalOf(credential));
      return next(req);
    }
    if (store === undefined || openServices.has(req.service.typeName)) return next(req);
    const credential = await authenticate(
      store,
      req.header.get("authorization"),
      req.contextValues.get(kClientCertificateName),
    );
    const principal = principalOf(credential);
    checkRole(principal, req.service.typeName);
    req.contextValues.set(kPrincipal, principal);
    const release = limiter.enter(principal);
    try {
      const res = await next(req);
      if (!res.stream) {
        release();
        return res;
      }
      // A server stream holds its slot for as long as it lasts.
      return { ...res, message: releasingAfter(res.message, release) };
    } catch (err) {
      release();
      throw err;
    }
  };
}
