/**
 * Statement parameters typed as JSON in the console: an array for `?`
 * placeholders, an object for `:name` ones. Integers keep every digit
 * (18446744073709551615 is a BIGINT UNSIGNED, not a rounded double): the
 * reviver reads each number's source text (JSON.parse source text access,
 * Chromium 114+) and turns integers into bigints, which the SDK sends as
 * exact 64-bit values. Other numbers are doubles, as in the gateway's plain
 * `params`; for an exact DECIMAL, pass the digits as a string. An object or
 * array as a parameter is sent as a JSON document with the digits it was
 * typed with.
 */
import { json, type Params } from "../client/src/fetch.js";

/** A parse failure the console shows beside the parameters box. */
export class ParamsError extends Error {
  override readonly name = "ParamsError";
}

interface ReviverContext {
  readonly source?: string;
}

/** `text` parsed as JSON with every integer a bigint. Throws a `ParamsError`. */
export function parseExactJson(text: string): unknown {
  try {
    return JSON.parse(text, (_key, parsed: unknown, context?: ReviverContext) => {
      const source = context?.source;
      if (typeof parsed === "number" && source !== undefined && /^-?\d+$/.test(source)) {
        return BigInt(source);
      }
      return parsed;
    });
  } catch (err) {
    throw new ParamsError(
      `Parameters are not JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/** The parameters in `text` (empty or blank: none). Throws a `ParamsError` saying what is wrong. */
export function parseParams(text: string): Params | undefined {
  if (text.trim() === "") return undefined;
  const value = parseExactJson(text);
  if (Array.isArray(value)) return value.map(documentsAsJson);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, documentsAsJson(v)]));
  }
  throw new ParamsError(
    "Parameters must be a JSON array (for ? placeholders) or object (for :name placeholders)",
  );
}

/** A parameter that is an object or array as a JSON `Value`; anything else unchanged. */
function documentsAsJson(value: unknown): unknown {
  return value !== null && typeof value === "object" ? json(jsonText(value)) : value;
}

/** JSON text of a parsed document whose integers are bigints, written with all their digits. */
export function jsonText(value: unknown): string {
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return `[${value.map(jsonText).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const members = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`);
    return `{${members.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}
