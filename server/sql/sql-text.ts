/**
 * Reads the SQL text of one request once: finds `?` and `:name` placeholders
 * outside strings, identifiers and comments, rewrites named placeholders to
 * `?`, and refuses empty and multi-statement text before it reaches MySQL.
 *
 * MySQL itself refuses several statements in one prepared statement, but with a
 * syntax error that does not say why; refusing here gives the caller a clear
 * `invalid_argument`. Results are cached by text, since callers repeat the same
 * statements with different parameters.
 */
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * What a statement may leave behind on its connection beyond its own
 * effects: `transaction` for state that lives until the current or next
 * transaction ends (BEGIN, SAVEPOINT, SET TRANSACTION); `reset` for session
 * state (variables, user variables, temporary tables, table and named locks,
 * prepared statements), which COM_RESET_CONNECTION clears (an open
 * transaction too); `reconnect` for a changed current database, which it keeps.
 */
export type SessionEffect = "none" | "transaction" | "reset" | "reconnect";

export interface SqlText {
  /** The SQL to prepare: named placeholders replaced by `?`, trailing `;` removed. */
  readonly sql: string;
  /** The number of placeholders. */
  readonly placeholderCount: number;
  /**
   * For `:name` placeholders (and Vitess's `::name` for lists), each
   * placeholder's name in order; undefined for `?`.
   */
  readonly names: readonly string[] | undefined;
  /** Where each named placeholder stands in the original text: [start, end) offsets. */
  readonly spans: readonly (readonly [number, number])[] | undefined;
  /** What the statement may leave on a pooled connection for the next caller. */
  readonly sessionEffect: SessionEffect;
  /** A plain read (SELECT, SHOW, ...): stopping it early undoes nothing. */
  readonly isRead: boolean;
  /** Its first keyword, upper-cased ("" for none). */
  readonly firstWord: string;
  /**
   * The statement may make the session or a transaction writable (`READ
   * WRITE`, `transaction_read_only` or `tx_read_only`, quoted or not, `SET
   * STATEMENT ... FOR`), or runs SQL text the gateway cannot read (PREPARE,
   * EXECUTE): what a read-only caller must not do.
   */
  readonly changesAccessMode: boolean;
}

/** First words of statements that only read. */
const readFirstWords = new Set([
  "SELECT",
  "SHOW",
  "DESCRIBE",
  "DESC",
  "EXPLAIN",
  "VALUES",
  "TABLE",
]);

/** First words of statements that change the session's state. */
const statefulFirstWords = new Set([
  "SET",
  "LOCK",
  "UNLOCK",
  "PREPARE",
  "EXECUTE",
  "DEALLOCATE",
  "HANDLER",
  "CALL",
  "FLUSH",
  "BACKUP",
]);
/** First words of statements that open a transaction or add to it. */
const transactionFirstWords = new Set(["BEGIN", "START", "XA", "SAVEPOINT"]);
/** Variables that set the access mode. */
const accessModeWords = new Set(["TRANSACTION_READ_ONLY", "TX_READ_ONLY"]);
/** Words anywhere that leave state behind (`CREATE TEMPORARY TABLE`, `GET_LOCK(...)`). */
const statefulWords = new Set(["TEMPORARY", "GET_LOCK"]);

const cacheLimit = 2048;
/** Longer texts (literal bulk INSERTs) are parsed each time rather than kept. */
const cacheTextMaxLength = 4096;
const cache = new Map<string, SqlText>();
const verbatimCache = new Map<string, SqlText>();

/**
 * How to read placeholders: `bind` finds `?` and `:name` (rewritten to `?`);
 * `verbatim` leaves the text as it is, for statements whose values are
 * already in the text (PlanetScale's API), so `sql` is the text itself.
 */
export type PlaceholderMode = "bind" | "verbatim";

