/**
 * Statement parameters from JavaScript: an array for `?` placeholders, a
 * plain object for `:name` placeholders, each value through `valueFromJs`
 * and sent lossless (`typed_params` / `typed_named_params`).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Value } from "../../gen/sqlgate/v1/value_pb.js";
import { valueFromJs } from "./values.js";

/**
 * `?` parameters in order, or `:name` parameters by name. Values convert as
 * `valueFromJs` says (bigint exact, Uint8Array as bytes, Date as UTC text,
 * plain objects and arrays as JSON, `decimal("1.10")` for an explicit kind).
 */
export type Params = readonly unknown[] | { readonly [name: string]: unknown };

/** The request fields that carry `params`. */
export interface ParamFields {
  typedParams?: Value[];
  typedNamedParams?: { [name: string]: Value };
}

export function paramFieldsFromJs(params: Params | undefined): ParamFields {
  if (params === undefined || params === null) return {};
  if (Array.isArray(params)) {
    return {
      typedParams: params.map((value, i) =>
        withContext(`parameter ${i + 1}`, () => valueFromJs(value)),
      ),
    };
  }
  const proto = Object.getPrototypeOf(params);
  if (typeof params !== "object" || (proto !== Object.prototype && proto !== null)) {
    throw new ConnectError(
      "params: expected an array (for ? placeholders) or a plain object (for :name placeholders)",
      Code.InvalidArgument,
    );
  }
  const typedNamedParams: { [name: string]: Value } = {};
  for (const [name, value] of Object.entries(params)) {
    typedNamedParams[name] = withContext(`parameter :${name}`, () => valueFromJs(value));
  }
  return { typedNamedParams };
}

function withContext(what: string, convert: () => Value): Value {
  try {
    return convert();
  } catch (err) {
    if (err instanceof ConnectError) {
      throw new ConnectError(`${what}: ${err.rawMessage}`, err.code);
    }
    throw err;
  }
}
