/**
 * Reads a credential from an `Authorization` header: HTTP Basic
 * (`name:password`, as @planetscale/database sends it) or a Bearer token
 * (`name.password`, as `sqlgate credential create` prints it).
 *
 * @planetscale/database takes the user and password from a URL without
 * decoding them, so a password written `p%40ss` in a URL arrives so; callers
 * try `alternative` (the decoded form) when the literal one does not match.
 */
export interface PresentedCredential {
  readonly name: string;
  readonly password: string;
  /** The password percent-decoded, when that differs from it. */
  readonly alternative: string | undefined;
}

function decoded(text: string): string | undefined {
  if (!text.includes("%")) return undefined;
  try {
    const plain = decodeURIComponent(text);
    return plain === text ? undefined : plain;
  } catch {
    return undefined;
  }
}

/** The credential a header presents; undefined when it presents none it could be. */
export function presentedCredential(header: string | null): PresentedCredential | undefined {
  if (header === null) return undefined;
  const space = header.indexOf(" ");
  if (space === -1) return undefined;
  const scheme = header.slice(0, space).toLowerCase();
  const value = header.slice(space + 1).trim();
  let name: string;
  let password: string;
  if (scheme === "basic") {
    const text = Buffer.from(value, "base64").toString("utf8");
    const colon = text.indexOf(":");
    if (colon === -1) return undefined;
    name = text.slice(0, colon);
    password = text.slice(colon + 1);
  } else if (scheme === "bearer") {
    const dot = value.indexOf(".");
    if (dot === -1) return undefined;
    name = value.slice(0, dot);
    password = value.slice(dot + 1);
  } else {
    return undefined;
  }
  return { name: decoded(name) ?? name, password, alternative: decoded(password) };
}
