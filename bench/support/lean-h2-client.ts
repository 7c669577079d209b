/**
 * A lean Connect unary client for load generation: the Connect protocol's
 * binary unary call (POST, `content-type: application/proto`, the message as
 * the body, HTTP 200 or an error as JSON) straight on `node:http2`, spread
 * over several sessions.
 *
 * Why: on a 2-core machine the load generator shares the CPU with the gateway
 * and MariaDB. connect-node's client spends about as much CPU per call as the
 * gateway's handler (a ConnectError, AbortSignals and an async_hooks bind per
 * call), so a connect-node load generator caps the call rate near 1 / its own
 * CPU per call. This client skips that machinery and leaves the gateway's own
 * capacity visible; both are reported side by side.
 */
import http2 from "node:http2";
import { onCleanup } from "./harness.js";

export interface LeanUnaryClient {
  /** Sends `body` to `path` (e.g. `/pkg.Service/Method`) on session `session % sessions`. */
  call(session: number, path: string, body: Uint8Array): Promise<Buffer>;
}

const headersFor = (path: string): http2.OutgoingHttpHeaders => ({
  ":method": "POST",
  ":path": path,
  "content-type": "application/proto",
  "connect-protocol-version": "1",
});

export function createLeanUnaryClient(baseUrl: string, sessions: number): LeanUnaryClient {
  const list: (http2.ClientHttp2Session | undefined)[] = [];
  const connect = (slot: number): http2.ClientHttp2Session => {
    const session = http2.connect(baseUrl);
    // Errors also reach each open stream; an idle session's error is not a call's.
    session.on("error", () => {});
    // A GOAWAY (HAProxy closes idle client connections after its timeouts)
    // or a close ends the session for new calls: the slot's next call opens
    // another. GOAWAY may come more than once: act only while it is current.
    const retire = () => {
      if (list[slot] === session) list[slot] = undefined;
    };
    session.on("goaway", retire);
    session.on("close", retire);
    list[slot] = session;
    return session;
  };
  for (let slot = 0; slot < sessions; slot++) connect(slot);
  onCleanup(async () => {
    for (const session of list) session?.destroy();
  });
  const headers = new Map<string, http2.OutgoingHttpHeaders>();
  return {
    call(session, path, body) {
      const slot = session % sessions;
      const s = list[slot] ?? connect(slot);
      let h = headers.get(path);
      if (h === undefined) {
        h = headersFor(path);
        headers.set(path, h);
      }
      return new Promise((resolve, reject) => {
        const stream = s.request(h);
        let status = 0;
        const chunks: Buffer[] = [];
        stream.on("response", (responseHeaders) => {
          status = Number(responseHeaders[":status"]);
        });
        stream.on("data", (chunk: Buffer) => chunks.push(chunk));
        stream.on("end", () => {
          const response = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
          if (status === 200) resolve(response);
          else reject(new Error(`HTTP ${status}: ${response.toString("utf8").slice(0, 300)}`));
        });
        stream.on("error", reject);
        stream.end(body);
      });
    },
  };
}
