/**
 * The hop between replicas: a call forwarded to the replica that owns its
 * session carries the caller's credential name, signed with the shared token
 * secret (SQLGATE_TOKEN_SECRET), in one header:
 *
 *   sqlgate-hop: <base64url name>.<unix ms>.<base64url HMAC>
 *
 * The owner trusts the name only if the HMAC verifies and the stamp is
 * recent, and looks the credential up in its own credentials file, so no
 * secret crosses the hop. A call that arrived as a hop is never forwarded on.
 */
import type { TokenCodec } from "../sessions/session-token.js";

export const hopHeader = "sqlgate-hop";
/** The replica that answered, on every response. */
export const nodeHeader = "sqlgate-node";

/** A hop older than this (clock skew included) is refused. */
const maxAgeMs = 60_000;

const signed = (name: string, stamp: string) => `hop\n${name}\n${stamp}`;

/** The hop header for a call of credential `name` (the anonymous principal: ""). */
export function hopFor(codec: TokenCodec, name: string): string {
  const stamp = String(Date.now());
  return `${Buffer.from(name).toString("base64url")}.${stamp}.${codec.mac(signed(name, stamp)).toString("base64url")}`;
}

/** The credential name a hop header vouches for, or undefined if it does not verify. */
export function verifyHop(codec: TokenCodec, header: string): string | undefined {
  const [encodedName, stamp, mac, extra] = header.split(".");
  if (
    encodedName === undefined ||
    stamp === undefined ||
    mac === undefined ||
    extra !== undefined
  ) {
    return undefined;
  }
  if (!/^\d+$/.test(stamp) || Math.abs(Date.now() - Number(stamp)) > maxAgeMs) return undefined;
  const name = Buffer.from(encodedName, "base64url").toString("utf8");
  return codec.verifyMac(signed(name, stamp), Buffer.from(mac, "base64url")) ? name : undefined;
}
