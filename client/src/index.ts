/**
 * sqlgate's TypeScript SDK. For now: `createClient` and its `ingest` service;
 * the SQL side (`execute`, `batch`, `transaction`, `stream`) joins it here.
 */
export { type ClientOptions, createClient, type SqlgateClient } from "./create-client.js";
export type {
  IngestClient,
  WriteOptions,
  WriteResult,
} from "./ingest.js";
export type {
  IngestWriter,
  IngestWriterOptions,
  RetryEvent,
  WriterSummary,
} from "./ingest-writer.js";
export { isRetryable } from "./retry.js";
export { decimal, json, rowFromJs, temporal, temporalFromDate, valueFromJs } from "./values.js";
export type { WriteDurability, WriteOnConflict } from "./write-policy.js";
