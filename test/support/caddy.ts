/**
 * The HTTP/3 front proxy for tests: Debian's Caddy 2.6.2 run through
 * scripts/caddy.sh (so the script and deploy/caddy/Caddyfile are what is
 * tested) on a free TCP+UDP port in front of a test gateway, and the two
 * HTTP/3 clients this machine has: `gtlsclient` (ngtcp2-client) and Debian's
 * Chromium driven by playwright-core. scripts/ensure-caddy.sh installs all three.
 * Everything listens on 127.0.0.1 and is stopped by PID when the test ends.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, createPublicKey } from "node:crypto";
import dgram from "node:dgram";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type Browser, chromium, type Page } from "playwright-core";

const run = promisify(execFile);
/** The repository root: above test/support/, or above dist/test/support/ when compiled (the benchmark). */
const root = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "scripts/caddy.sh"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("scripts/caddy.sh not found above test/support");
    dir = parent;
  }
  return dir;
})();

interface After {
  after(fn: () => unknown): void;
}

/** A certificate Chromium accepts over QUIC when pinned by its SPKI. */
export interface QuicCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
  /** base64 SHA-256 of the SubjectPublicKeyInfo, for `--ignore-certificate-errors-spki-list`. */
  readonly spki: string;
}

/**
 * A throwaway certificate of the kind Chromium's QUIC stack takes with an
 * SPKI pin: ECDSA P-256, SANs `DNS:localhost, IP:127.0.0.1, IP:::1`,
 * `extendedKeyUsage=serverAuth` (shared/http3-notes.md).
 */
export async function quicCertificate(t: After): Promise<QuicCertificate> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-quic-tls-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const certFile = path.join(dir, "cert.pem");
  const keyFile = path.join(dir, "key.pem");
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "1",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
    "-addext",
    "extendedKeyUsage=serverAuth",
  ]);
  const { stdout: publicKey } = await run("openssl", [
    "x509",
    "-in",
    certFile,
    "-pubkey",
    "-noout",
  ]);
  const der = createPublicKey(publicKey).export({ type: "spki", format: "der" });
  const spki = createHash("sha256").update(der).digest("base64");
  return { certFile, keyFile, cert: readFileSync(certFile), spki };
}

/** One line of Caddy's JSON access log (the fields the tests read). */
export interface AccessLogEntry {
  readonly request: { readonly proto: string; readonly method: string; readonly uri: string };
  readonly status: number;
  readonly size: number;
  readonly duration: number;
}

export interface TestCaddy {
  readonly port: number;
  /** `https://127.0.0.1:<port>`: TCP (h1, h2) and UDP (h3) on the same port. */
  readonly origin: string;
  readonly pid: number;
  /** The JSON access log's entries so far. */
  accessLog(): AccessLogEntry[];
  /**
   * The access log once `count` entries match `filter` (or after `timeoutMs`,
   * as it is then): Caddy writes an entry just after the response, so a
   * client can read its answer before the entry exists.
   */
  accessLogWhen(
    filter: (entry: AccessLogEntry) => boolean,
    count: number,
    timeoutMs?: number,
  ): Promise<AccessLogEntry[]>;
  /** Everything Caddy wrote to stderr (its own JSON log). */
  output(): string;
}

/** A port free for both TCP and UDP on 127.0.0.1 (HTTP/3 shares the HTTPS port number). */
export async function freeTcpUdpPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address() as net.AddressInfo;
        server.close(() => resolve(address.port));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const socket = dgram.createSocket("udp4");
      socket.once("error", () => resolve(false));
      socket.bind(port, "127.0.0.1", () => socket.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error("no port free for both TCP and UDP");
}

/**
 * What Caddy proxies to, on 127.0.0.1: one gateway's (or any h2c server's)
 * port, or several replicas' ports, balanced per call.
 */
export type CaddyUpstreams =
  | { readonly upstreamPort: number }
  | { readonly upstreamPorts: readonly number[] };

export type StartCaddyOptions = CaddyUpstreams & {
  readonly certificate: QuicCertificate;
  /** A fixed port (e.g. one that a packet filter expects); default: a free one. */
  readonly port?: number;
};

/**
 * Runs scripts/caddy.sh in front of the upstreams and resolves once Caddy
 * serves its configuration. Several ports are passed comma-separated in
 * SQLGATE_CADDY_UPSTREAM, as an operator would. The script `exec`s Caddy, so
 * the child's PID is Caddy's: it is stopped with SIGTERM to that PID when the
 * test ends.
 */
