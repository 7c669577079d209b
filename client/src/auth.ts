/**
 * Credentials for both entries: `token` (a Bearer token, RFC 6750) or
 * `username` and `password` (Basic, RFC 7617), sent as a standard
 * `authorization` header by an interceptor that runs before the caller's.
 *
 * The gateway checks them against its credentials file (a Bearer token is
 * `name.password`, as `sqlgate credential create` prints it). Imports no
 * `node:` module: the fetch entry uses it too.
 */
import type { Interceptor } from "@connectrpc/connect";

/** Credential options of `createClient`: a token, or a username and password, or none. */
export interface CredentialOptions {
  /** Sent as `authorization: Bearer <token>`. Not together with `username`/`password`. */
  readonly token?: string;
  /** With `password`: sent as `authorization: Basic base64(username:password)`, UTF-8. */
  readonly username?: string;
  readonly password?: string;
}

/**
 * The `authorization` header value that `options` ask for, or undefined.
 * Throws a TypeError for a combination that cannot be meant (a token and a
 * password, a username without a password); the messages never carry the
 * values, since errors end up in logs.
 */
export function authorizationFromOptions(options: CredentialOptions): string | undefined {
  const { token, username, password } = options;
  const basic = username !== undefined || password !== undefined;
  if (token !== undefined) {
    if (basic) {
      throw new TypeError("createClient: pass either token or username/password, not both");
    }
    // RFC 6750's b64token is visible ASCII; anything else is not a header value.
    if (!/^[\x21-\x7e]+$/.test(token)) {
      throw new TypeError("createClient: token must be non-empty visible ASCII");
    }
    return `Bearer ${token}`;
  }
  if (!basic) return undefined;
  if (username === undefined) throw new TypeError("createClient: password needs a username");
  if (password === undefined) throw new TypeError("createClient: username needs a password");
  // RFC 7617 section 2: the user-id ends at the first colon.
  if (username.includes(":")) throw new TypeError("createClient: username must not contain ':'");
  return `Basic ${base64FromBytes(new TextEncoder().encode(`${username}:${password}`))}`;
}

/**
 * `interceptors` with one in front that sets the `authorization` header from
 * `options`, if they carry credentials. The caller's interceptors run after
 * it, so one of them may still replace the header (for a token that expires).
 */
export function interceptorsWithCredentials(
  options: CredentialOptions,
  interceptors: readonly Interceptor[] = [],
): Interceptor[] {
  const authorization = authorizationFromOptions(options);
  if (authorization === undefined) return [...interceptors];
  const setAuthorization: Interceptor = (next) => (req) => {
    req.header.set("authorization", authorization);
    return next(req);
  };
  return [setAuthorization, ...interceptors];
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/**
 * Standard base64 with padding (RFC 4648 section 4). Written out rather than
 * `btoa`, which takes Latin-1 strings only and is missing from some
 * sandboxes, and rather than `Buffer`, which only Node has.
 */
export function base64FromBytes(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const a = bytes[i] ?? 0;
    const b = bytes[i + 1] ?? 0;
    const c = bytes[i + 2] ?? 0;
    out += alphabet.charAt(a >> 2) + alphabet.charAt(((a & 3) << 4) | (b >> 4));
    out += i + 1 < bytes.length ? alphabet.charAt(((b & 15) << 2) | (c >> 6)) : "=";
    out += i + 2 < bytes.length ? alphabet.charAt(c & 63) : "=";
  }
  return out;
}
