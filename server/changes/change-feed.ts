/**
 * Change streams for subscribers: the binlog reader's transactions, filtered
 * per subscriber, into bounded queues.
 *
 * Subscribers that start from now share one reader per gateway, which never
 * waits for them: each has a queue of at most `bufferTransactions` messages,
 * and one that falls that far behind is ended with `resource_exhausted`
 * naming the position to resume from, while the others carry on. A
 * subscriber that resumes from a position gets a reader of its own, started
 * there (resuming cannot be served from the shared reader, which is already
 * past it), and that reader waits for it: catching up goes as fast as the
 * subscriber reads, and is never ended for being slow.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { isInternalDdl, isInternalTable } from "../ingest/internal-tables.js";
import type { Logger } from "../observability/logger.js";
import {
  type BinlogConnectionOptions,
  type BinlogDdl,
  type BinlogReader,
  createBinlogReader,
} from "./binlog-reader.js";
import { type BinlogQuery, checkBinlogPosition, checkBinlogSettings } from "./binlog-settings.js";
import { type FeedMessage, SharedTransaction, transactionSlices } from "./change-messages.js";
import { isShownSchemaChange, type TableFilter } from "./table-filter.js";

export interface SubscribeOptions {
  readonly tables: TableFilter;
  /** A position to resume after; "" for from now. */
  readonly from: string;
  readonly includeBefore: boolean;
  readonly heartbeatMs: number;
  readonly signal: AbortSignal;
}

export interface ChangeFeed {
  /** The subscriber's messages: transactions, schema changes, and heartbeats while idle. */
  subscribe(options: SubscribeOptions): AsyncGenerator<FeedMessage>;
  close(): Promise<void>;
}

export interface ChangeFeedOptions {
  /** The binlog connection (an account with replication privileges). */
  readonly connection: BinlogConnectionOptions;
  /** Runs a query on the primary (settings and position checks). */
  readonly query: BinlogQuery;
  /** Messages queued per subscriber before it is ended as too slow. */
  readonly bufferTransactions: number;
  /** Row changes per message; a larger transaction arrives in parts. */
  readonly maxChangesPerMessage: number;
  readonly logger: Logger;
}

/** One subscriber's queue and state. */
interface Subscriber {
  readonly options: SubscribeOptions;
  readonly queue: { readonly message: FeedMessage; readonly position: string }[];
  /** The position after the last message handed to the subscriber. */
  delivered: string;
  /** Set when it must end (too slow, or its reader failed). */
  failure: ConnectError | undefined;
  wake: (() => void) | undefined;
  /** A private reader waiting for room in the queue. */
  onRoom: (() => void) | undefined;
  /** Whether the subscriber gets changes of `database`.`table` (answers kept per table). */
  follows(database: string, table: string): boolean;
}

/** A binlog reader and the subscribers it feeds. */
interface Source {
  readonly subscribers: Set<Subscriber>;
  readonly reader: BinlogReader;
  /** The position after the last transaction read. */
  position: string;
}

/** Reader ids: distinct per reader, and well away from servers' own `server_id`s. */
let nextServerId = 0x4000_0000 + Math.floor(Math.random() * 0x1000_0000);