export async function startCaddy(t: After, options: StartCaddyOptions): Promise<TestCaddy> {
  const state = mkdtempSync(path.join(os.tmpdir(), "sqlgate-caddy-"));
  t.after(() => rmSync(state, { recursive: true, force: true }));
  const accessLogFile = path.join(state, "access.log");
  const upstreamPorts = "upstreamPorts" in options ? options.upstreamPorts : [options.upstreamPort];
  let lastError: unknown;
  // A port picked free can be taken before Caddy binds it (tests run in
  // parallel): try another one then.
  for (let attempt = 0; attempt < (options.port === undefined ? 3 : 1); attempt++) {
    const port = options.port ?? (await freeTcpUdpPort());
    const child = spawn(path.join(root, "scripts/caddy.sh"), [], {
      env: {
        ...process.env,
        SQLGATE_CADDY_PORT: String(port),
        SQLGATE_CADDY_HOST: "127.0.0.1",
        SQLGATE_CADDY_UPSTREAM: upstreamPorts.map((p) => `127.0.0.1:${p}`).join(","),
        SQLGATE_CADDY_CERT: options.certificate.certFile,
        SQLGATE_CADDY_KEY: options.certificate.keyFile,
        SQLGATE_CADDY_STATE_DIR: state,
        SQLGATE_CADDY_ACCESS_LOG: accessLogFile,
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let output = "";
    child.stderr?.setEncoding("utf8").on("data", (text: string) => {
      output += text;
    });
    try {
      await untilServing(child, () => output, 15_000);
    } catch (err) {
      lastError = err;
      await stop(child);
      continue;
    }
    t.after(() => stop(child));
    if (child.pid === undefined) throw new Error("caddy has no pid");
    return {
      port,
      origin: `https://127.0.0.1:${port}`,
      pid: child.pid,
      output: () => output,
      accessLog: () => parseAccessLog(accessLogFile),
      accessLogWhen: async (filter, count, timeoutMs = 3000) => {
        const until = Date.now() + timeoutMs;
        for (;;) {
          const entries = parseAccessLog(accessLogFile).filter(filter);
          if (entries.length >= count || Date.now() > until) return entries;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      },
    };
  }
  throw lastError;
}

function untilServing(child: ChildProcess, output: () => string, timeoutMs: number) {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`caddy did not start within ${timeoutMs} ms:\n${output()}`));
    }, timeoutMs);
    const onData = () => {
      if (output().includes('"msg":"serving initial configuration"')) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`caddy exited with ${code}:\n${output()}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stderr?.off("data", onData);
      child.off("exit", onExit);
    };
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
    onData();
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

function parseAccessLog(file: string): AccessLogEntry[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as AccessLogEntry);
}

/**
 * GETs `url` over HTTP/3 with `gtlsclient` and returns the body it saved, or
 * undefined when it saved none. gtlsclient exits 0 even when the request
 * failed, so its exit code says nothing: the body (and Caddy's access log)
 * are the evidence. It cannot set request headers.
 */
export async function gtlsclientGet(t: After, url: string): Promise<string | undefined> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-gtls-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const u = new URL(url);
  await run(
    "gtlsclient",
    ["-q", "--exit-on-all-streams-close", `--download=${dir}`, u.hostname, u.port, url],
    { timeout: 15_000 },
  ).catch(() => undefined);
  const name = u.pathname.split("/").pop() || "index.html";
  try {
    return readFileSync(path.join(dir, name), "utf8");
  } catch {
    return undefined;
  }
}

export interface QuicBrowserOptions {
  readonly caddy: TestCaddy;
  readonly certificate: QuicCertificate;
  /** Where Chromium writes its NetLog (written out when the browser closes). */
  readonly netLogFile?: string;
  /**
   * false: leave Chromium to choose, which for a certificate that does not
   * chain to a public root means HTTP/2 over TLS (it ignores alt-svc then).
   * Default true: QUIC from the first request.
   */
  readonly forceQuic?: boolean;
}

/**
 * Debian's Chromium (no browser download) forced onto QUIC for the Caddy
 * origin. `--ignore-certificate-errors` alone fails the QUIC handshake;
 * an SPKI pin of the certificate works (shared/http3-notes.md).
 */
export async function launchQuicBrowser(t: After, options: QuicBrowserOptions): Promise<Browser> {
  const origin = `127.0.0.1:${options.caddy.port}`;
  const args = [
    ...(options.forceQuic === false
      ? []
      : ["--enable-quic", `--origin-to-force-quic-on=${origin}`]),
    `--ignore-certificate-errors-spki-list=${options.certificate.spki}`,
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ];
  if (options.netLogFile !== undefined) {
    args.push(`--log-net-log=${options.netLogFile}`, "--net-log-capture-mode=Everything");
  }
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args });
  t.after(() => browser.close());
  return browser;
}

/**
 * A page on the Caddy origin (so the page's fetches are same-origin), with
 * `extraScript` (e.g. an SDK bundle) loaded. tsx compiles with esbuild's
 * keepNames, which wraps named functions in `__name(...)`; functions passed to
 * `page.evaluate` carry those calls into the page, so the page gets an
 * identity `__name`.
 */
export async function openQuicPage(
  browser: Browser,
  caddy: TestCaddy,
  extraScript = "",
): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(`${caddy.origin}/healthz`);
  await page.addScriptTag({ content: `globalThis.__name = (f) => f;\n${extraScript}` });
  return page;
}

/** One event of a Chromium NetLog, with its type's name. */
export interface NetLogEvent {
  readonly type: string;
  readonly params?: Record<string, unknown>;
}

/** The events of a NetLog file that Chromium finished writing (after `browser.close()`). */
export function readNetLog(file: string): NetLogEvent[] {
  const log = JSON.parse(readFileSync(file, "utf8")) as {
    constants: { logEventTypes: Record<string, number> };
    events: { type: number; params?: Record<string, unknown> }[];
  };
  const names = new Map(Object.entries(log.constants.logEventTypes).map(([k, v]) => [v, k]));
  return log.events.map((e) => ({
    type: names.get(e.type) ?? String(e.type),
    ...(e.params !== undefined ? { params: e.params } : {}),
  }));
}
