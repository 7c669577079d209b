/**
 * The JetStream sink (SQLGATE_CHANGES_SINK=nats://...): every committed
 * transaction published to NATS JetStream, once, by one gateway at a time.
 *
 * - Who publishes: the replica holding the MySQL named lock
 *   `sqlgate.changes.<stream>`. The others wait for it; when the holder's
 *   session ends (it stopped, crashed, or lost MySQL), MySQL releases the
 *   lock and one of them takes over. A holder whose lock session breaks
 *   stops publishing at once.
 * - What: per transaction, one message per table changed, on
 *   `sqlgate.changes.<db>.<table>` (a `sqlgate.v1.Transaction` in binary
 *   protobuf, its before images included; a table with more than 1000
 *   changes in parts); DDL on `sqlgate.schema.<db>` (a
 *   `sqlgate.v1.SchemaChange`). Names are percent-encoded where NATS
 *   subjects cannot hold a character (`.`, `*`, `>`, spaces).
 * - Exactly once: each message's `Nats-Msg-Id` derives from the
 *   transaction's position, so JetStream drops a message published again
 *   within its duplicate window. The position of the last transaction
 *   JetStream acknowledged (with every earlier one) is saved in MySQL
 *   (`sqlgate_changes_sink`) a few times a second; a new holder resumes from
 *   it, publishing again at most what the old one published after its last
 *   save, which the duplicate window absorbs.
 */
