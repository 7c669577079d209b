/**
 * Node's HTTP/2 server with nothing on it: the compat API answering every
 * request with a fixed 200-byte body once the request has ended. The point
 * query benchmark drives it with h2load next to the gateway, as the floor
 * that HTTP/2 in Node costs on this machine before any gateway work.
 *
 *   node dist/bench/support/bare-h2-server.js PORT
 */
import http2 from "node:http2";

const body = Buffer.alloc(200, 1);
const server = http2.createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/proto" });
    res.end(body);
  });
});
server.listen(Number(process.argv[2]), "127.0.0.1", () => process.stdout.write("listening\n"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