export function createChangeFeed(options: ChangeFeedOptions): ChangeFeed {
  const { logger } = options;
  let live: Source | undefined;
  const sources = new Set<Source>();

  const messagesOf = (subscriber: Subscriber, tx: SharedTransaction): FeedMessage[] => {
    const { includeBefore } = subscriber.options;
    const changes: number[] = [];
    const all = tx.tx.changes;
    for (let i = 0; i < all.length; i++) {
      const c = all[i] as (typeof all)[number];
      if (subscriber.follows(c.database, c.table)) changes.push(i);
    }
    return transactionSlices(tx, changes, includeBefore, options.maxChangesPerMessage).map(
      (value) => ({ case: "transaction", value }),
    );
  };

  /**
   * Queues `messages` for `subscriber`. The shared reader never waits: a
   * subscriber without room is ended. A private reader waits for room
   * instead (the promise returned), holding its binlog stream back.
   */
  const push = (
    subscriber: Subscriber,
    messages: readonly FeedMessage[],
    position: string,
    shared: boolean,
  ): Promise<void> | undefined => {
    if (subscriber.failure !== undefined) return;
    if (shared && subscriber.queue.length + messages.length > options.bufferTransactions) {
      subscriber.failure = new ConnectError(
        `this subscriber fell more than ${options.bufferTransactions} messages behind (SQLGATE_CHANGES_BUFFER); resume from position ${subscriber.delivered || "(its start)"}`,
        Code.ResourceExhausted,
        { "sqlgate-resume-from": subscriber.delivered },
      );
      subscriber.queue.length = 0;
    } else {
      // A subscriber resumes after a whole transaction: only the last part carries its position on.
      messages.forEach((message, i) => {
        subscriber.queue.push({ message, position: i === messages.length - 1 ? position : "" });
      });
    }
    subscriber.wake?.();
    if (shared || subscriber.queue.length < options.bufferTransactions) return;
    return new Promise((resolve) => {
      subscriber.onRoom = resolve;
    });
  };

  /** Pushes to every subscriber of `source`; resolves when a private one has room. */
  const pushAll = (
    source: Source,
    messagesFor: (subscriber: Subscriber) => readonly FeedMessage[],
    position: string,
  ): Promise<void> | undefined => {
    source.position = position;
    const shared = source === live;
    const waits: Promise<void>[] = [];
    for (const s of source.subscribers) {
      const wait = push(s, messagesFor(s), position, shared);
      if (wait !== undefined) waits.push(wait);
    }
    return waits.length === 0 ? undefined : Promise.all(waits).then(() => {});
  };

  const startSource = (from: string): Source => {
    const subscribers = new Set<Subscriber>();
    const source: Source = {
      subscribers,
      position: from,
      reader: createBinlogReader({
        connection: options.connection,
        serverId: nextServerId++,
        from,
        onTransaction(tx) {
          const shared = new SharedTransaction(tx);
          return pushAll(source, (s) => messagesOf(s, shared), tx.position);
        },
        onDdl(ddl: BinlogDdl) {
          const shown = isShownSchemaChange(ddl.database, ddl.sql) && !isInternalDdl(ddl.sql);
          const message: FeedMessage = {
            case: "schemaChange",
            value: { position: ddl.position, database: ddl.database, sql: ddl.sql },
          };
          return pushAll(
            source,
            (s) => (shown && s.options.tables.followsDatabase(ddl.database) ? [message] : []),
            ddl.position,
          );
        },
        onError(err) {
          if (!err.fatal) {
            logger.warn({ error: err.message }, "binlog reader: reconnecting");
            return;
          }
          logger.error({ error: err.message }, "binlog reader stopped");
          const failure = new ConnectError(err.message, Code.FailedPrecondition);
          for (const s of subscribers) {
            s.failure ??= failure;
            s.wake?.();
          }
          sources.delete(source);
          if (live === source) live = undefined;
        },
      }),
    };
    sources.add(source);
    return source;
  };

  const failedPrecondition = (message: string) =>
    new ConnectError(message, Code.FailedPrecondition);

  return {
    async *subscribe(subscription) {
      const problems = await checkBinlogSettings(options.query);
      if (problems.length > 0) {
        throw failedPrecondition(
          `change streams need the binary log set up: ${problems.map((p) => p.message).join("; ")}`,
        );
      }
      if (subscription.from !== "") {
        const check = await checkBinlogPosition(options.query, subscription.from).catch(
          (err: unknown) => {
            throw new ConnectError(
              `from: ${err instanceof Error ? err.message : String(err)}`,
              Code.InvalidArgument,
            );
          },
        );
        if (!check.available) {
          throw failedPrecondition(
            `from: position ${subscription.from} is no longer in the binary log (${check.reason ?? "purged"}); the oldest available is ${check.oldest}`,
          );
        }
      }
      if (subscription.from === "") live ??= startSource("");
      const source = subscription.from === "" ? (live as Source) : startSource(subscription.from);
      const subscriber: Subscriber = {
        options: subscription,
        queue: [],
        delivered: subscription.from,
        failure: undefined,
        wake: undefined,
        onRoom: undefined,
        follows: followsTables(subscription.tables),
      };
      // Joining a reader already under way: it starts after what that reader passed.
      if (subscriber.delivered === "") subscriber.delivered = source.position;
      source.subscribers.add(subscriber);
      try {
        await untilReadyOrAborted(source.reader, subscription.signal);
        if (subscriber.delivered === "") subscriber.delivered = source.reader.position();
        // A subscriber from now learns at once where it starts.
        if (subscription.from === "" && !subscription.signal.aborted) {
          yield { case: "heartbeat", value: { position: subscriber.delivered } };
        }
        while (!subscription.signal.aborted) {
          const next = subscriber.queue.shift();
          if (
            subscriber.onRoom !== undefined &&
            subscriber.queue.length < options.bufferTransactions / 2
          ) {
            subscriber.onRoom();
            subscriber.onRoom = undefined;
          }
          if (next !== undefined) {
            // Handed to the stream: a resume position given later starts after it.
            if (next.position !== "") subscriber.delivered = next.position;
            yield next.message;
            continue;
          }
          if (subscriber.failure !== undefined) throw subscriber.failure;
          const woken = await new Promise<boolean>((resolve) => {
            const settle = (wokenUp: boolean) => {
              clearTimeout(timer);
              subscription.signal.removeEventListener("abort", done);
              subscriber.wake = undefined;
              resolve(wokenUp);
            };
            const done = () => settle(true);
            const timer = setTimeout(() => settle(false), subscription.heartbeatMs);
            subscriber.wake = done;
            subscription.signal.addEventListener("abort", done, { once: true });
          });
          if (!woken && subscriber.queue.length === 0) {
            // Nothing waits for this subscriber: it stands where its reader
            // is, past transactions that had nothing for it.
            if (source.position !== "") subscriber.delivered = source.position;
            yield { case: "heartbeat", value: { position: subscriber.delivered } };
          }
        }
      } finally {
        subscriber.onRoom?.();
        source.subscribers.delete(subscriber);
        // A private reader ends with its subscriber; the shared one stays for the next.
        if (source !== live) {
          sources.delete(source);
          await source.reader.close();
        }
      }
    },

    async close() {
      await Promise.all([...sources].map((s) => s.reader.close()));
      sources.clear();
      live = undefined;
    },
  };
}

/** `tables.matches`, never the gateway's own tables, each answer kept (tables are few). */
function followsTables(tables: TableFilter): (database: string, table: string) => boolean {
  const answers = new Map<string, Map<string, boolean>>();
  return (database, table) => {
    let inDatabase = answers.get(database);
    if (inDatabase === undefined) {
      inDatabase = new Map();
      answers.set(database, inDatabase);
    }
    let answer = inDatabase.get(table);
    if (answer === undefined) {
      answer = tables.matches(database, table) && !isInternalTable(table);
      // A subscriber following `*` through a million tables keeps no more than this many.
      if (inDatabase.size < 10_000) inDatabase.set(table, answer);
    }
    return answer;
  };
}

/**
 * Waits for `reader` to be reading, or for `signal`: a subscriber that gives
 * up while its reader cannot connect must not wait for it forever.
 */
function untilReadyOrAborted(reader: BinlogReader, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => resolve();
    signal.addEventListener("abort", done, { once: true });
    reader.ready().then(
      () => {
        signal.removeEventListener("abort", done);
        resolve();
      },
      (err: unknown) => {
        signal.removeEventListener("abort", done);
        reject(err);
      },
    );
  });
}
