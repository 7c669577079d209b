/**
 * The MySQL replicas reads may go to: one set of pools per replica (sessions
 * read-only from their first statement), and a monitor that checks every
 * replica each second — is it up, how far has it applied the primary's
 * history, how far behind is it.
 *
 * Lag is measured in the primary's own terms, with no clock shared between
 * servers and no privilege needed: each check samples the primary's position
 * (`@@gtid_binlog_pos` on MariaDB, `@@gtid_executed` on MySQL) and each
 * replica's applied one (`@@gtid_slave_pos`, `@@gtid_executed`). A replica
 * that has not reached the primary's position of some past check is behind
 * by at least the time since that check; one that reached the latest is not
 * behind. So a replica whose SQL thread stopped on an idle primary is still
 * current (nothing to apply), and falls behind as soon as the primary writes.
 */
import type { DatabaseOptions, Engine } from "../database.js";
import { createDatabases, type Databases } from "../databases.js";
import { combine, formatPosition, hasReached, type Position, parsePosition } from "./position.js";

/** One replica and what the monitor knows of it. */
export interface Replica {
  /** Its host:port (or socket path), as `served_by` names it. */
  readonly name: string;
  /** Its pools, one set per database and account, like the primary's. */
  readonly databases: Databases;
  /** Up, and not lagging past the limit: reads may go here. */
  readonly usable: boolean;
  /** The newest position it is known to have applied. */
  readonly position: Position;
  /** Statements running on it now (the least busy replica serves). */
  active: number;
  /** Records that it has applied `position` (a wait on it succeeded). */
  reached(position: Position): void;
  /** Marks it down until the next check finds it up (a connection to it failed). */
  markDown(reason: string): void;
}

/** A replica's state, for `/readyz` and metrics. */
export interface ReplicaStatus {
  readonly name: string;
  readonly up: boolean;
  readonly usable: boolean;
  /** Milliseconds behind the primary (a lower bound, to the check interval); undefined when unknown. */
  readonly lagMs: number | undefined;
  /** The position it has applied, as the engine spells it. */
  readonly position: string;
  /** Statements running on it now. */
  readonly running: number;
  /** Why it is down or unusable. */
  readonly problem: string | undefined;
}

export interface ReplicaSetOptions {
  readonly urls: readonly string[];
  /** Pool settings, as for the primary (its URL is replaced by each replica's). */
  readonly pools: Omit<DatabaseOptions, "url" | "sessionInit">;
  /** The primary's pools, whose position the replicas are measured against. */
  readonly primary: Databases;
  /** A replica further behind than this is not used. */
  readonly maxLagMs: number;
  /** How often every replica is checked. */
  readonly checkIntervalMs: number;
}

export interface ReplicaSet {
  readonly replicas: readonly Replica[];
  /** Starts checking (at once, then every interval). */
  start(): void;
  /** Resolves after one more check of every replica (tests, start-up). */
  check(): Promise<void>;
  status(): ReplicaStatus[];
  close(): Promise<void>;
}

/** Where a URL's server is, for people: `host:port`, or the socket's path. */
function serverOf(text: string): string {
  const url = new URL(text);
  return url.searchParams.get("socket") ?? (url.port ? url.host : `${url.host}:3306`);
}

/** Session set-up of replica connections: every statement a read-only transaction. */
const readOnlySession = (): readonly string[] => ["SET SESSION TRANSACTION READ ONLY"];

/** The query for a server's applied position, by engine and role. */
function positionQuery(engine: Engine, role: "primary" | "replica"): string {
  if (engine === "mysql") return "SELECT @@GLOBAL.gtid_executed";
  return role === "primary" ? "SELECT @@GLOBAL.gtid_binlog_pos" : "SELECT @@GLOBAL.gtid_slave_pos";
}

/** Positions of the primary seen by past checks, oldest first, for lag. */
interface Sample {
  readonly at: number;
  readonly position: Position;
}

