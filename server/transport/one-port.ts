/**
 * One listening port for every client: HTTP/1.1 (curl, fetch, Connect JSON,
 * gRPC-Web) and HTTP/2 (gRPC, Connect over h2).
 *
 * Cleartext: Node's HTTP/2 server ignores `allowHTTP1` without TLS, so each new
 * socket's first bytes are read: the HTTP/2 connection preface
 * (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, RFC 9113 section 3.4) goes to an HTTP/2
 * server ("prior knowledge" h2c), anything else to an HTTP/1.1 server.
 * TLS: ALPN chooses `h2` or `http/1.1` on one secure server.
 *
 * The returned server is what fastify listens on (as a `serverFactory`). Its
 * `closeIdleConnections()` makes `close()` finish promptly: idle HTTP/1.1
 * connections are closed, HTTP/2 sessions get a GOAWAY and close once their
 * streams end, and busy HTTP/1.1 connections close after their response.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { Duplex } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { deadlineMsOf } from "./deadline-header.js";

export type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface TlsOptions {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** CA whose client certificates are required (SQLGATE_TLS_CLIENT_CA); undefined: none asked. */
  readonly clientCa?: Buffer | undefined;
}

/**
 * The common name of the verified client certificate of the connection a
 * request came on; undefined on cleartext, or without a verified certificate.
 */
export function clientCertificateName(request: { socket: unknown }): string | undefined {
  const socket = request.socket as Partial<import("node:tls").TLSSocket> | null;
  if (socket?.authorized !== true || typeof socket.getPeerCertificate !== "function") {
    return undefined;
  }
  const subject = socket.getPeerCertificate().subject as { CN?: string | string[] } | undefined;
  const cn = subject?.CN;
  return Array.isArray(cn) ? cn[0] : cn;
}

export interface OnePortOptions {
  /** PEM certificate and key; without them the port is cleartext. */
  readonly tls?: TlsOptions | undefined;
  /** HTTP/2 streams one client may have open at once. */
  readonly maxConcurrentStreams: number;
  /** How long an idle HTTP/1.1 keep-alive connection stays open. */
  readonly keepAliveTimeoutMs: number;
  /**
   * The longest a request body may take to arrive (SQLGATE_MAX_TIMEOUT_MS);
   * a call's own deadline, if shorter, bounds it too.
   */
  readonly bodyTimeoutMs: number;
  /** Connections older than this (+/-10%) are asked to go: 0 never. */
  readonly maxConnectionAgeMs?: number;
  /** How long an aged HTTP/2 connection's calls get to finish before it closes. */
  readonly maxConnectionAgeGraceMs?: number;
  /** HTTP/2 keepalive PINGs this often (0: none); an unanswered one closes the connection. */
  readonly keepaliveIntervalMs?: number;
  readonly keepaliveTimeoutMs?: number;
}

/** A connection's age limit, spread +/-10% so that clients do not reconnect in step. */
function jittered(ms: number): number {
  return Math.round(ms * (0.9 + Math.random() * 0.2));
}

/** The server fastify listens on, with the hooks fastify's close() calls. */
export interface OnePortServer extends net.Server {
  closeIdleConnections(): void;
  closeHttp2Sessions(): void;
  /**
   * Cuts every connection still open (after the shutdown grace period):
   * calls whose clients never read their end, or never hang up, must not
   * keep the process alive.
   */
  destroyConnections(): void;
}

const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

const http2Settings = (o: OnePortOptions): http2.Settings => ({
  maxConcurrentStreams: o.maxConcurrentStreams,
  // A 1 MiB stream window lets large results flow without waiting for
  // WINDOW_UPDATE round trips (the default is 64 KiB).
  initialWindowSize: 1 << 20,
});

