/**
 * NATS JetStream servers for tests of the shared ingest log: Debian's
 * nats-server 2.9.10 (scripts/ensure-nats.sh installs it), one server or a
 * three-server cluster, each from a generated config file in its own
 * temporary directory, since flags cannot set JetStream's limits (with flags
 * alone it claims 75% of RAM and the whole disk; shared/scale-notes.md).
 * Everything listens on 127.0.0.1; servers are killed (SIGKILL) by PID and
 * their directories removed when the test ends.
 *
 * Readiness on 2.9.10, as observed: `/healthz?js-enabled-only=true` answers
 * 200 as soon as the monitor port is up, even while a cluster has no
 * JetStream meta leader, so it only says the server started. Plain `/healthz`
 * answers 503 ("JetStream has not established contact with a meta leader",
 * then "... is not current with the meta leader") until this server follows
 * an elected meta leader and the streams and consumers placed on it have
 * caught up: that is the readiness waited for.
 */
import { type ChildProcess, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  type ConsumerInfo,
  type JetStreamManager,
  jetstreamManager,
  type StreamInfo,
} from "@nats-io/jetstream";
import {
  connect,
  type NatsConnection,
  NoRespondersError,
  TimeoutError,
} from "@nats-io/transport-node";
import { freePorts } from "./replicas.js";

/**
 * The nats-server binary. Debian installs it in /usr/sbin, which a non-root
 * user's PATH often lacks: found on PATH first, else there.
 */
export const natsServerBin = (() => {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir !== "" && existsSync(path.join(dir, "nats-server")))
      return path.join(dir, "nats-server");
  }
  return "/usr/sbin/nats-server";
})();

interface After {
  after(fn: () => unknown): void;
}

/** What `restart` waits for (see the module comment). */
export type NatsReadiness =
  /** `/healthz` 200: follows a meta leader, its streams and consumers are current. */
  | "healthy"
  /** `/healthz?js-enabled-only=true` 200: started with JetStream, maybe not yet in the cluster. */
  | "started";

/** One nats-server process of those started by `startNats`. */
export interface NatsNode {
  /** Its `server_name` (n1, n2, n3): what stream and meta leaders are reported as. */
  readonly name: string;
  /** Client port. */
  readonly port: number;
  /** `nats://127.0.0.1:<port>`. */
  readonly url: string;
  /** HTTP monitoring port (`/healthz`, `/jsz`, `/varz`). */
  readonly monitorPort: number;
  /** Cluster route port; undefined for a single server. */
  readonly routePort: number | undefined;
  /** Holds its `nats.conf`, `nats.log` and `store/` (nats-server appends `/jetstream`). */
  readonly dir: string;
  /** The current process's PID (a restart changes it). */
  readonly pid: number;
  /** True after `kill` (or when the process exited otherwise), until `restart`. */
  readonly stopped: boolean;
  /** Sends `signal` (default SIGKILL) and resolves once the process exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /**
   * Starts it again, stopped first if needed, on the same ports with the same
   * config and store, and resolves once it is `wait` (default "healthy").
   */
  restart(options?: { wait?: NatsReadiness; timeoutMs?: number }): Promise<void>;
  /** GETs a monitoring endpoint (`/jsz`, `/varz?...`) and returns its JSON. */
  monitor<T = Record<string, unknown>>(pathAndQuery: string): Promise<T>;
  /** Everything this server wrote to stdout/stderr, over all its runs. */
  log(): string;
}

export interface StartNatsOptions {
  /** One server, or a cluster of three with full routes (default 1). */
  readonly servers?: 1 | 3;
  /** `jetstream { max_memory_store, max_file_store }` per server. */
  readonly jetstream?: {
    /** Default 256 MiB. */
    readonly maxMemoryBytes?: number;
    /** Default 2 GiB. */
    readonly maxFileBytes?: number;
  };
  /** How long each start may take to become healthy (default 20 s: a noisy 2-core CI box). */
  readonly timeoutMs?: number;
}

export interface TestNats {
  /** Each server's `nats://127.0.0.1:<port>`, in node order. */
  readonly urls: string[];
  /** The same, comma-joined: the form a server-list option takes. */
  readonly serversOption: string;
  readonly nodes: NatsNode[];
  /** The cluster's name (`sqlgate-test`); undefined for a single server. */
  readonly clusterName: string | undefined;
  /** Every node's log, each under a header: for assertion messages. */
  log(): string;
}

const clusterName = "sqlgate-test";

/**
 * Starts `servers` nats-servers with JetStream and resolves once every one
 * answers plain `/healthz` with 200. For a cluster that means a meta leader
 * is elected and all three follow it; a stream with `num_replicas: 3` can be
 * created at once (test/nats-support.test.ts does exactly that). Ports are
 * picked free up front, since a cluster's routes must name them all; another
 * test can take one before a server binds it, so a start where any server
 * exits early is retried with new ports.
 */
