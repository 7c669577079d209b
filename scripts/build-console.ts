/**
 * Builds the browser console (console/) into dist/console/: one script and
 * one stylesheet bundled and minified by esbuild under content-hashed names,
 * so that the gateway can serve them as immutable (server/transport/console-route.ts),
 * and index.html pointing at them. Each asset is also written precompressed
 * (`.gz`, `.br`), so that the gateway compresses nothing at run time.
 *
 * Prints every asset's raw and gzipped size and fails when the whole is over
 * the budget (issue 14: 300 kB gzipped), so a dependency that bloats the
 * console breaks the build rather than the first load.
 *
 *   npx tsx scripts/build-console.ts
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { build } from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The most the console's assets may weigh, gzipped, all together. */
export const consoleBudgetBytes = 300 * 1024;

export interface ConsoleAsset {
  /** The file's name under dist/console/ (`assets/app-<hash>.js`, `index.html`). */
  readonly name: string;
  readonly rawBytes: number;
  readonly gzipBytes: number;
}

export interface ConsoleBuild {
  readonly outDir: string;
  readonly assets: readonly ConsoleAsset[];
  readonly gzipBytes: number;
}

export interface BuildConsoleOptions {
  /** Where to write; default dist/console/ under the repository. */
  readonly outDir?: string;
  /** Prints the size table (default true). */
  readonly report?: boolean;
}

/** Builds the console; rejects when esbuild fails or the assets exceed the budget. */
export async function buildConsole(options: BuildConsoleOptions = {}): Promise<ConsoleBuild> {
  const outDir = options.outDir ?? path.join(root, "dist/console");
  const result = await build({
    entryPoints: {
      app: path.join(root, "console/main.ts"),
      style: path.join(root, "console/styles.css"),
    },
    bundle: true,
    write: false,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    // The SDK's fetch entry imports no node: module; this keeps it that way.
    mainFields: ["browser", "module", "main"],
    outdir: path.join(outDir, "assets"),
    entryNames: "[name]-[hash]",
    legalComments: "none",
    logLevel: "silent",
    tsconfig: path.join(root, "console/tsconfig.json"),
  });
  const files = new Map<string, Uint8Array>();
  for (const output of result.outputFiles) {
    files.set(path.relative(outDir, output.path).split(path.sep).join("/"), output.contents);
  }
  const script = [...files.keys()].find((name) => name.endsWith(".js"));
  const style = [...files.keys()].find((name) => name.endsWith(".css"));
  if (script === undefined || style === undefined)
    throw new Error("esbuild wrote no script or no stylesheet");
  const template = readFileSync(path.join(root, "console/index.html"), "utf8");
  const html = template
    .replace("%SCRIPT%", `console/${script}`)
    .replace("%STYLE%", `console/${style}`)
    .replace("%STYLE_INTEGRITY%", integrity(files.get(style)))
    .replace("%SCRIPT_INTEGRITY%", integrity(files.get(script)));
  if (/%[A-Z_]+%/.test(html))
    throw new Error("console/index.html has a placeholder the build does not fill");
  files.set("index.html", new TextEncoder().encode(html));

  // Written beside, then swapped in, so a gateway never reads half a build.
  const next = `${outDir}.next-${process.pid}`;
  rmSync(next, { recursive: true, force: true });
  const assets: ConsoleAsset[] = [];
  for (const [name, contents] of files) {
    const file = path.join(next, name);
    mkdirSync(path.dirname(file), { recursive: true });
    const gzip = gzipSync(contents, { level: 9 });
    const brotli = brotliCompressSync(contents, {
      params: { [constants.BROTLI_PARAM_QUALITY]: 11 },
    });
    writeFileSync(file, contents);
    writeFileSync(`${file}.gz`, gzip);
    writeFileSync(`${file}.br`, brotli);
    assets.push({ name, rawBytes: contents.byteLength, gzipBytes: gzip.byteLength });
  }
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(path.dirname(outDir), { recursive: true });
  try {
    renameSync(next, outDir);
  } catch (err) {
    // Another build (a parallel test run) got there first; builds are
    // deterministic, so its files are these.
    rmSync(next, { recursive: true, force: true });
    if (!existsSync(path.join(outDir, "index.html"))) throw err;
  }

  const gzipBytes = assets.reduce((sum, asset) => sum + asset.gzipBytes, 0);
  if (options.report ?? true) printSizes(assets, gzipBytes);
  if (gzipBytes > consoleBudgetBytes) {
    throw new Error(
      `the console's assets weigh ${kB(gzipBytes)} gzipped, over the budget of ${kB(consoleBudgetBytes)}`,
    );
  }
  return { outDir, assets, gzipBytes };
}

/** A Subresource Integrity value: the page refuses an asset that is not the one built with it. */
function integrity(contents: Uint8Array | undefined): string {
  if (contents === undefined) throw new Error("no asset to hash");
  return `sha384-${createHash("sha384").update(contents).digest("base64")}`;
}

function kB(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} kB`;
}

function printSizes(assets: readonly ConsoleAsset[], gzipBytes: number): void {
  const rows = assets.map((a) => [a.name, kB(a.rawBytes), kB(a.gzipBytes)]);
  const raw = assets.reduce((sum, asset) => sum + asset.rawBytes, 0);
  rows.push(["total", kB(raw), `${kB(gzipBytes)} of ${kB(consoleBudgetBytes)}`]);
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    r
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join("  ");
  process.stdout.write(`console assets (dist/console/)\n${line(["asset", "raw", "gzip"])}\n`);
  for (const r of rows) process.stdout.write(`${line(r)}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await buildConsole();
  } catch (err) {
    process.stderr.write(`build-console: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
