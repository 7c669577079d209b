/**
 * Who a call runs as: the credential that authenticated it (see auth/), or
 * the anonymous principal of a gateway without credentials. Handlers read it
 * from the call's context values, as they read the core.
 */
import { createContextKey } from "@connectrpc/connect";

export const roles = ["read_write", "read_only", "ingest_only"] as const;
export type Role = (typeof roles)[number];

/** What one credential may use at once; 0 means no limit of its own. */
export interface PrincipalLimits {
  /** Calls in progress at once (streams count for as long as they last). */
  readonly maxCalls: number;
  /** Transactions and pinned sessions open at once. */
  readonly maxTransactions: number;
  /** Calls started per second, on average (bursts up to one second's worth). */
  readonly callsPerSecond: number;
}

export interface Principal {
  /** The credential's name; "" for the anonymous principal. */
  readonly name: string;
  /** The database its statements run on; undefined: the MySQL URL's. */
  readonly database: string | undefined;
  readonly role: Role;
  readonly limits: PrincipalLimits;
  /** The MySQL account its statements run as; undefined: the MySQL URL's. */
  readonly account?: { readonly user: string; readonly password: string } | undefined;
}

export const noLimits: PrincipalLimits = { maxCalls: 0, maxTransactions: 0, callsPerSecond: 0 };

/** Everyone, on a gateway without credentials (which listens on loopback only). */
export const anonymous: Principal = {
  name: "",
  database: undefined,
  role: "read_write",
  limits: noLimits,
};

export const kPrincipal = createContextKey<Principal>(anonymous, {
  description: "the credential a call runs as",
});

export function principalFrom(values: {
  get<T>(key: { id: symbol; defaultValue: T }): T;
}): Principal {
  return values.get(kPrincipal);
}

/**
 * The common name of the client certificate the call's TLS connection
 * presented and the gateway verified (SQLGATE_TLS_CLIENT_CA); undefined
 * without one. Set by the transport, read by authentication.
 */
export const kClientCertificateName = createContextKey<string | undefined>(undefined, {
  description: "the verified client certificate's common name",
});
