/**
 * sqlgate's TypeScript SDK for Node (`sqlgate/client`): `createClient` over
 * connect-node (HTTP/2 by default, client streaming for the ingest writer).
 * For runtimes with only `fetch`, import `sqlgate/client/fetch` instead.
 */
export { type ClientOptions, createClient } from "./create-client.js";
export * from "./exports.js";
