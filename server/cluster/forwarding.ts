/**
 * Sessions reach their owner from any replica. A call whose session token
 * was minted by another replica (its signature verified first: a forged
 * token never causes an outbound connection) is forwarded, whole, to that
 * replica over a pooled HTTP/2 connection, if it is one of SQLGATE_PEERS,
 * and the owner's answer is returned unchanged: its message or error, a
 * server stream message by message (with backpressure), the remaining
 * deadline and the caller's cancellation passed on. An owner that cannot be
 * reached answers `unavailable`, saying the transaction is lost.
 *
 * Which calls carry a session: sqlgate.v1's `session` token, and
 * PlanetScale's `session.vitessSession.SessionUUID` when it names a pinned
 * session (the same tokens).
 */
import type { DescMethod } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { principalFrom } from "../principal.js";
import type { TokenCodec } from "../sessions/session-token.js";
import { deadlineMsOf } from "../transport/deadline-header.js";
import { hopFor, hopHeader, nodeHeader } from "./hop.js";
import { createPeers } from "./peers.js";

export interface ForwardingOptions {
  /** This replica's name (SQLGATE_NODE_URL), as its tokens carry it. */
  readonly node: string;
  /** The replicas calls may be forwarded to (SQLGATE_PEERS: URLs, or DNS names and ports). */
  readonly peers: readonly string[];
  readonly codec: TokenCodec;
}

/** The session token a request message carries, if any. */
function tokenOf(message: unknown): string | undefined {
  const m = message as {
    session?: string | { vitessSession?: { SessionUUID?: string } };
  };
  const session = m.session;
  if (typeof session === "string") return session === "" ? undefined : session;
  const name = session?.vitessSession?.SessionUUID;
  return name?.startsWith("sg1.") ? name : undefined;
}

function unreachable(owner: string, cause: unknown): ConnectError {
  return new ConnectError(
    `the replica that holds this session (${owner}) cannot be reached; its transaction is lost: begin a new one`,
    Code.Unavailable,
    undefined,
    undefined,
    cause,
  );
}

/** Whether `err` says the owner never answered (as opposed to the owner's own error). */
function isConnectionFailure(err: ConnectError): boolean {
  return err.code === Code.Unavailable && err.metadata.get(nodeHeader) === null;
}

export function createForwarding(options: ForwardingOptions): Interceptor {
  const peers = createPeers(options.peers, options.node.startsWith("https:") ? "https" : "http");
  const transports = new Map<string, Transport>();
  const transportTo = (owner: string): Transport => {
    let transport = transports.get(owner);
    if (transport === undefined) {
      transport = createConnectTransport({
        baseUrl: owner,
        httpVersion: "2",
        useBinaryFormat: true,
      });
      transports.set(owner, transport);
    }
    return transport;
  };

  return (next) => async (req) => {
    // A server-streaming call's one request message arrives as a stream:
    // read it, and hand it on as a stream again.
    let message: unknown;
    if (!req.stream) {
      message = req.message;
    } else if (req.method.methodKind === "server_streaming") {
      for await (const m of req.message) message = m;
      req = { ...req, message: single(message) } as typeof req;
    }
    const token = message === undefined ? undefined : tokenOf(message);
    const owner = token === undefined ? options.node : ownerOf(options.codec, token, options.node);
    if (owner === options.node) {
      try {
        const res = await next(req);
        res.header.set(nodeHeader, options.node);
        return res;
      } catch (err) {
        // An error that carries the node is the owner's answer, not a lost hop.
        const error = ConnectError.from(err);
        error.metadata.set(nodeHeader, options.node);
        throw error;
      }
    }
    if (req.header.has(hopHeader)) {
      throw new ConnectError(
        `this session belongs to replica ${owner}, and this call was forwarded already`,
        Code.FailedPrecondition,
      );
    }
    if (!(await peers.has(owner))) {
      throw new ConnectError(
        `this session belongs to replica ${owner}, which is not one of SQLGATE_PEERS`,
        Code.FailedPrecondition,
      );
    }
    const client = createClient(req.service, transportTo(owner)) as Client<typeof req.service>;
    const method = (client as unknown as Record<string, (m: unknown, o: object) => unknown>)[
      (req.method as DescMethod).localName
    ];
    const timeoutMs = deadlineMsOf((name) => req.header.get(name));
    const callOptions = {
      signal: req.signal,
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      headers: { [hopHeader]: hopFor(options.codec, principalFrom(req.contextValues).name) },
    };
    // The response's headers replace the protocol's own: keep its content type
    // (the same as the request's for every protocol here).
    const header = new Headers({ [nodeHeader]: owner });
    const contentType = req.header.get("content-type");
    if (contentType !== null) header.set("content-type", contentType);
    if (req.method.methodKind === "server_streaming") {
      const messages = method?.call(client, message, callOptions) as AsyncIterable<never>;
      return {
        stream: true,
        service: req.service,
        method: req.method,
        header,
        trailer: new Headers(),
        message: relay(messages, owner),
      } as unknown as Awaited<ReturnType<typeof next>>;
    }
    try {
      const answer = await (method?.call(client, message, callOptions) as Promise<unknown>);
      return {
        stream: false,
        service: req.service,
        method: req.method,
        header,
        trailer: new Headers(),
        message: answer,
      } as unknown as Awaited<ReturnType<typeof next>>;
    } catch (err) {
      const error = ConnectError.from(err);
      throw isConnectionFailure(error) ? unreachable(owner, error) : error;
    }
  };
}

/**
 * The replica a token names; this one for a token that does not verify,
 * which the service then refuses in its own way (PlanetScale's in-band).
 */
function ownerOf(codec: TokenCodec, token: string, self: string): string {
  try {
    return codec.verify(token).node;
  } catch {
    return self;
  }
}

async function* single<T>(message: T): AsyncGenerator<T> {
  yield message;
}

/** The owner's stream, its connection failures said plainly. */
async function* relay<T>(messages: AsyncIterable<T>, owner: string): AsyncGenerator<T> {
  try {
    yield* messages;
  } catch (err) {
    const error = ConnectError.from(err);
    throw isConnectionFailure(error) ? unreachable(owner, error) : error;
  }
}