/** Parses `text` (cached). Throws `invalid_argument` for text MySQL would refuse unclearly. */
export function parseSqlText(text: string, mode: PlaceholderMode = "bind"): SqlText {
  const texts = mode === "bind" ? cache : verbatimCache;
  let parsed = texts.get(text);
  if (parsed === undefined) {
    parsed = scan(text, mode === "bind");
    if (text.length > cacheTextMaxLength) return parsed;
    if (texts.size >= cacheLimit) {
      const oldest = texts.keys().next().value;
      if (oldest !== undefined) texts.delete(oldest);
    }
    texts.set(text, parsed);
  }
  return parsed;
}

const isNameStart = (c: number) =>
  (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95; /* A-Z a-z _ */
const isNameChar = (c: number) => isNameStart(c) || (c >= 48 && c <= 57); /* 0-9 */
const isSpace = (c: number) => c === 32 || (c >= 9 && c <= 13);

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** Index just past a quoted string or identifier starting at `start` (MySQL escaping rules). */
function skipQuoted(text: string, start: number, quote: number): number {
  let i = start + 1;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 92 /* \ */ && quote !== 96 /* ` */) {
      i += 2;
    } else if (c === quote) {
      if (text.charCodeAt(i + 1) === quote) i += 2;
      else return i + 1;
    } else {
      i++;
    }
  }
  throw invalid(`unterminated ${String.fromCharCode(quote)} quote starting at offset ${start}`);
}

/**
 * Index just past a comment starting at `i`, or `i` if none starts there.
 * MySQL's executable comments (`/*! ... *\/`, MariaDB's `/*M! ... *\/`) hold
 * code, so only their opening is skipped and their body is scanned.
 */
function skipComment(text: string, i: number): number {
  const c = text.charCodeAt(i);
  const next = text.charCodeAt(i + 1);
  if (
    c === 35 /* # */ ||
    (c === 45 && next === 45 && (i + 2 >= text.length || isSpace(text.charCodeAt(i + 2))))
  ) {
    const end = text.indexOf("\n", i);
    return end === -1 ? text.length : end + 1;
  }
  if (c === 47 /* / */ && next === 42 /* * */) {
    if (text.charCodeAt(i + 2) === 33 /* ! */) return i + 3;
    if (text.startsWith("M!", i + 2)) return i + 4;
    const end = text.indexOf("*/", i + 2);
    if (end === -1) throw invalid(`unterminated comment starting at offset ${i}`);
    return end + 2;
  }
  return i;
}

