/**
 * What both entries export besides `createClient`: the client's types, the
 * error type, and the value helpers. `index.ts` (Node) and `fetch.ts` (any
 * runtime with fetch) re-export it, so the two never drift apart.
 */
export { ColumnType, type Field, type Value } from "../../gen/sqlgate/v1/value_pb.js";
export type { CredentialOptions } from "./auth.js";
export type {
  ChangeEvent,
  ChangeOperation,
  ChangesClient,
  RowChangeEvent,
  SubscribeOptions,
} from "./changes.js";
export {
  type ArrayQueryOptions,
  type BatchOptions,
  type BatchStatement,
  type ClientCoreOptions,
  createClientCore,
  type ExecuteResult,
  type ObjectQueryOptions,
  type QueryOptions,
  type RowStream,
  type SqlgateClient,
  type SqlRunner,
  type StreamOptions,
  type StreamSummary,
  type Timing,
  type Transaction,
} from "./client-core.js";
export {
  DatabaseError,
  databaseErrorFrom,
  type ErrorCode,
  isTransactionConflict,
  type LimitExceededInfo,
} from "./database-error.js";
export type { IngestClient, WriteOptions, WriteResult } from "./ingest.js";
export type {
  IngestWriter,
  IngestWriterOptions,
  RetryEvent,
  WriterSummary,
} from "./ingest-writer.js";
export type { Params } from "./params.js";
export { isRetryable } from "./retry.js";
export {
  type Cast,
  castValue,
  type Int64Mode,
  type JsonMode,
  type RowShape,
  type TemporalMode,
  type ValueOptions,
} from "./rows.js";
export type { IsolationLevelName, TransactionOptions } from "./transaction.js";
export { decimal, json, rowFromJs, temporal, temporalFromDate, valueFromJs } from "./values.js";
export type { WriteDurability, WriteOnConflict } from "./write-policy.js";
