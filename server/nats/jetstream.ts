/**
 * NATS JetStream as the gateway uses it (the shared ingest log, the change
 * sink): connecting with the configured sign-in, asking again while a fresh
 * cluster elects its leaders, and creating a stream or checking the one
 * already there.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { NatsConnectionConfig } from "../config.js";

/**
 * Connects to NATS, or fails after `timeoutMs` naming the servers and the
 * `setting` they came from. Once connected, it reconnects by itself forever.
 */
export async function connectNats(
  config: NatsConnectionConfig,
  timeoutMs: number,
  setting: string,
): Promise<NatsConnection> {
  const attempt = connect({
    servers: [...config.servers],
    name: "sqlgate",
    ...(config.user !== undefined ? { user: config.user, pass: config.password ?? "" } : {}),
    ...(config.token !== undefined ? { token: config.token } : {}),
    ...(config.caFile !== undefined ? { tls: { caFile: config.caFile } } : {}),
    waitOnFirstConnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `NATS (${config.servers.join(",")}) did not answer within ${timeoutMs} ms (${setting})`,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([attempt, timeout]);
  } catch (err) {
    void attempt.then((nc) => nc.close()).catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `fn` again while it fails for want of an answer (a timeout, no
 * responders, a cluster without a leader yet), until `until` (performance.now()).
 */
export async function untilAnswered<T>(fn: () => Promise<T>, until: number): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      const unanswered = /timeout|no responders|not available|no suitable peers|leader/i.test(
        String(err instanceof Error ? `${err.name} ${err.message}` : err),
      );
      if (!unanswered || performance.now() > until) throw err;
      await delay(250);
    }
  }
}

/** A setting that differs: what the existing object has and what the gateway wants. */
export function differences(
  have: Record<string, unknown>,
  want: Record<string, unknown>,
): string[] {
  return Object.entries(want)
    .filter(([name, value]) => JSON.stringify(have[name]) !== JSON.stringify(value))
    .map(
      ([name, value]) => `${name} is ${JSON.stringify(have[name])}, not ${JSON.stringify(value)}`,
    );
}

/**
 * Creates the stream `name` with `want`, or checks the one there: several
 * replicas starting at once may race to create it (the loser finds it made).
 * One with other settings is reported, never changed: it may hold another
 * system's data. `setting` names where the stream's name came from.
 */
export async function ensureStream(
  jsm: JetStreamManager,
  name: string,
  want: Partial<StreamConfig>,
  setting: string,
): Promise<void> {
  const have = await jsm.streams.info(name).catch(async (err: unknown) => {
    if (!/stream not found/i.test(String(err))) throw err;
    return jsm.streams.add({ name, ...want }).catch(async (addErr: unknown) => {
      if (!/already in use|already exists/i.test(String(addErr))) throw addErr;
      return jsm.streams.info(name);
    });
  });
  const problems = differences(have.config as unknown as Record<string, unknown>, want);
  if (problems.length > 0) {
    throw new Error(
      `the JetStream stream ${name} exists with other settings (${problems.join("; ")}); the gateway does not change it: fix it by hand, or set ${setting} to another name`,
    );
  }
}