function scan(text: string, placeholders: boolean): SqlText {
  const names: string[] = [];
  const spans: [number, number][] = [];
  let positional = 0;
  let out = "";
  let copiedTo = 0;
  let end = text.length;
  let sawCode = false;
  let firstWord: string | undefined;
  let secondWord: string | undefined;
  let previousWord: string | undefined;
  let changesAccessMode = false;
  let stateful = false;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    const afterComment = skipComment(text, i);
    if (afterComment !== i) {
      i = afterComment;
    } else if (c === 39 /* ' */ || c === 34 /* " */ || c === 96 /* ` */) {
      const start = i;
      i = skipQuoted(text, i, c);
      const quoted = text.slice(start + 1, i - 1).toUpperCase();
      // A quoted identifier can name a function too: `GET_LOCK`(...).
      if (c === 96 && statefulWords.has(quoted)) stateful = true;
      // ... or a variable (with ANSI_QUOTES, in double quotes too).
      if (c !== 39 && accessModeWords.has(quoted)) changesAccessMode = true;
      sawCode = true;
    } else if (c === 63 /* ? */ && placeholders) {
      positional++;
      sawCode = true;
      i++;
    } else if (
      placeholders &&
      c === 58 /* : */ &&
      text.charCodeAt(i - 1) !== 58 &&
      (isNameStart(text.charCodeAt(i + 1)) ||
        (text.charCodeAt(i + 1) === 58 && isNameStart(text.charCodeAt(i + 2))))
    ) {
      const nameStart = text.charCodeAt(i + 1) === 58 ? i + 2 : i + 1;
      let j = nameStart + 1;
      while (j < text.length && isNameChar(text.charCodeAt(j))) j++;
      names.push(text.slice(nameStart, j));
      spans.push([i, j]);
      out += `${text.slice(copiedTo, i)}?`;
      copiedTo = j;
      sawCode = true;
      i = j;
    } else if (c === 59 /* ; */) {
      end = i;
      if (hasCodeAfter(text, i + 1)) {
        throw invalid(
          placeholders
            ? "only one statement per call is allowed; send several with ExecuteBatch"
            : "only one statement per call is allowed; send each in its own call",
        );
      }
      break;
    } else if (isNameStart(c) && !isNameChar(text.charCodeAt(i - 1))) {
      let j = i + 1;
      while (j < text.length && isNameChar(text.charCodeAt(j))) j++;
      const word = text.slice(i, j).toUpperCase();
      if (firstWord === undefined) firstWord = word;
      else secondWord ??= word;
      if ((previousWord === "READ" && word === "WRITE") || accessModeWords.has(word)) {
        changesAccessMode = true;
      }
      previousWord = word;
      if (statefulWords.has(word)) stateful = true;
      sawCode = true;
      i = j;
    } else {
      // A user variable (`@name`, not a system `@@name`) lives on the connection.
      if (c === 64 && text.charCodeAt(i + 1) !== 64 && text.charCodeAt(i - 1) !== 64)
        stateful = true;
      if (!isSpace(c) && !(c === 42 && text.charCodeAt(i + 1) === 47)) sawCode = true;
      i++;
    }
  }
  if (!sawCode) throw invalid("empty statement: `sql` holds no SQL");
  if (positional > 0 && names.length > 0) {
    throw invalid("mixed `?` and `:name` placeholders: use one kind per statement");
  }
  const sql = (out + text.slice(copiedTo, end)).trimEnd();
  const sessionEffect = effectOf(firstWord ?? "", secondWord, stateful);
  // Only SET and START TRANSACTION change the access mode (reading it is
  // harmless); SET STATEMENT may set anything for its statement, and
  // prepared statements run text that is not here to read.
  changesAccessMode =
    (changesAccessMode && (firstWord === "SET" || firstWord === "START")) ||
    (firstWord === "SET" && secondWord === "STATEMENT") ||
    firstWord === "PREPARE" ||
    firstWord === "EXECUTE";
  const isRead = readFirstWords.has(firstWord ?? "");
  return names.length > 0
    ? {
        sql,
        placeholderCount: names.length,
        names,
        spans,
        sessionEffect,
        isRead,
        firstWord: firstWord ?? "",
        changesAccessMode,
      }
    : {
        sql,
        placeholderCount: positional,
        names: undefined,
        spans: undefined,
        sessionEffect,
        isRead,
        firstWord: firstWord ?? "",
        changesAccessMode,
      };
}

function effectOf(
  firstWord: string,
  secondWord: string | undefined,
  stateful: boolean,
): SessionEffect {
  if (firstWord === "USE") return "reconnect";
  if (stateful) return "reset";
  // SET TRANSACTION (without SESSION or GLOBAL) sets the next transaction only.
  if (transactionFirstWords.has(firstWord) || (firstWord === "SET" && secondWord === "TRANSACTION"))
    return "transaction";
  return statefulFirstWords.has(firstWord) ? "reset" : "none";
}

function hasCodeAfter(text: string, start: number): boolean {
  let i = start;
  while (i < text.length) {
    const afterComment = skipComment(text, i);
    if (afterComment !== i) {
      i = afterComment;
    } else if (isSpace(text.charCodeAt(i)) || text.charCodeAt(i) === 59) {
      i++;
    } else {
      return true;
    }
  }
  return false;
}
