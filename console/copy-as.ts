/**
 * "Copy as": the statement in the editor as a command or program that does
 * the same through the API, so that what works in the console can be pasted
 * into a terminal or a code base. Each works as pasted: the password is left
 * out unless asked for and read from an environment variable instead
 * (`SQLGATE_PASSWORD`, `SQLGATE_TOKEN`), so a snippet can be shared safely.
 */
import { toJson } from "@bufbuild/protobuf";
import { json, valueFromJs } from "../client/src/fetch.js";
import { ValueSchema } from "../gen/sqlgate/v1/value_pb.js";
import type { Credentials } from "./connection.js";
import { jsonText, parseExactJson } from "./params.js";

export interface SnippetInput {
  /** The gateway's origin, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  readonly credentials: Credentials;
  readonly sql: string;
  /** The parameters as typed (JSON), or "". */
  readonly paramsText: string;
  /** The open transaction's token, if the statement runs in one. */
  readonly session?: string | undefined;
  /** Put the password or token itself in the snippet. */
  readonly includeSecret: boolean;
}

export type SnippetKind = "curl" | "typescript" | "planetscale";

/** `text` as one POSIX shell word. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

const isSafeInteger = (v: unknown) =>
  typeof v !== "bigint" ||
  (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER));

/** The Execute request body: plain JSON `params` when every number survives a double, else lossless `typedParams`. */
export function requestBody(sql: string, paramsText: string, session?: string): string {
  const members = [`"sql":${JSON.stringify(sql)}`];
  if (paramsText.trim() !== "") {
    const params = parseExactJson(paramsText);
    if (Array.isArray(params)) {
      members.push(
        params.every(isSafeInteger)
          ? `"params":${jsonText(params)}`
          : `"typedParams":[${params.map((p) => JSON.stringify(toJson(ValueSchema, valueFromJs(typeof p === "object" && p !== null ? json(jsonText(p)) : p)))).join(",")}]`,
      );
    } else if (params !== null && typeof params === "object") {
      members.push(`"namedParams":${jsonText(params)}`);
    }
  }
  if (session !== undefined) members.push(`"session":${JSON.stringify(session)}`);
  return `{${members.join(",")}}`;
}

export function curlSnippet(input: SnippetInput): string {
  const lines = [
    `curl -s ${input.url}/sqlgate.v1.DatabaseService/Execute`,
    "-H 'content-type: application/json'",
  ];
  const { username, password, token } = input.credentials;
  if (token !== undefined) {
    lines.push(
      input.includeSecret
        ? `-H ${shellQuote(`authorization: Bearer ${token}`)}`
        : `-H "authorization: Bearer $SQLGATE_TOKEN"`,
    );
  } else if (username !== undefined) {
    lines.push(
      input.includeSecret
        ? `-u ${shellQuote(`${username}:${password ?? ""}`)}`
        : `-u ${shellQuote(username)}":$SQLGATE_PASSWORD"`,
    );
  }
  lines.push(`-d ${shellQuote(requestBody(input.sql, input.paramsText, input.session))}`);
  return lines.join(" \\\n  ");
}

/** A parameter as a TypeScript expression the SDK sends exactly. */
function tsLiteral(value: unknown): string {
  if (typeof value === "bigint") return isSafeInteger(value) ? value.toString() : `${value}n`;
  if (value !== null && typeof value === "object")
    return `json(${JSON.stringify(jsonText(value))})`;
  return JSON.stringify(value) ?? "null";
}

function tsParams(paramsText: string): { code: string; usesJson: boolean } | undefined {
  if (paramsText.trim() === "") return undefined;
  const params = parseExactJson(paramsText);
  let code: string;
  if (Array.isArray(params)) code = `[${params.map(tsLiteral).join(", ")}]`;
  else if (params !== null && typeof params === "object") {
    code = `{ ${Object.entries(params)
      .map(([k, v]) => `${/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k)}: ${tsLiteral(v)}`)
      .join(", ")} }`;
  } else return undefined;
  return { code, usesJson: code.includes("json(") };
}

function secretOption(input: SnippetInput): string[] {
  const { username, password, token } = input.credentials;
  if (token !== undefined)
    return [
      `  token: ${input.includeSecret ? JSON.stringify(token) : 'process.env.SQLGATE_TOKEN ?? ""'},`,
    ];
  if (username === undefined) return [];
  return [
    `  username: ${JSON.stringify(username)},`,
    `  password: ${input.includeSecret ? JSON.stringify(password ?? "") : 'process.env.SQLGATE_PASSWORD ?? ""'},`,
  ];
}

export function typescriptSnippet(input: SnippetInput): string {
  const params = tsParams(input.paramsText);
  const call =
    params === undefined
      ? `${JSON.stringify(input.sql)}`
      : `${JSON.stringify(input.sql)}, ${params.code}`;
  return [
    `import { createClient${params?.usesJson ? ", json" : ""} } from "sqlgate/client/fetch";`,
    "",
    "const db = createClient({",
    `  url: ${JSON.stringify(input.url)},`,
    ...secretOption(input),
    "});",
    `const { rows, fields, rowsAffected } = await db.execute(${call});`,
    "console.log(rows);",
    "",
  ].join("\n");
}

/** A parameter as @planetscale/database takes it: it writes values into the SQL text, so big integers go as strings. */
function psdbLiteral(value: unknown): string {
  if (typeof value === "bigint")
    return isSafeInteger(value) ? value.toString() : JSON.stringify(value.toString());
  if (value !== null && typeof value === "object") return JSON.stringify(jsonText(value));
  return JSON.stringify(value) ?? "null";
}

export function planetscaleSnippet(input: SnippetInput): string {
  const origin = new URL(input.url);
  const { username, password, token } = input.credentials;
  // The driver takes Basic credentials in the URL (a token is name.password).
  const [name, secret] =
    token !== undefined
      ? [token.slice(0, token.indexOf(".")), token.slice(token.indexOf(".") + 1)]
      : [username, password];
  let url: string;
  if (name === undefined) url = JSON.stringify(origin.origin);
  else if (input.includeSecret)
    url = JSON.stringify(
      `${origin.protocol}//${encodeURIComponent(name)}:${encodeURIComponent(secret ?? "")}@${origin.host}`,
    );
  else {
    const variable = token !== undefined ? "SQLGATE_TOKEN_SECRET" : "SQLGATE_PASSWORD";
    url = `\`${origin.protocol}//${encodeURIComponent(name)}:\${encodeURIComponent(process.env.${variable} ?? "")}@${origin.host}\``;
  }
  let call = JSON.stringify(input.sql);
  if (input.paramsText.trim() !== "") {
    const params = parseExactJson(input.paramsText);
    if (Array.isArray(params)) call += `, [${params.map(psdbLiteral).join(", ")}]`;
    else if (params !== null && typeof params === "object") {
      call += `, { ${Object.entries(params)
        .map(([k, v]) => `${JSON.stringify(k)}: ${psdbLiteral(v)}`)
        .join(", ")} }`;
    }
  }
  return [
    'import { connect } from "@planetscale/database";',
    "",
    `const conn = connect({ url: ${url} });`,
    `const { rows, fields, rowsAffected } = await conn.execute(${call});`,
    "console.log(rows);",
    "",
  ].join("\n");
}

export function snippet(kind: SnippetKind, input: SnippetInput): string {
  switch (kind) {
    case "curl":
      return curlSnippet(input);
    case "typescript":
      return typescriptSnippet(input);
    case "planetscale":
      return planetscaleSnippet(input);
  }
}
