/**
 * The SDK's fetch entry as a web runtime sees it: bundled by esbuild for a
 * neutral platform, and run in a `node:vm` context whose only globals are web
 * APIs (no `process`, `Buffer`, `require` or `btoa`).
 */
import assert from "node:assert/strict";
import vm from "node:vm";
import { build } from "esbuild";

/** `entry` (a path from the repository root) and everything it imports, as one script defining `globalThis.sqlgate`. */
export async function bundle(entry: string) {
  const result = await build({
    entryPoints: [new URL(`../../${entry}`, import.meta.url).pathname],
    bundle: true,
    write: false,
    metafile: true,
    format: "iife",
    globalName: "sqlgate",
    platform: "neutral",
    mainFields: ["module", "main"],
    target: "es2022",
    logLevel: "silent",
  });
  const output = result.outputFiles[0];
  assert.ok(output, "esbuild wrote no bundle");
  return { code: output.text, metafile: result.metafile };
}

/** A context with web globals only, sharing this process's fetch (HTTP/1.1 via undici). */
export function webContext(fetch: typeof globalThis.fetch) {
  return vm.createContext({
    fetch,
    Headers,
    Request,
    Response,
    AbortController,
    AbortSignal,
    TextEncoder,
    TextDecoder,
    URL,
    URLSearchParams,
    ReadableStream,
    WritableStream,
    TransformStream,
    Blob,
    DOMException,
    Event,
    EventTarget,
    crypto: globalThis.crypto,
    setTimeout,
    clearTimeout,
    queueMicrotask,
    console,
  });
}