export function createOnePortServer(
  handler: RequestHandler,
  options: OnePortOptions,
): OnePortServer {
  handler = withBodyDeadline(handler, options.bodyTimeoutMs);
  if ((options.maxConnectionAgeMs ?? 0) > 0)
    handler = withHttp1Age(handler, options.maxConnectionAgeMs ?? 0);
  const sessions = new Set<http2.ServerHttp2Session>();
  const trackSession = (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    const timers: NodeJS.Timeout[] = [];
    session.once("close", () => {
      sessions.delete(session);
      for (const timer of timers) clearTimeout(timer);
    });
    const age = options.maxConnectionAgeMs ?? 0;
    if (age > 0) {
      // Two GOAWAYs (RFC 9113 section 6.8): the first, naming the highest
      // possible stream, tells the client to open no more streams while still
      // accepting those already on their way; a second later, close() names
      // the last stream taken, and the ones in flight finish within the grace.
      const aged = setTimeout(() => {
        if (session.closed || session.destroyed) return;
        session.goaway(http2.constants.NGHTTP2_NO_ERROR, 2 ** 31 - 1);
        timers.push(
          setTimeout(() => {
            if (!session.closed && !session.destroyed) session.close();
          }, 1000).unref(),
          setTimeout(() => session.destroy(), options.maxConnectionAgeGraceMs ?? 30_000).unref(),
        );
      }, jittered(age));
      timers.push(aged.unref());
    }
    const every = options.keepaliveIntervalMs ?? 0;
    if (every > 0) {
      const pinger = setInterval(() => {
        // A session that ended between two pings: its timers are being cleared.
        if (session.closed || session.destroyed) return;
        const answered = setTimeout(
          () => session.destroy(),
          options.keepaliveTimeoutMs ?? 20_000,
        ).unref();
        const sent = session.ping((err) => {
          clearTimeout(answered);
          if (err) session.destroy();
        });
        if (!sent) clearTimeout(answered);
      }, every);
      timers.push(pinger.unref() as unknown as NodeJS.Timeout);
    }
  };
  let closing = false;
  let reaper: NodeJS.Timeout | undefined;
  /** Sockets that have not sent their first bytes yet: neither server owns them. */
  const sniffing = new Set<net.Socket>();

  let server: net.Server;
  let closeIdleHttp1: () => void;
  let destroyHttp1: () => void;
  let stopHttp1 = () => {};

  if (options.tls === undefined) {
    const h1 = http.createServer({ keepAliveTimeout: options.keepAliveTimeoutMs }, handler);
    // The HTTP/1.1 server never listens itself (sockets are handed to it), but
    // its connection tracking, which closeIdleConnections() and the header and
    // request timeouts rely on, starts on 'listening'.
    h1.emit("listening");
    const h2 = http2.createServer({ settings: http2Settings(options) }, handler);
    h2.on("session", trackSession);
    closeIdleHttp1 = () => h1.closeIdleConnections();
    destroyHttp1 = () => h1.closeAllConnections();
    stopHttp1 = () => h1.close();
    server = net.createServer((socket) => sniff(socket, h1, h2, sniffing));
  } else {
    const secure = http2.createSecureServer(
      {
        cert: options.tls.cert,
        key: options.tls.key,
        // mTLS: only clients with a certificate from this CA get through the handshake.
        ...(options.tls.clientCa === undefined
          ? {}
          : { ca: options.tls.clientCa, requestCert: true, rejectUnauthorized: true }),
        allowHTTP1: true,
        settings: http2Settings(options),
      },
      handler,
    );
    secure.on("session", trackSession);
    const http1Sockets = trackHttp1OverTls(secure, () => closing);
    closeIdleHttp1 = () => {
      for (const [socket, active] of http1Sockets) if (active === 0) socket.end();
    };
    destroyHttp1 = () => {
      for (const socket of http1Sockets.keys()) socket.destroy();
    };
    server = secure;
  }

  const closeHttp2Sessions = () => {
    for (const session of sessions) session.close();
  };
  const onePort = server as OnePortServer;
  onePort.closeHttp2Sessions = closeHttp2Sessions;
  onePort.destroyConnections = () => {
    for (const socket of sniffing) socket.destroy();
    for (const session of sessions) session.destroy();
    destroyHttp1();
  };
  onePort.closeIdleConnections = () => {
    closing = true;
    for (const socket of sniffing) socket.destroy();
    closeIdleHttp1();
    closeHttp2Sessions();
    // Busy HTTP/1.1 connections turn idle when their response ends: reap them
    // until the listener has closed.
    reaper ??= setInterval(closeIdleHttp1, 50).unref();
  };
  server.once("close", () => {
    clearInterval(reaper);
    stopHttp1();
  });
  return onePort;
}

/** How long a new connection may stay silent before it is closed. */
const sniffTimeoutMs = 10_000;

/** Hands `socket` to the HTTP/2 server if it starts with the preface, else to HTTP/1.1. */
function sniff(
  socket: net.Socket,
  h1: http.Server,
  h2: http2.Http2Server,
  sniffing: Set<net.Socket>,
): void {
  sniffing.add(socket);
  socket.setTimeout(sniffTimeoutMs, () => socket.destroy());
  socket.once("close", () => sniffing.delete(socket));
  let head: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
    const n = Math.min(head.length, preface.length);
    const couldBeHttp2 = head.subarray(0, n).equals(preface.subarray(0, n));
    if (couldBeHttp2 && head.length < preface.length) return; // need more bytes
    socket.off("data", onData);
    socket.off("error", onError);
    sniffing.delete(socket);
    socket.setTimeout(0);
    socket.pause();
    socket.unshift(head);
    // Both servers take the bytes already read from the socket's buffer. The
    // HTTP/2 session then reads the socket itself, so the JS stream must stay
    // paused for it; the HTTP/1.1 parser reads through the stream.
    if (couldBeHttp2) {
      h2.emit("connection", socket);
    } else {
      h1.emit("connection", socket);
      socket.resume();
    }
  };
  const onError = () => socket.destroy();
  socket.on("data", onData);
  socket.on("error", onError);
}

