/**
 * The SDK's Node transport: Connect over a small pool of HTTP/2 sessions.
 *
 * One HTTP/2 session is one TCP connection, and a few things hold a whole
 * connection hostage:
 * - the peer's SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 section 5.1.2): once
 *   that many streams are open, Node queues every new request silently until
 *   one of them ends, so a handful of long streams (stalled readers, ingest
 *   writers) holds up every short call behind them;
 * - a connection that dies takes all its calls with it, and a dead one is
 *   only noticed when a PING goes unanswered;
 * - connection-based balancing (an L4 load balancer, `node:cluster` workers)
 *   sends every call of one connection to the same backend.
 *
 * What does *not* hold a connection hostage in Node (measured on Node 20.20
 * against the gateway): a stream whose reader stopped reading. Node hands
 * received DATA back to the connection-level window as soon as it arrives and
 * holds back only that stream's own window (65,535 bytes by default, the
 * client's SETTINGS_INITIAL_WINDOW_SIZE), so other calls on the session keep
 * answering. Such streams are still counted, as "stalled", and new calls
 * prefer sessions without one, for peers that are not as forgiving.
 *
 * Each session is connect-node's `Http2SessionManager` (keepalive PINGs,
 * reconnection on next use, GOAWAY handling); the pool only chooses one per
 * call, at the moment the call opens its stream.
 */
import type http2 from "node:http2";
import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";

export interface PooledHttp2Options {
  /**
   * The gateway's base URL: `http:` speaks h2c with prior knowledge, `https:`
   * negotiates `h2` with ALPN.
   */
  readonly baseUrl: string;
  /**
   * How many HTTP/2 sessions (connections) to spread calls over (default 4).
   * Four lets calls avoid a session that is at its stream limit, stalled or
   * reconnecting, and lets connection-based balancing reach a few backends,
   * while a fleet of clients still holds few sockets on the gateway (each
   * session is one TCP connection, one TLS handshake). Sessions open on first
   * use, so an idle client holds none.
   */
  readonly sessions?: number | undefined;
  /**
   * A PING after this long without a frame from the gateway while calls are
   * open (default 30,000 ms), so a connection that died silently (a NAT or
   * load balancer dropped it) is found before a call waits on it. A session
   * idle for longer is verified with a PING before its next call.
   */
  readonly pingIntervalMs?: number | undefined;
  /** A session is dropped, and its calls fail, when a PING is unanswered this long (default 15,000 ms). */
  readonly pingTimeoutMs?: number | undefined;
  /** A session without streams is closed after this long (connect-node's default: 15 minutes). */
  readonly idleConnectionTimeoutMs?: number | undefined;
  /**
   * At most this many open streams per session before calls go elsewhere
   * (default: no cap of our own). The gateway's own limit, which it announces
   * in SETTINGS_MAX_CONCURRENT_STREAMS, is always respected.
   */
  readonly maxStreamsPerSession?: number | undefined;
  /**
   * A stream counts as stalled when response data has waited unread this long
   * since its reader last took a message (default 1,000 ms).
   */
  readonly stalledAfterMs?: number | undefined;
  /** Binary Protobuf (the default) or JSON. */
  readonly useBinaryFormat?: boolean | undefined;
  /** Interceptors run on every call, for example to add an `authorization` header. */
  readonly interceptors?: Interceptor[] | undefined;
  /**
   * Options for each `http2.connect()`: for `https:`, `ca` to trust a private
   * CA, `cert` and `key` for mutual TLS; `settings` for HTTP/2 settings such
   * as `initialWindowSize`.
   */
  readonly nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions | undefined;
}

/** connect-node's view of one session: "closed" until first used, "error" once it failed. */
export type PooledSessionState = ReturnType<Http2SessionManager["state"]>;

export interface PooledSessionStats {
  readonly state: PooledSessionState;
  /** Streams opened through this session (or being opened) that have not closed. */
  readonly openStreams: number;
  /** Open streams with response data waiting unread for `stalledAfterMs` or more. */
  readonly stalledStreams: number;
  /** The gateway's SETTINGS_MAX_CONCURRENT_STREAMS on the current connection, once known. */
  readonly maxConcurrentStreams: number | undefined;
  /** Streams ever opened through this session. */
  readonly streamsStarted: number;
  /** HTTP/2 connections this session has used (more than one after a reconnection). */
  readonly connections: number;
}

export interface PooledHttp2Transport {
  /** The Connect transport: give it to `createClient(Service, transport)`. */
  readonly transport: Transport;
  /** One entry per session, in pool order. */
  stats(): PooledSessionStats[];
  /** Closes every session: calls still running fail with `canceled`, later calls too. */
  close(): void;
}

type RequestArgs = Parameters<Http2SessionManager["request"]>;

interface Slot {
  readonly manager: Http2SessionManager;
  /** Open streams, each with the time its reader last took data (or it opened). */
  readonly streams: Map<http2.ClientHttp2Stream, number>;
  /** Calls that chose this slot and wait for their stream. */
  pending: number;
  /** The connection of the latest stream: where the peer's settings are read. */
  session: http2.Http2Session | undefined;
  connections: number;
  streamsStarted: number;
  reconnectStartedAt: number;
}

/** A session in "error" is reconnected in the background at most this often. */
const reconnectIntervalMs = 1000;

/**
 * A Connect transport over `options.sessions` HTTP/2 sessions. Each call
 * takes the next session in turn, passing over one that is at its stream
 * limit, has a stalled stream, or has failed (which is reconnected in the
 * background), unless no other session is better.
 */
