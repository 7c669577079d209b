/**
 * Serves the browser console's built assets (`npm run build` writes them to
 * dist/console/, see scripts/build-console.ts) under `/console`.
 *
 * The console is a client like any other: every call it makes is an
 * ordinary API call carrying an `authorization` header, so these routes
 * serve static files only and need no credentials. What they add is what a
 * page that holds database credentials must have:
 * - a strict Content-Security-Policy: scripts, styles and fetches from this
 *   origin only, no inline script, no framing (clickjacking), no `<base>`,
 *   no form posts;
 * - files from a fixed list read once from the build directory: a request
 *   names an entry of that list or gets a 404, so no path (`..`, encoded
 *   slashes, symlinks) can reach another file;
 * - caching that fits content-hashed names: assets are immutable for a year,
 *   `index.html` is revalidated on every load (`no-cache` and an ETag), so a
 *   new build is picked up at once;
 * - the build's precompressed `.br`/`.gz` files, chosen by Accept-Encoding.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

export interface ConsoleRouteOptions {
  /** The build directory (index.html and assets/); default: dist/console/ of this checkout. */
  readonly dir?: string;
}

/**
 * The console's Content-Security-Policy. CodeMirror injects its styles
 * through constructable stylesheets (`adoptedStyleSheets`), which
 * `style-src 'self'` does not block; nothing else is inline. `img-src data:`
 * is for the inline SVG favicon.
 */
export const consoleContentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const securityHeaders: Record<string, string> = {
  "content-security-policy": consoleContentSecurityPolicy,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

const contentTypes: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

interface Asset {
  readonly body: Buffer;
  readonly gzip: Buffer | undefined;
  readonly brotli: Buffer | undefined;
  readonly contentType: string;
  readonly etag: string;
  readonly cacheControl: string;
}

/** The build directory of this checkout: dist/console/ beside package.json. */
export function defaultConsoleDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "package.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return path.join(dir, "dist/console");
}

/**
 * Reads every file of a build: `index.html` and the files directly under
 * `assets/`, keyed by their URL path below `/console/`. Nothing else is
 * listed, so nothing else can be served.
 */
function readBuild(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const add = (name: string, cacheControl: string) => {
    const file = path.join(dir, name);
    const body = readFileSync(file);
    const extra = (suffix: string) =>
      existsSync(file + suffix) ? readFileSync(file + suffix) : undefined;
    assets.set(name, {
      body,
      gzip: extra(".gz"),
      brotli: extra(".br"),
      contentType: contentTypes[path.extname(name)] ?? "application/octet-stream",
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`,
      cacheControl,
    });
  };
  add("index.html", "no-cache");
  for (const entry of readdirSync(path.join(dir, "assets"), { withFileTypes: true })) {
    if (!entry.isFile() || /\.(gz|br)$/.test(entry.name)) continue;
    add(`assets/${entry.name}`, "public, max-age=31536000, immutable");
  }
  return assets;
}

/** The encoding to send: brotli, else gzip, else none (a `;q=0` refuses one). */
function encodingFor(accept: string | undefined, asset: Asset): "br" | "gzip" | undefined {
  const accepted = new Set(
    (accept ?? "")
      .split(",")
      .map((part) => part.trim().toLowerCase())
      .filter((part) => part !== "" && !/;\s*q=0(\.0*)?$/.test(part))
      .map((part) => part.split(";")[0]?.trim()),
  );
  if (asset.brotli !== undefined && accepted.has("br")) return "br";
  if (asset.gzip !== undefined && accepted.has("gzip")) return "gzip";
  return undefined;
}

/**
 * The routes under `/console`, as a fastify plugin. The build is read at the
 * first request, not at start-up: a gateway whose console nobody opens pays
 * nothing, and a gateway started before `npm run build` answers 503 with
 * what to do until the build exists.
 */
export function consoleRoute(options: ConsoleRouteOptions = {}) {
  const dir = options.dir ?? defaultConsoleDir();
  let build: Map<string, Asset> | undefined;
  const load = (): Map<string, Asset> | undefined => {
    if (build === undefined && existsSync(path.join(dir, "index.html"))) build = readBuild(dir);
    return build;
  };

  const send = (req: FastifyRequest, reply: FastifyReply, name: string) => {
    reply.headers(securityHeaders);
    const assets = load();
    if (assets === undefined) {
      reply.code(503).type("text/plain; charset=utf-8");
      return `The console is not built: run \`npm run build\` (it writes ${dir}).\n`;
    }
    const asset = assets.get(name);
    if (asset === undefined) {
      reply.code(404).type("text/plain; charset=utf-8");
      return "Not found\n";
    }
    reply.header("cache-control", asset.cacheControl);
    reply.header("etag", asset.etag);
    reply.header("vary", "accept-encoding");
    reply.type(asset.contentType);
    if (req.headers["if-none-match"] === asset.etag) {
      reply.code(304);
      return "";
    }
    const encoding = encodingFor(req.headers["accept-encoding"], asset);
    if (encoding !== undefined) reply.header("content-encoding", encoding);
    return encoding === "br" ? asset.brotli : encoding === "gzip" ? asset.gzip : asset.body;
  };

  return async (app: FastifyInstance) => {
    app.get("/console", (req, reply) => send(req, reply, "index.html"));
    // Relative asset URLs resolve against /console, not /console/.
    app.get("/console/", (_req, reply) => reply.headers(securityHeaders).redirect("/console", 308));
    app.get<{ Params: { name: string } }>("/console/assets/:name", (req, reply) =>
      send(req, reply, `assets/${req.params.name}`),
    );
    app.get("/console/*", (req, reply) => send(req, reply, ""));
  };
}
