/**
 * The SDK's credentials: `token` and `username`/`password` are sent as a
 * standard `authorization` header by both entries, over HTTP/2, HTTP/1.1 and
 * fetch (also bundled into a sandbox with web globals only, which has no
 * `btoa` or `Buffer`). The servers here stand in for an authenticating front
 * proxy: they record the header and refuse every call with a Connect
 * `unauthenticated` error, which must reach the caller as a DatabaseError
 * that does not repeat the credentials.
 */
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import vm from "node:vm";
import { base64FromBytes } from "../client/src/auth.js";
import { createClient as createFetchClient } from "../client/src/fetch.js";
import { createClient, DatabaseError, type SqlgateClient } from "../client/src/index.js";
import { bundle, webContext } from "./support/web-sandbox.js";

const refusal = JSON.stringify({ code: "unauthenticated", message: "credentials refused" });

/** A loopback server that records each request's `authorization` header and answers 401. */
async function startProxy(t: { after(fn: () => unknown): void }, version: "1.1" | "2") {
  const seen: (string | undefined)[] = [];
  /** Each request's `connect-timeout-ms`, the deadline the client sent. */
  const deadlines: (string | undefined)[] = [];
  const handler = (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ) => {
    seen.push(req.headers.authorization);
    const timeout = req.headers["connect-timeout-ms"];
    deadlines.push(Array.isArray(timeout) ? timeout.join() : timeout);
    req.resume();
    req.on("end", () => {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(refusal);
    });
  };
  const sessions = new Set<http2.ServerHttp2Session>();
  let server: http.Server | http2.Http2Server;
  let closeConnections: () => void;
  if (version === "2") {
    const h2 = http2.createServer(handler);
    h2.on("session", (s) => {
      sessions.add(s);
      s.on("close", () => sessions.delete(s));
    });
    server = h2;
    closeConnections = () => {
      for (const s of sessions) s.destroy();
    };
  } else {
    const h1 = http.createServer(handler);
    server = h1;
    closeConnections = () => h1.closeAllConnections();
  }
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(async () => {
    closeConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, seen, deadlines };
}

const password = "pä$$wörd:密码 ✓";
const token = "tok.en-_~+/123=";
/** What RFC 7617 says the header is: base64 of the UTF-8 `user:password`. */
const basic = `Basic ${Buffer.from(`alice:${password}`, "utf8").toString("base64")}`;

/** execute() is refused with `unauthenticated`, and the error repeats no credential. */
async function assertRefused(db: SqlgateClient, isDatabaseError: (e: unknown) => boolean) {
  await assert.rejects(db.execute("SELECT 1"), (err: unknown) => {
    assert.ok(isDatabaseError(err), `not a DatabaseError: ${String(err)}`);
    const e = err as DatabaseError;
    assert.equal(e.code, "unauthenticated");
    assert.match(e.message, /credentials refused/);
    const text = `${e.message} ${String(e.stack)} ${String((e.cause as Error)?.message)}`;
    for (const secret of [password, token, basic.slice(6)]) {
      assert.ok(!text.includes(secret), "the error repeats a credential");
    }
    return true;
  });
}

for (const httpVersion of ["2", "1.1"] as const) {
  test(`Node client over HTTP/${httpVersion} sends Bearer and Basic headers`, async (t) => {
    const proxy = await startProxy(t, httpVersion);
    const withToken = createClient({ url: proxy.url, httpVersion, token });
    const withPassword = createClient({ url: proxy.url, httpVersion, username: "alice", password });
    const anonymous = createClient({ url: proxy.url, httpVersion });
    t.after(() => Promise.all([withToken.close(), withPassword.close(), anonymous.close()]));
    const isDatabaseError = (e: unknown) => e instanceof DatabaseError;
    await assertRefused(withToken, isDatabaseError);
    await assertRefused(withPassword, isDatabaseError);
    await assertRefused(anonymous, isDatabaseError);
    assert.deepEqual(proxy.seen, [`Bearer ${token}`, basic, undefined]);
  });
}

test("fetch client sends Bearer and Basic headers, also in a web-only sandbox", async (t) => {
  const proxy = await startProxy(t, "1.1");
  const isDatabaseError = (e: unknown) => e instanceof DatabaseError;
  for (const format of ["binary", "json"] as const) {
    await assertRefused(createFetchClient({ url: proxy.url, format, token }), isDatabaseError);
    await assertRefused(
      createFetchClient({ url: proxy.url, format, username: "alice", password }),
      isDatabaseError,
    );
  }

  // The fetch entry bundled and run where only web globals exist (no btoa, no Buffer).
  const { code } = await bundle("client/src/fetch.ts");
  const context = webContext(fetch);
  vm.runInContext(code, context);
  for (const name of ["btoa", "Buffer", "process"]) {
    assert.equal(vm.runInContext(`typeof ${name}`, context), "undefined", name);
  }
  const sandboxed = vm.runInContext("sqlgate", context) as {
    createClient: typeof createFetchClient;
    DatabaseError: typeof DatabaseError;
  };
  const isSandboxError = (e: unknown) => e instanceof sandboxed.DatabaseError;
  await assertRefused(
    sandboxed.createClient({ url: proxy.url, username: "alice", password }),
    isSandboxError,
  );
  await assertRefused(sandboxed.createClient({ url: proxy.url, token }), isSandboxError);

  assert.deepEqual(proxy.seen, [
    `Bearer ${token}`,
    basic,
    `Bearer ${token}`,
    basic,
    basic,
    `Bearer ${token}`,
  ]);
});

test("createClient refuses credentials that cannot be meant, without repeating them", () => {
  const url = "http://127.0.0.1:1";
  const bad = [
    { token, username: "alice", password },
    { token, password },
    { username: "alice" },
    { password },
    { username: "al:ice", password },
    { token: "" },
    { token: "two words" },
  ];
  for (const create of [createClient, createFetchClient]) {
    for (const credentials of bad) {
      assert.throws(
        () => create({ url, ...credentials }),
        (err: unknown) => {
          assert.ok(err instanceof TypeError);
          assert.ok(!err.message.includes(password) && !err.message.includes(token));
          return true;
        },
        JSON.stringify(Object.keys(credentials)),
      );
    }
  }
});

test("base64FromBytes matches Buffer for every padding", () => {
  const bytes = Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 250) % 256);
  for (let n = 0; n <= bytes.length; n++) {
    const slice = bytes.subarray(0, n);
    assert.equal(base64FromBytes(slice), Buffer.from(slice).toString("base64"), `${n} bytes`);
  }
});

test("timeoutMs: a client-wide deadline that a call's own timeoutMs overrides", async (t) => {
  const proxy = await startProxy(t, "1.1");
  const h2 = await startProxy(t, "2");
  const nodeH2 = createClient({ url: h2.url, timeoutMs: 1234 });
  t.after(() => nodeH2.close());
  const fetchClient = createFetchClient({ url: proxy.url, timeoutMs: 1234 });
  await assert.rejects(nodeH2.execute("SELECT 1"));
  await assert.rejects(nodeH2.execute("SELECT 1", [], { timeoutMs: 50 }));
  await assert.rejects(fetchClient.execute("SELECT 1"));
  await assert.rejects(fetchClient.execute("SELECT 1", [], { timeoutMs: 50 }));
  await assert.rejects(createFetchClient({ url: proxy.url }).execute("SELECT 1"));
  assert.deepEqual(h2.deadlines, ["1234", "50"]);
  assert.deepEqual(proxy.deadlines, ["1234", "50", undefined]);
  assert.throws(() => createClient({ url: proxy.url, timeoutMs: 0 }), RangeError);
  assert.throws(() => createFetchClient({ url: proxy.url, timeoutMs: -1 }), RangeError);
});
