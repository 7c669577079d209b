/**
 * A `Headers` on a plain Map, for the unary fast path. The fetch standard's
 * Headers (undici's) validates and normalises every name and value and sorts
 * on iteration; the fast path builds three per call from headers Node has
 * already parsed and validated, so that cost buys nothing there. Names are
 * lowercased as they come in; values are kept as given (Node's, or the
 * gateway's own).
 */
export class PlainHeaders implements Headers {
  private readonly map = new Map<string, string>();

  /** Node's request headers, without HTTP/2's pseudo-headers (as Connect's conversion does). */
  static fromNode(headers: Readonly<Record<string, string | string[] | undefined>>): PlainHeaders {
    const out = new PlainHeaders();
    for (const key in headers) {
      if (key.charCodeAt(0) === 58 /* ":" */) continue;
      const value = headers[key];
      if (typeof value === "string") out.map.set(key, value);
      else if (Array.isArray(value)) out.map.set(key, value.join(", "));
    }
    return out;
  }

  get(name: string): string | null {
    return this.map.get(name.toLowerCase()) ?? null;
  }

  has(name: string): boolean {
    return this.map.has(name.toLowerCase());
  }

  set(name: string, value: string): void {
    this.map.set(name.toLowerCase(), String(value));
  }

  append(name: string, value: string): void {
    const key = name.toLowerCase();
    const before = this.map.get(key);
    this.map.set(key, before === undefined ? String(value) : `${before}, ${value}`);
  }

  delete(name: string): void {
    this.map.delete(name.toLowerCase());
  }

  getSetCookie(): string[] {
    const value = this.map.get("set-cookie");
    return value === undefined ? [] : [value];
  }

  forEach(
    callback: (value: string, key: string, parent: Headers) => void,
    thisArg?: unknown,
  ): void {
    for (const [key, value] of this.map) callback.call(thisArg, value, key, this);
  }

  entries(): HeadersIterator<[string, string]> {
    return this.map.entries() as HeadersIterator<[string, string]>;
  }

  keys(): HeadersIterator<string> {
    return this.map.keys() as HeadersIterator<string>;
  }

  values(): HeadersIterator<string> {
    return this.map.values() as HeadersIterator<string>;
  }

  [Symbol.iterator](): HeadersIterator<[string, string]> {
    return this.entries();
  }
}
