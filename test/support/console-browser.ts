/**
 * The browser console under test: its build (made here when missing or
 * older than its sources, as `npm run build` would), and Debian's Chromium
 * driven by playwright-core (no browser download), as test/support/caddy.ts
 * launches it. Pages record every Content-Security-Policy violation and
 * uncaught error, so a test can assert there were none.
 */
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { buildConsole } from "../../scripts/build-console.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const sources = ["console", "client/src", "gen/sqlgate", "scripts/build-console.ts"];

interface After {
  after(fn: () => unknown): void;
}

function newestMtimeMs(file: string): number {
  const stat = statSync(file);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const name of readdirSync(file)) {
    newest = Math.max(newest, newestMtimeMs(path.join(file, name)));
  }
  return newest;
}

/** Builds dist/console/ unless it is newer than everything it is built from. */
export async function ensureConsoleBuilt(): Promise<void> {
  let builtAt = 0;
  try {
    builtAt = statSync(path.join(root, "dist/console/index.html")).mtimeMs;
  } catch {
    // Not built yet.
  }
  const sourcesAt = Math.max(...sources.map((s) => newestMtimeMs(path.join(root, s))));
  if (builtAt < sourcesAt) await buildConsole({ report: false });
}

/** Headless Debian Chromium, closed when the test ends. */
export async function launchChromium(t: After): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  t.after(() => browser.close());
  return browser;
}

export interface ConsolePage {
  readonly page: Page;
  /** Console messages about Content-Security-Policy violations. */
  readonly cspViolations: string[];
  /** Uncaught errors in the page. */
  readonly pageErrors: string[];
}

/**
 * A new page (its own context: its own sessionStorage and localStorage) on
 * `url`, in `colorScheme`. tsx compiles with esbuild's keepNames, which wraps
 * functions passed to `page.evaluate` in `__name(...)`: an init script (not
 * subject to the page's CSP) gives the page an identity `__name`.
 */
export async function openConsolePage(
  browser: Browser,
  url: string,
  options: { colorScheme?: "light" | "dark"; width?: number; height?: number } = {},
): Promise<ConsolePage> {
  const context = await browser.newContext({
    colorScheme: options.colorScheme ?? "light",
    viewport: { width: options.width ?? 1360, height: options.height ?? 820 },
    deviceScaleFactor: 1,
  });
  await context.addInitScript("globalThis.__name = (f) => f;");
  const page = await context.newPage();
  const cspViolations: string[] = [];
  const pageErrors: string[] = [];
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  page.on("pageerror", (err) => pageErrors.push(String(err)));
  await page.goto(url);
  return { page, cspViolations, pageErrors };
}