import { createHash } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { type JetStreamClient, jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { headers, type NatsConnection, nanos } from "@nats-io/transport-node";
import mysql from "mysql2/promise";
import { SchemaChangeSchema } from "../../gen/sqlgate/v1/changes_pb.js";
import type { ChangeSinkConfig } from "../config.js";
import { isInternalDdl, isInternalTable } from "../ingest/internal-tables.js";
import { connectNats, ensureStream, untilAnswered } from "../nats/jetstream.js";
import type { Logger } from "../observability/logger.js";
import {
  type BinlogConnectionOptions,
  type BinlogDdl,
  type BinlogReader,
  type BinlogTransaction,
  createBinlogReader,
} from "./binlog-reader.js";
import {
  SharedTransaction,
  type TransactionSlice,
  transactionBytes,
  transactionSlices,
} from "./change-messages.js";
import { isShownSchemaChange, type TableFilter } from "./table-filter.js";

export interface ChangeSinkOptions {
  readonly config: ChangeSinkConfig;
  /** MySQL as the binlog reader and the lock use it (an account with replication privileges). */
  readonly connection: BinlogConnectionOptions;
  /** `db`.`sqlgate_changes_sink`, where the position is kept. */
  readonly positionTable: string;
  readonly tables: TableFilter;
  readonly logger: Logger;
  /** How long connecting to NATS and setting up the stream may take. */
  readonly connectTimeoutMs: number;
}

export interface ChangeSinkStatus {
  /** Whether this gateway is the one publishing. */
  readonly leader: boolean;
  /** The position of the last transaction published and acknowledged. */
  readonly position: string;
  /** Messages JetStream acknowledged since this gateway started. */
  readonly published: number;
  /** Of those, how many JetStream recognised as published before. */
  readonly duplicates: number;
}

export interface ChangeSink {
  status(): ChangeSinkStatus;
  /** Stops publishing (saving the position reached) and gives up the lock. */
  close(): Promise<void>;
}

/** Row changes per message, as change streams send them. */
const maxChangesPerMessage = 1000;
/** Publishes awaiting JetStream's ack before reading waits. */
const maxInFlight = 512;
/** How often the acknowledged position is saved. */
const saveEveryMs = 200;
/** How long one GET_LOCK waits (close() is noticed in between). */
const lockWaitSeconds = 1;
/** How often the lock session is checked while publishing. */
const lockCheckMs = 1000;
/** The lock session's wait_timeout (see lead()). */
const lockSessionTimeoutSeconds = 10;
/**
 * With nothing in flight, how often a position past transactions that had
 * nothing to publish is saved (each save is a transaction of its own in the
 * binlog, so not more often): a quiet sink must not resume from a position
 * the binlog has purged meanwhile.
 */
const saveIdleEveryMs = 60_000;
/** Room left in a message for its headers and framing, below NATS's max_payload. */
const headroomBytes = 8 * 1024;

/** `name` usable as one token of a NATS subject. */
function subjectToken(name: string): string {
  return name.replace(
    /[%.*>\s]/gu,
    (c) => `%${c.codePointAt(0)?.toString(16).padStart(2, "0").toUpperCase()}`,
  );
}

/** The lock electing the publisher; MySQL limits lock names to 64 characters. */
function lockName(stream: string): string {
  const name = `sqlgate.changes.${stream}`;
  return name.length <= 64
    ? name
    : `sqlgate.changes.${createHash("sha256").update(stream).digest("hex").slice(0, 40)}`;
}

/** Reader ids for the sink, apart from change streams' and servers' own. */
const sinkServerId = () => 0x5000_0000 + Math.floor(Math.random() * 0x1000_0000);

export function startChangeSink(options: ChangeSinkOptions): ChangeSink {
  const { config, logger } = options;
  const stop = new AbortController();
  let leader = false;
  let position = "";
  let published = 0;
  let duplicates = 0;

  const sleep = (ms: number) => delay(ms, undefined, { signal: stop.signal }).catch(() => {});

  /** One term as publisher: from taking the lock to losing it (or close()). */
  const lead = async (): Promise<void> => {
    const lock = await mysql.createConnection({ ...options.connection, multipleStatements: false });
    const lost = new AbortController();
    lock.on("error", () => lost.abort());
    // The lock goes with this session. MySQL ends a session idle this long,
    // so a host that vanished (no FIN) frees it in seconds, not wait_timeout's
    // hours; the live holder pings every second, a waiting one asks every second.
    await lock.query(`SET SESSION wait_timeout = ${lockSessionTimeoutSeconds}`);
    let nc: NatsConnection | undefined;
    let reader: BinlogReader | undefined;
    let checker: NodeJS.Timeout | undefined;
    let saver: NodeJS.Timeout | undefined;
    try {
      const name = lockName(config.stream);
      for (;;) {
        if (stop.signal.aborted) return;
        const [[got]] = (await lock.query({
          sql: "SELECT GET_LOCK(?, ?)",
          values: [name, lockWaitSeconds],
          rowsAsArray: true,
        })) as unknown as [[[unknown]]];
        if (Number(got[0]) === 1) break;
      }
      nc = await connectNats(config, options.connectTimeoutMs, "SQLGATE_CHANGES_SINK");
      const until = performance.now() + options.connectTimeoutMs;
      const jsm = await untilAnswered(() => jetstreamManager(nc as NatsConnection), until);
      await untilAnswered(
        () =>
          ensureStream(
            jsm,
            config.stream,
            {
              subjects: ["sqlgate.changes.>", "sqlgate.schema.>"],
              storage: StorageType.File,
              num_replicas: config.replicas,
              duplicate_window: nanos(config.duplicateWindowMs),
            },
            "SQLGATE_CHANGES_SINK_STREAM",
          ),
        until,
      );
      const js = jetstream(nc);

      const [rows] = (await lock.query({
        sql: `SELECT position FROM ${options.positionTable} WHERE sink = ?`,
        values: [config.stream],
        rowsAsArray: true,
      })) as unknown as [[string][]];
      let saved = rows[0]?.[0];
      if (saved === undefined) {
        // A first start publishes from now on.
        const [[now]] = (await lock.query({
          sql: "SELECT @@GLOBAL.gtid_binlog_pos",
          rowsAsArray: true,
        })) as unknown as [[[string]]];
        saved = now[0];
        await savePosition(lock, saved);
      }
      position = saved;
      leader = true;
      logger.info({ stream: config.stream, position }, "change sink: publishing to JetStream");

      const publisher = createPublisher(js, saved, nc.info?.max_payload ?? 1024 * 1024);
      const failed = new Promise<never>((_, reject) => {
        publisher.onFailure = reject;
      });
      // A failure after the term ended has no one left to tell.
      failed.catch(() => {});
      reader = createBinlogReader({
        connection: options.connection,
        serverId: sinkServerId(),
        from: saved,
        onTransaction: (tx) => publisher.transaction(tx),
        onDdl: (ddl) => publisher.ddl(ddl),
        onError(err) {
          if (err.fatal) publisher.onFailure?.(err);
          else logger.warn({ error: err.message }, "change sink: binlog reader reconnecting");
        },
      });
      let savedAt = performance.now();
      saver = setInterval(() => {
        let at = publisher.acknowledged();
        if (at === saved) {
          if (!publisher.idle() || performance.now() - savedAt < saveIdleEveryMs) return;
          at = reader?.position() ?? "";
          if (at === "" || at === saved) return;
        }
        savedAt = performance.now();
        savePosition(lock, at).then(
          () => {
            saved = at;
          },
          () => lost.abort(),
        );
      }, saveEveryMs);
      checker = setInterval(() => {
        lock.query("SELECT 1").catch(() => lost.abort());
      }, lockCheckMs);
      const ended = new Promise<void>((resolve) => {
        const done = () => resolve();
        stop.signal.addEventListener("abort", done, { once: true });
        lost.signal.addEventListener("abort", done, { once: true });
      });
      await Promise.race([ended, failed]);
      if (lost.signal.aborted) throw new Error("the MySQL session holding the sink's lock ended");
      // Closing: what is in flight is acknowledged, and its position saved.
      await reader.close();
      reader = undefined;
      await publisher.settled();
      await savePosition(lock, publisher.acknowledged());
    } finally {
      leader = false;
      clearInterval(saver);
      clearInterval(checker);
      await reader?.close().catch(() => {});
      await nc?.drain().catch(() => nc?.close());
      // Ending the session releases the lock.
      await lock.end().catch(() => lock.destroy());
    }
  };

  const savePosition = async (conn: mysql.Connection, at: string) => {
    await conn.query(
      `INSERT INTO ${options.positionTable} (sink, position) VALUES (?, ?)
       ON DUPLICATE KEY UPDATE position = VALUES(position)`,
      [config.stream, at],
    );
    position = at;
  };

  /** Publishes in commit order with many acks outstanding; knows which prefix is acknowledged. */
  const createPublisher = (js: JetStreamClient, from: string, maxPayload: number) => {
    /** Transactions published, oldest first, until all their messages are acknowledged. */
    const pending: { readonly position: string; readonly acks: Promise<unknown> }[] = [];
    let acknowledged = from;
    let inFlight = 0;
    const publisher = {
      onFailure: undefined as ((err: unknown) => void) | undefined,

      /** The position of the last transaction acknowledged with all before it. */
      acknowledged(): string {
        return acknowledged;
      },

      /** Whether nothing published awaits its acknowledgement. */
      idle(): boolean {
        return pending.length === 0;
      },

      async settled(): Promise<void> {
        await Promise.allSettled(pending.map((p) => p.acks));
        advance();
      },

      transaction(tx: BinlogTransaction): Promise<void> | undefined {
        const byTable = new Map<string, number[]>();
        tx.changes.forEach((change, i) => {
          if (isInternalTable(change.table)) return;
          if (!options.tables.matches(change.database, change.table)) return;
          const key = `${subjectToken(change.database)}.${subjectToken(change.table)}`;
          const list = byTable.get(key);
          if (list === undefined) byTable.set(key, [i]);
          else list.push(i);
        });
        // A transaction with nothing to publish does not move the saved
        // position: saving it would write a transaction of its own, read
        // back here, forever.
        if (byTable.size === 0) return;
        const shared = new SharedTransaction(tx);
        const acks: Promise<unknown>[] = [];
        for (const [key, changes] of byTable) {
          for (const { part, bytes } of sizedParts(
            shared,
            key,
            changes,
            maxPayload - headroomBytes,
          )) {
            acks.push(
              send(`sqlgate.changes.${key}`, `${tx.position}/${key}/${part}`, tx.position, bytes),
            );
          }
        }
        return track(tx.position, acks);
      },

      ddl(ddl: BinlogDdl): Promise<void> | undefined {
        if (
          !isShownSchemaChange(ddl.database, ddl.sql) ||
          !options.tables.followsDatabase(ddl.database) ||
          isInternalDdl(ddl.sql)
        ) {
          return;
        }
        const message = create(SchemaChangeSchema, {
          position: ddl.position,
          database: ddl.database,
          sql: ddl.sql,
        });
        return track(ddl.position, [
          send(
            `sqlgate.schema.${subjectToken(ddl.database)}`,
            `${ddl.position}/schema`,
            ddl.position,
            toBinary(SchemaChangeSchema, message),
          ),
        ]);
      },
    };

    /**
     * `changes` of one table, encoded, in parts of at most 1000 changes and
     * `budget` bytes each. A single change over the budget cannot be
     * published: it is logged as an error and left out, rather than
     * stopping the sink for good.
     */
    const sizedParts = (
      shared: SharedTransaction,
      key: string,
      changes: readonly number[],
      budget: number,
    ): { readonly part: number; readonly bytes: Uint8Array }[] => {
      const encode = (slices: readonly TransactionSlice[]) =>
        slices.map((slice) => ({ part: slice.part, bytes: transactionBytes(slice) }));
      const whole = encode(transactionSlices(shared, changes, true, maxChangesPerMessage));
      if (whole.every(({ bytes }) => bytes.byteLength <= budget)) return whole;
      const groups: number[][] = [];
      let group: number[] = [];
      let size = 0;
      for (const i of changes) {
        const one = transactionBytes({
          tx: shared,
          changes: [i],
          includeBefore: true,
          part: 0,
          lastPart: false,
        }).byteLength;
        if (one > budget) {
          logger.error(
            { position: shared.position, table: key, bytes: one, maxPayload },
            "change sink: a row change is larger than NATS's max_payload and is not published",
          );
          continue;
        }
        if (group.length > 0 && (size + one > budget || group.length >= maxChangesPerMessage)) {
          groups.push(group);
          group = [];
          size = 0;
        }
        group.push(i);
        size += one;
      }
      if (group.length > 0) groups.push(group);
      return encode(
        groups.map((indexes, n) => ({
          tx: shared,
          changes: indexes,
          includeBefore: true,
          part: groups.length === 1 ? 0 : n + 1,
          lastPart: groups.length > 1 && n === groups.length - 1,
        })),
      );
    };

    const send = (subject: string, id: string, at: string, data: Uint8Array) => {
      const h = headers();
      h.set("Sqlgate-Position", at);
      inFlight += 1;
      return js.publish(subject, data, { msgID: id, headers: h }).then(
        (ack) => {
          inFlight -= 1;
          published += 1;
          if (ack.duplicate) duplicates += 1;
        },
        (err: unknown) => {
          inFlight -= 1;
          publisher.onFailure?.(err);
          throw err;
        },
      );
    };

    const advance = () => {
      while (pending.length > 0) {
        const first = pending[0];
        if (first === undefined || !settledOk.has(first.acks)) break;
        acknowledged = first.position;
        settledOk.delete(first.acks);
        pending.shift();
      }
    };
    const settledOk = new WeakSet<Promise<unknown>>();

    const track = (at: string, acks: Promise<unknown>[]): Promise<void> | undefined => {
      const all = Promise.all(acks);
      pending.push({ position: at, acks: all });
      all.then(
        () => {
          settledOk.add(all);
          advance();
        },
        () => {},
      );
      // Reading waits while too many publishes are unanswered.
      if (inFlight < maxInFlight) return;
      return all.then(() => {});
    };

    return publisher;
  };

  const run = (async () => {
    let backoffMs = 250;
    while (!stop.signal.aborted) {
      const started = performance.now();
      try {
        await lead();
      } catch (err) {
        logger.warn(
          { error: err instanceof Error ? err.message : String(err) },
          "change sink: stopped publishing; trying again",
        );
      }
      if (stop.signal.aborted) break;
      backoffMs = performance.now() - started > 10_000 ? 250 : Math.min(backoffMs * 2, 5000);
      await sleep(backoffMs);
    }
  })();

  return {
    status: () => ({ leader, position, published, duplicates }),
    async close() {
      stop.abort();
      await run;
    },
  };
}