export function createPooledHttp2Transport(options: PooledHttp2Options): PooledHttp2Transport {
  const size = options.sessions ?? 4;
  if (!Number.isInteger(size) || size < 1)
    throw new RangeError(`sessions must be a positive integer, got ${size}`);
  const maxStreamsPerSession = options.maxStreamsPerSession ?? Number.POSITIVE_INFINITY;
  const stalledAfterMs = options.stalledAfterMs ?? 1000;
  const slots: Slot[] = Array.from({ length: size }, () => ({
    manager: new Http2SessionManager(
      options.baseUrl,
      {
        pingIntervalMs: options.pingIntervalMs ?? 30_000,
        pingTimeoutMs: options.pingTimeoutMs ?? 15_000,
        ...(options.idleConnectionTimeoutMs !== undefined
          ? { idleConnectionTimeoutMs: options.idleConnectionTimeoutMs }
          : {}),
      },
      options.nodeOptions,
    ),
    streams: new Map(),
    pending: 0,
    session: undefined,
    connections: 0,
    streamsStarted: 0,
    reconnectStartedAt: Number.NEGATIVE_INFINITY,
  }));
  const owners = new WeakMap<http2.ClientHttp2Stream, Slot>();
  let next = 0;
  let closed = false;

  const streamLimit = (slot: Slot): number => {
    const session = slot.session;
    const peer =
      session === undefined || session.destroyed
        ? undefined
        : session.remoteSettings.maxConcurrentStreams;
    return Math.min(peer ?? Number.POSITIVE_INFINITY, maxStreamsPerSession);
  };

  const stalledStreams = (slot: Slot, now: number, stopAtFirst: boolean): number => {
    let stalled = 0;
    for (const [stream, lastReadAt] of slot.streams) {
      if (stream.readableLength > 0 && now - lastReadAt >= stalledAfterMs) {
        stalled++;
        if (stopAtFirst) break;
      }
    }
    return stalled;
  };

  /** 0 is a good choice; higher is worse: stalled, at its stream limit, failed. */
  const rank = (slot: Slot, now: number): number => {
    if (slot.manager.state() === "error") {
      if (now - slot.reconnectStartedAt >= reconnectIntervalMs) {
        slot.reconnectStartedAt = now;
        // connect() resolves with the new state, "error" again if it failed.
        void slot.manager.connect();
      }
      return 3;
    }
    if (slot.pending + slot.streams.size >= streamLimit(slot)) return 2;
    if (stalledStreams(slot, now, true) > 0) return 1;
    return 0;
  };

  const choose = (): Slot => {
    const now = Date.now();
    let best = next;
    let bestRank = Number.POSITIVE_INFINITY;
    for (let i = 0; i < size && bestRank > 0; i++) {
      const index = (next + i) % size;
      const r = rank(slots[index] as Slot, now);
      if (r < bestRank) {
        best = index;
        bestRank = r;
      }
    }
    next = (best + 1) % size;
    return slots[best] as Slot;
  };

  const track = (slot: Slot, stream: http2.ClientHttp2Stream): void => {
    slot.streamsStarted++;
    owners.set(stream, slot);
    const session = stream.session;
    if (session !== undefined && session !== slot.session) {
      slot.session = session;
      slot.connections++;
    }
    // A stream whose connection died while it was being opened may have
    // closed already: it must not count as open forever.
    if (stream.closed || stream.destroyed) return;
    slot.streams.set(stream, Date.now());
    stream.once("close", () => slot.streams.delete(stream));
  };

  // Connect's HTTP/2 client asks its session manager for every stream (and
  // reports every read back), so a manager that delegates to the pool's
  // sessions is where each call is placed.
  const pool = {
    authority: new URL(options.baseUrl).origin,
    async request(...args: RequestArgs): Promise<http2.ClientHttp2Stream> {
      if (closed) throw new ConnectError("the HTTP/2 session pool is closed", Code.Canceled);
      const slot = choose();
      slot.pending++;
      let stream: http2.ClientHttp2Stream;
      try {
        stream = await slot.manager.request(...args);
      } finally {
        slot.pending--;
      }
      track(slot, stream);
      return stream;
    },
    notifyResponseByteRead(stream: http2.ClientHttp2Stream): void {
      const slot = owners.get(stream);
      if (slot === undefined) return;
      if (slot.streams.has(stream)) slot.streams.set(stream, Date.now());
      slot.manager.notifyResponseByteRead(stream);
    },
  };

  // A call refused with REFUSED_STREAM is not resent: behind HAProxy 2.6 a
  // backend that died while running the call is reported so too
  // (haproxy/haproxy#3414), so it does not prove the call never ran.
  const transport = createConnectTransport({
    baseUrl: options.baseUrl,
    httpVersion: "2",
    sessionManager: pool,
    useBinaryFormat: options.useBinaryFormat ?? true,
    interceptors: options.interceptors ?? [],
  });

  return {
    transport,
    stats() {
      const now = Date.now();
      return slots.map((slot) => ({
        state: slot.manager.state(),
        openStreams: slot.pending + slot.streams.size,
        stalledStreams: stalledStreams(slot, now, false),
        maxConcurrentStreams:
          slot.session === undefined || slot.session.destroyed
            ? undefined
            : slot.session.remoteSettings.maxConcurrentStreams,
        streamsStarted: slot.streamsStarted,
        connections: slot.connections,
      }));
    },
    close() {
      closed = true;
      const reason = new ConnectError("the HTTP/2 session pool was closed", Code.Canceled);
      for (const slot of slots) slot.manager.abort(reason);
    },
  };
}