export async function startNats(t: After, options: StartNatsOptions = {}): Promise<TestNats> {
  const count = options.servers ?? 1;
  const timeoutMs = options.timeoutMs ?? 20_000;
  const root = mkdtempSync(path.join(os.tmpdir(), "sqlgate-nats-"));
  const nodes: Node[] = [];
  t.after(async () => {
    await Promise.all(nodes.map((n) => n.kill("SIGKILL")));
    rmSync(root, { recursive: true, force: true });
  });
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const ports = await freePorts(count * (count > 1 ? 3 : 2));
    const attemptNodes = Array.from({ length: count }, (_, i) => {
      const name = `n${i + 1}`;
      const dir = path.join(root, `${attempt}-${name}`);
      mkdirSync(dir);
      const routePorts = count > 1 ? ports.slice(2 * count) : [];
      return new Node({
        name,
        dir,
        port: ports[i] as number,
        monitorPort: ports[count + i] as number,
        routePort: routePorts[i],
        routePorts,
        maxMemoryBytes: options.jetstream?.maxMemoryBytes ?? 256 * 1024 * 1024,
        maxFileBytes: options.jetstream?.maxFileBytes ?? 2 * 1024 * 1024 * 1024,
      });
    });
    nodes.push(...attemptNodes);
    try {
      // All at once: a cluster elects its meta leader only when a quorum runs.
      await Promise.all(attemptNodes.map((n) => n.start("healthy", timeoutMs)));
    } catch (err) {
      // A server that exited by itself most likely found a port taken: try
      // new ports. One that runs but never got healthy would not do better.
      const exited = attemptNodes.some((n) => n.stopped);
      await Promise.all(attemptNodes.map((n) => n.kill("SIGKILL")));
      if (!exited) throw err;
      lastError = err;
      continue;
    }
    const urls = attemptNodes.map((n) => n.url);
    return {
      urls,
      serversOption: urls.join(","),
      nodes: attemptNodes,
      clusterName: count > 1 ? clusterName : undefined,
      log: () => attemptNodes.map((n) => `--- ${n.name} ---\n${n.log()}`).join("\n"),
    };
  }
  throw lastError;
}

interface NodeSettings {
  readonly name: string;
  readonly dir: string;
  readonly port: number;
  readonly monitorPort: number;
  readonly routePort: number | undefined;
  /** Every cluster member's route port, this one's included (nats-server ignores a route to itself). */
  readonly routePorts: readonly number[];
  readonly maxMemoryBytes: number;
  readonly maxFileBytes: number;
}

class Node implements NatsNode {
  readonly name: string;
  readonly dir: string;
  readonly port: number;
  readonly url: string;
  readonly monitorPort: number;
  readonly routePort: number | undefined;
  readonly #config: string;
  readonly #logFile: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  /** Set when the last spawn failed (no nats-server on PATH): no exit event follows then. */
  #spawnError: Error | undefined;

  constructor(settings: NodeSettings) {
    this.name = settings.name;
    this.dir = settings.dir;
    this.port = settings.port;
    this.url = `nats://127.0.0.1:${settings.port}`;
    this.monitorPort = settings.monitorPort;
    this.routePort = settings.routePort;
    this.#config = path.join(settings.dir, "nats.conf");
    this.#logFile = path.join(settings.dir, "nats.log");
    writeFileSync(this.#config, renderConfig(settings));
  }

  get pid(): number {
    return this.#child?.pid ?? -1;
  }

  get stopped(): boolean {
    const child = this.#child;
    return (
      child === undefined ||
      this.#spawnError !== undefined ||
      child.exitCode !== null ||
      child.signalCode !== null
    );
  }

  async start(wait: NatsReadiness, timeoutMs: number): Promise<void> {
    // The log is a file, not a pipe: it outlives the process (what a crashed
    // server said is kept) and nothing in this process has to drain it.
    const fd = openSync(this.#logFile, "a");
    const child = spawn(natsServerBin, ["-c", this.#config], {
      stdio: ["ignore", fd, fd],
    });
    closeSync(fd);
    this.#child = child;
    this.#spawnError = undefined;
    this.#exited = new Promise((resolve) => {
      child.once("exit", () => resolve());
      child.once("error", (err) => {
        this.#spawnError = err;
        resolve();
      });
    });
    const query = wait === "healthy" ? "" : "?js-enabled-only=true";
    const until = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      if (this.stopped) {
        throw new Error(`nats-server ${this.name} exited while starting:\n${this.log()}`, {
          cause: this.#spawnError,
        });
      }
      try {
        const res = await fetch(`http://127.0.0.1:${this.monitorPort}/healthz${query}`, {
          signal: AbortSignal.timeout(2000),
        });
        last = `${res.status} ${await res.text()}`;
        if (res.status === 200) return;
      } catch (err) {
        last = String(err);
      }
      if (Date.now() > until) {
        throw new Error(
          `nats-server ${this.name} not ${wait} within ${timeoutMs} ms (last: ${last}):\n${this.log()}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    if (this.stopped) return;
    this.#child?.kill(signal);
    await this.#exited;
  }

  async restart(options: { wait?: NatsReadiness; timeoutMs?: number } = {}): Promise<void> {
    await this.kill("SIGKILL");
    await this.start(options.wait ?? "healthy", options.timeoutMs ?? 20_000);
  }

  async monitor<T = Record<string, unknown>>(pathAndQuery: string): Promise<T> {
    const res = await fetch(`http://127.0.0.1:${this.monitorPort}${pathAndQuery}`, {
      signal: AbortSignal.timeout(5000),
    });
    return (await res.json()) as T;
  }

