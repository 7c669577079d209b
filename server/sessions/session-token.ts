/**
 * Transaction tokens: opaque to clients, signed with HMAC-SHA256 so that a
 * forged or tampered token is refused before any lookup, and naming the
 * replica that holds the transaction's connection.
 *
 * Form: `sg1.<base64url JSON claims>.<base64url HMAC of the claims part>`.
 * Several secrets may verify (key rotation); the first one signs.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";

export interface TokenClaims {
  /** The session's random id. */
  readonly sessionId: string;
  /** The replica that owns the session's connection. */
  readonly node: string;
}

export interface TokenCodec {
  sign(claims: TokenClaims): string;
  /** The claims of a genuine token; `invalid_argument` for anything else. */
  verify(token: string): TokenClaims;
  /** An HMAC of `text` with the signing secret (for tokens carried in other forms). */
  mac(text: string): Buffer;
  /** Whether `signature` is an HMAC of `text` with one of the secrets. */
  verifyMac(text: string, signature: Uint8Array): boolean;
}

const prefix = "sg1.";

function mac(secret: Buffer, payload: string): Buffer {
  return createHmac("sha256", secret).update(payload).digest();
}

export function createTokenCodec(secrets: readonly Buffer[]): TokenCodec {
  const [signing] = secrets;
  if (signing === undefined) throw new Error("at least one token secret is required");
  const invalid = (why: string) =>
    new ConnectError(`invalid transaction token: ${why}`, Code.InvalidArgument);
  const verifyMac = (text: string, given: Uint8Array) =>
    secrets.some((secret) => {
      const expected = mac(secret, text);
      return given.length === expected.length && timingSafeEqual(given, expected);
    });
  return {
    mac: (text) => mac(signing, text),
    verifyMac,
    sign(claims) {
      const payload = Buffer.from(JSON.stringify({ s: claims.sessionId, n: claims.node })).toString(
        "base64url",
      );
      return `${prefix}${payload}.${mac(signing, payload).toString("base64url")}`;
    },
    verify(token) {
      if (!token.startsWith(prefix)) throw invalid("not a sqlgate transaction token");
      const [payload, signature, extra] = token.slice(prefix.length).split(".");
      if (payload === undefined || signature === undefined || extra !== undefined) {
        throw invalid("malformed");
      }
      if (!verifyMac(payload, Buffer.from(signature, "base64url"))) {
        throw invalid("the signature does not match (forged or altered)");
      }
      const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as {
        s?: unknown;
        n?: unknown;
      };
      if (typeof claims.s !== "string" || typeof claims.n !== "string") throw invalid("malformed");
      return { sessionId: claims.s, node: claims.n };
    },
  };
}