export function createReplicaSet(options: ReplicaSetOptions): ReplicaSet {
  const checkTimeoutMs = Math.max(200, Math.min(options.checkIntervalMs, 2000));
  // Enough history to tell any lag up to the limit (and a little past it).
  const keepMs = options.maxLagMs * 2 + options.checkIntervalMs * 4;
  const samples: Sample[] = [];
  const engines = new Map<Databases, Engine>();
  const engineOf = async (databases: Databases): Promise<Engine> => {
    let engine = engines.get(databases);
    if (engine === undefined) {
      const [[version]] = (await databases.primary.queryRows(
        "SELECT VERSION()",
        [],
        checkTimeoutMs,
      )) as [[string]];
      engine = /mariadb/i.test(String(version)) ? "mariadb" : "mysql";
      engines.set(databases, engine);
    }
    return engine;
  };
  const positionOf = async (databases: Databases, role: "primary" | "replica") => {
    const engine = await engineOf(databases);
    const [[text]] = (await databases.primary.queryRows(
      positionQuery(engine, role),
      [],
      checkTimeoutMs,
    )) as [[string | null]];
    const position = parsePosition(String(text ?? ""));
    if (position === undefined) throw new Error(`unreadable replication position ${String(text)}`);
    return position;
  };

  const replicas = options.urls.map((url) => {
    const state = {
      up: false,
      lagMs: undefined as number | undefined,
      position: new Map() as Position,
      problem: "not checked yet" as string | undefined,
    };
    const replica: Replica & { state: typeof state } = {
      name: serverOf(url),
      databases: createDatabases({
        ...options.pools,
        url,
        sessionInit: readOnlySession,
        // Ingest writes to the primary only.
        ingestPoolSize: 1,
      }),
      state,
      get usable() {
        return state.up && state.lagMs !== undefined && state.lagMs <= options.maxLagMs;
      },
      get position() {
        return state.position;
      },
      active: 0,
      reached(position) {
        if (!hasReached(state.position, position))
          state.position = combine(state.position, position);
      },
      markDown(reason) {
        state.up = false;
        state.problem = reason;
      },
    };
    return replica;
  });

  /** Lag of a replica at `position`: the age of the oldest sample it has not reached. */
  const lagOf = (position: Position, now: number): number => {
    const missed = samples.find((sample) => !hasReached(position, sample.position));
    return missed === undefined ? 0 : now - missed.at;
  };

  const checkAll = async (): Promise<void> => {
    const now = performance.now();
    try {
      samples.push({ at: now, position: await positionOf(options.primary, "primary") });
    } catch {
      // The primary is down: lag cannot be told; replicas keep their last one.
    }
    while (samples.length > 1 && now - (samples[0] as Sample).at > keepMs) samples.shift();
    await Promise.all(
      replicas.map(async (replica) => {
        const { state } = replica;
        try {
          state.position = await positionOf(replica.databases, "replica");
          state.up = true;
          state.lagMs = samples.length === 0 ? state.lagMs : lagOf(state.position, now);
          state.problem =
            state.lagMs === undefined
              ? "lag unknown (the primary does not answer)"
              : state.lagMs > options.maxLagMs
                ? `lagging ${Math.round(state.lagMs)} ms behind the primary`
                : undefined;
        } catch (err) {
          state.up = false;
          state.problem = err instanceof Error ? err.message : String(err);
        }
      }),
    );
  };

  let timer: NodeJS.Timeout | undefined;
  let checking: Promise<void> | undefined;
  const check = () => {
    checking ??= checkAll().finally(() => {
      checking = undefined;
    });
    return checking;
  };
  return {
    replicas,
    start() {
      if (timer !== undefined || replicas.length === 0) return;
      void check();
      timer = setInterval(() => void check(), options.checkIntervalMs);
      timer.unref();
    },
    check: async () => {
      await checking;
      await check();
    },
    status: () =>
      replicas.map((replica) => ({
        name: replica.name,
        up: replica.state.up,
        usable: replica.usable,
        lagMs: replica.state.lagMs === undefined ? undefined : Math.round(replica.state.lagMs),
        position: formatPosition(replica.state.position),
        running: replica.active,
        problem: replica.state.problem,
      })),
    async close() {
      clearInterval(timer);
      await checking?.catch(() => {});
      await Promise.all(replicas.map((r) => r.databases.close()));
    },
  };
}