  log(): string {
    try {
      return readFileSync(this.#logFile, "utf8");
    } catch {
      return "";
    }
  }
}

/** The config file: the same shape as deploy/nats/nats-cluster.conf, on 127.0.0.1. */
function renderConfig(s: NodeSettings): string {
  const lines = [
    `listen: "127.0.0.1:${s.port}"`,
    `http: "127.0.0.1:${s.monitorPort}"`,
    `server_name: "${s.name}"`,
    "jetstream {",
    `  store_dir: ${JSON.stringify(path.join(s.dir, "store"))}`,
    `  max_memory_store: ${s.maxMemoryBytes}`,
    `  max_file_store: ${s.maxFileBytes}`,
    "}",
  ];
  if (s.routePort !== undefined) {
    lines.push(
      "cluster {",
      `  name: "${clusterName}"`,
      `  listen: "127.0.0.1:${s.routePort}"`,
      "  routes: [",
      ...s.routePorts.map((p) => `    "nats-route://127.0.0.1:${p}"`),
      "  ]",
      "}",
    );
  }
  return `${lines.join("\n")}\n`;
}

/**
 * A client connection to `servers` (any list of `nats://` URLs), closed when
 * the test ends. It keeps reconnecting through server restarts, without
 * limit; `close()` (or the test's end) stops it, which a test must reach or
 * its process waits on the reconnect timer.
 */
export async function connectNats(
  t: After,
  servers: string | readonly string[],
): Promise<NatsConnection> {
  const nc = await connect({
    servers: typeof servers === "string" ? servers.split(",") : [...servers],
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  });
  t.after(() => nc.close());
  return nc;
}

/** How long the info helpers keep asking while a leader is being elected. */
const electionTimeoutMs = 15_000;

/**
 * Runs `fn` with a JetStream manager on a short-lived connection to
 * `servers`. On a cluster whose stream or consumer leader was just lost, the
 * JetStream API leaves requests about it unanswered (a client timeout) until
 * a new leader is elected (seconds on 2.9): those are asked again, for up to
 * `electionTimeoutMs`. Other errors (e.g. a stream that does not exist) are not.
 */
async function withManager<T>(
  servers: string | readonly string[],
  fn: (jsm: JetStreamManager) => Promise<T>,
): Promise<T> {
  const nc = await connect({
    servers: typeof servers === "string" ? servers.split(",") : [...servers],
  });
  try {
    const until = Date.now() + electionTimeoutMs;
    for (;;) {
      try {
        // Creating the manager asks for the account's info: unanswered too during an election.
        return await fn(await jetstreamManager(nc));
      } catch (err) {
        if (!isUnanswered(err) || Date.now() > until) throw err;
      }
    }
  } finally {
    await nc.close();
  }
}

/** A request that got no answer: a TimeoutError, or a NoRespondersError (a RequestError's cause). */
function isUnanswered(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (e instanceof TimeoutError || e instanceof NoRespondersError) return true;
  }
  return false;
}

/**
 * The stream's info: `state.messages`/`first_seq`/`last_seq`, and on a
 * cluster `cluster.leader` (a node's `name`) and `cluster.replicas` (the
 * others, with `current`/`offline`/`lag`).
 */
export function natsStreamInfo(
  servers: string | readonly string[],
  stream: string,
): Promise<StreamInfo> {
  return withManager(servers, (jsm) => jsm.streams.info(stream));
}

/**
 * A consumer's info: `num_pending` (not yet delivered), `num_ack_pending`
 * (delivered, not acked), `delivered` and `ack_floor` (each `consumer_seq`
 * and `stream_seq`), `num_redelivered`.
 */
export function natsConsumerInfo(
  servers: string | readonly string[],
  stream: string,
  consumer: string,
): Promise<ConsumerInfo> {
  return withManager(servers, (jsm) => jsm.consumers.info(stream, consumer));
}

/**
 * What a consumer has left to do: `num_pending + num_ack_pending`. Not the
 * stream's message count: on 2.9 a SIGKILL shortly after acks can leave acked
 * messages in the stream below the ack floor, where no consumer reads them
 * again (shared/scale-notes.md).
 */
export async function natsBacklog(
  servers: string | readonly string[],
  stream: string,
  consumer: string,
): Promise<number> {
  const info = await natsConsumerInfo(servers, stream, consumer);
  return info.num_pending + info.num_ack_pending;
}