/**
 * Counts in-flight requests per HTTP/1.1-over-TLS socket, so that shutdown can
 * end idle ones (Http2SecureServer has no closeIdleConnections).
 */
function trackHttp1OverTls(
  server: http2.Http2SecureServer,
  isClosing: () => boolean,
): Map<Duplex, number> {
  const active = new Map<Duplex, number>();
  server.on("secureConnection", (socket: import("node:tls").TLSSocket) => {
    if (socket.alpnProtocol === "h2") return;
    active.set(socket, 0);
    socket.once("close", () => active.delete(socket));
  });
  server.prependListener(
    "request",
    (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
      if (req.httpVersionMajor !== 1) return;
      const socket = req.socket as Duplex;
      active.set(socket, (active.get(socket) ?? 0) + 1);
      res.once("finish", () => {
        const left = (active.get(socket) ?? 1) - 1;
        active.set(socket, left);
        if (left === 0 && isClosing()) socket.end();
      });
    },
  );
  return active;
}

/** When each HTTP/1.1 connection may be asked to go. */
const http1Deadlines = new WeakMap<object, number>();

/**
 * `handler`, answering on an HTTP/1.1 connection older than `ageMs` (+/-10%)
 * with `Connection: close`, so that its client reconnects (and a balancer
 * may send it elsewhere), as HTTP/2 connections get GOAWAY.
 */
function withHttp1Age(handler: RequestHandler, ageMs: number): RequestHandler {
  return (req, res) => {
    if (req.httpVersionMajor === 1) {
      const socket = req.socket;
      let until = http1Deadlines.get(socket);
      if (until === undefined) {
        until = Date.now() + jittered(ageMs);
        http1Deadlines.set(socket, until);
      }
      if (Date.now() > until) (res as http.ServerResponse).shouldKeepAlive = false;
    }
    handler(req, res);
  };
}

/** Content types of streams (Connect streaming, gRPC, gRPC-Web): their bodies may last. */
const streamingTypes = /^application\/(connect\+|grpc)/;

/**
 * `handler`, with request bodies that must arrive in time: a unary body
 * within the call's deadline and `maxMs`, a stream's (ingest streams last
 * as long as their clients like) within the call's own deadline, if it has
 * one. A client that sends its body too slowly (or never finishes it) gets
 * 408 and its stream or connection closed, rather than holding a request
 * open for as long as it likes.
 */
function withBodyDeadline(handler: RequestHandler, maxMs: number): RequestHandler {
  return (req, res) => {
    const deadline = deadlineMsOf((name) => {
      const value = req.headers[name];
      return typeof value === "string" ? value : undefined;
    });
    const streaming = streamingTypes.test(String(req.headers["content-type"] ?? ""));
    const ms = streaming ? deadline : Math.min(deadline ?? maxMs, maxMs);
    if (!req.complete && ms !== undefined) {
      const timer = setTimeout(() => {
        if (req.complete) return;
        if (!res.headersSent) {
          res.writeHead(408, { "content-type": "application/json", connection: "close" });
          res.end(
            JSON.stringify({
              code: "deadline_exceeded",
              message: `the request body did not arrive within ${ms} ms`,
            }),
          );
        }
        req.destroy();
      }, ms);
      const clear = () => clearTimeout(timer);
      req.once("end", clear);
      req.once("close", clear);
    }
    // Compressed bodies are checked by no one here: Connect decompresses them later.
    const compressed =
      req.headers["content-encoding"] !== undefined ||
      req.headers["connect-content-encoding"] !== undefined;
    if (!compressed && /json/.test(String(req.headers["content-type"] ?? ""))) checkUtf8(req);
    handler(req, res);
  };
}

/**
 * Makes reading `req`'s body fail with `invalid_argument` at the first byte
 * that is not UTF-8: JSON is text, and decoding it leniently would turn bad
 * bytes into U+FFFD and store that (the binary codec already refuses them).
 */
function checkUtf8(req: http.IncomingMessage | http2.Http2ServerRequest): void {
  const chunks = req[Symbol.asyncIterator].bind(req);
  Object.defineProperty(req, Symbol.asyncIterator, {
    value: async function* () {
      const decoder = new TextDecoder("utf-8", { fatal: true });
      try {
        for await (const chunk of chunks()) {
          decoder.decode(chunk as Uint8Array, { stream: true });
          yield chunk;
        }
        decoder.decode();
      } catch (err) {
        if (!(err instanceof TypeError)) throw err;
        throw new ConnectError("the request body is not valid UTF-8", Code.InvalidArgument);
      }
    },
  });
}
