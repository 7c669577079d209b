/**
 * Where an ingest call's rows go: a table and a column list checked against
 * MySQL's own schema before anything is written, and the INSERT text built
 * from them once. Table descriptions come from information_schema and are
 * cached; a column the cache does not know makes one refresh (at most one per
 * second for the same table and missing names) before the call is refused, so an `ALTER TABLE ... ADD
 * COLUMN` is picked up by itself, and a statement failing with "no such table"
 * or "unknown column" drops the table's entry (`forget`).
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** What to do with a row whose primary or unique key already exists. */
export type ConflictPolicy = "error" | "ignore" | "update";

export interface IngestTarget {
  /** Identity for batching: rows of one target can share one INSERT. */
  readonly key: string;
  readonly database: string;
  readonly table: string;
  /** The columns, spelled as the schema spells them. */
  readonly columns: readonly string[];
  readonly onConflict: ConflictPolicy;
  /** `INSERT INTO `db`.`t` (`a`,`b`) VALUES ` */
  readonly insertPrefix: string;
  /** `` (error) or ` ON DUPLICATE KEY UPDATE ...` (ignore, update). */
  readonly insertSuffix: string;
  /** The UTF-8 size of prefix and suffix: what an INSERT holds besides its rows. */
  readonly insertOverheadBytes: number;
}

/** Runs a read-only query for the catalog, returning rows as arrays. */
export type CatalogQuery = (sql: string, params: readonly string[]) => Promise<unknown[][]>;

export interface TargetCatalog {
  /** The target for a call, validated; throws `not_found` / `invalid_argument`. */
  resolve(
    table: string,
    columns: readonly string[],
    onConflict: ConflictPolicy,
  ): Promise<IngestTarget>;
  /** Drops what is cached about `target`'s table (after a DDL-related error). */
  forget(target: IngestTarget): void;
}

interface TableInfo {
  /** Lower-cased column name -> the schema's column. */
  readonly columns: ReadonlyMap<string, { readonly name: string; readonly generated: boolean }>;
  /** Lower-cased names of columns in the primary key or a unique index. */
  readonly keyColumns: ReadonlySet<string>;
}

/** A backtick-quoted identifier. */
export function quoteIdentifier(name: string): string {
  return `\`${name.replace(/`/g, "``")}\``;
}

const refreshIntervalMs = 1000;

export function createTargetCatalog(query: CatalogQuery, defaultDatabase: string): TargetCatalog {
  const tables = new Map<string, Promise<TableInfo>>();
  /** Request spelling -> target: the hot path of repeated calls does no work. */
  const targets = new Map<string, IngestTarget>();

  const load = async (database: string, table: string): Promise<TableInfo> => {
    const columnRows = await query(
      "SELECT COLUMN_NAME, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
      [database, table],
    );
    const keyRows = await query(
      "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0",
      [database, table],
    );
    const columns = new Map<string, { name: string; generated: boolean }>();
    for (const [name, extra] of columnRows) {
      const text = String(name);
      columns.set(text.toLowerCase(), {
        name: text,
        generated: /GENERATED/i.test(String(extra ?? "")),
      });
    }
    return {
      columns,
      keyColumns: new Set(keyRows.map(([name]) => String(name).toLowerCase())),
    };
  };

  /** When a missing table or column last made its table be read again. */
  const missRefreshes = new Map<string, number>();

  /** The table's description; `missing` names what the cached one lacked, to look again. */
  const describe = async (
    database: string,
    table: string,
    missing?: string,
  ): Promise<TableInfo> => {
    const id = `${database}\0${table}`;
    let entry = tables.get(id);
    if (entry !== undefined && missing !== undefined) {
      const info = await entry.catch(() => undefined);
      const miss = `${id}\0${missing}`;
      const last = missRefreshes.get(miss) ?? 0;
      if (info === undefined || Date.now() - last >= refreshIntervalMs) {
        if (missRefreshes.size >= 10_000) missRefreshes.clear();
        missRefreshes.set(miss, Date.now());
        entry = undefined;
      }
    }
    if (entry === undefined) {
      entry = load(database, table);
      tables.set(id, entry);
      // A failed lookup (MySQL down) is not cached.
      entry.catch(() => tables.get(id) === entry && tables.delete(id));
    }
    return entry;
  };

  const build = async (
    table: string,
    requested: readonly string[],
    onConflict: ConflictPolicy,
  ): Promise<IngestTarget> => {
    const [database, name] = splitTableName(table, defaultDatabase);
    if (requested.length === 0) throw invalid("no columns named");
    let info = await describe(database, name);
    const missing = requested.filter((c) => !info.columns.has(c.toLowerCase()));
    if (info.columns.size === 0 || missing.length > 0) {
      info = await describe(database, name, missing.join("\0").toLowerCase());
    }
    const where = `${quoteIdentifier(database)}.${quoteIdentifier(name)}`;
    if (info.columns.size === 0) {
      throw new ConnectError(`table ${where} does not exist`, Code.NotFound);
    }
    const seen = new Set<string>();
    const columns = requested.map((c) => {
      const lower = c.toLowerCase();
      const column = info.columns.get(lower);
      if (column === undefined) throw invalid(`table ${where} has no column ${quoteIdentifier(c)}`);
      if (column.generated) {
        throw invalid(`column ${quoteIdentifier(column.name)} of ${where} is generated`);
      }
      if (seen.has(lower)) throw invalid(`column ${quoteIdentifier(c)} is named twice`);
      seen.add(lower);
      return column.name;
    });
    const quoted = columns.map(quoteIdentifier);
    const insertPrefix = `INSERT INTO ${where} (${quoted.join(",")}) VALUES `;
    const insertSuffix = conflictClause(columns, info.keyColumns, onConflict);
    return {
      key: `${where}(${quoted.join(",")})${onConflict}`,
      database,
      table: name,
      columns,
      onConflict,
      insertPrefix,
      insertSuffix,
      insertOverheadBytes: Buffer.byteLength(insertPrefix) + Buffer.byteLength(insertSuffix),
    };
  };

  return {
    async resolve(table, columns, onConflict) {
      const id = `${table}\0${columns.join("\0")}\0${onConflict}`;
      const cached = targets.get(id);
      if (cached !== undefined) return cached;
      const target = await build(table, columns, onConflict);
      if (targets.size >= 10_000) targets.clear();
      targets.set(id, target);
      return target;
    },
    forget(target) {
      tables.delete(`${target.database}\0${target.table}`);
      for (const [id, t] of targets) {
        if (t.database === target.database && t.table === target.table) targets.delete(id);
      }
    },
  };
}

/**
 * MySQL's own duplicate-key syntax for each policy. IGNORE is a no-op update
 * rather than `INSERT IGNORE`, which would also turn bad values (NULL into NOT
 * NULL, out-of-range numbers) into silent warnings; UPDATE assigns every
 * column outside the primary and unique keys.
 */
function conflictClause(
  columns: readonly string[],
  keyColumns: ReadonlySet<string>,
  onConflict: ConflictPolicy,
): string {
  if (onConflict === "error") return "";
  const updated =
    onConflict === "update" ? columns.filter((c) => !keyColumns.has(c.toLowerCase())) : [];
  if (updated.length === 0) {
    const first = quoteIdentifier(columns[0] as string);
    return ` ON DUPLICATE KEY UPDATE ${first}=${first}`;
  }
  return ` ON DUPLICATE KEY UPDATE ${updated
    .map((c) => `${quoteIdentifier(c)}=VALUES(${quoteIdentifier(c)})`)
    .join(",")}`;
}

/**
 * `table`, `db.table`, or either part in backticks (`` `my.db`.`t` ``) ->
 * [database, table].
 */
export function splitTableName(text: string, defaultDatabase: string): [string, string] {
  const parts: string[] = [];
  let i = 0;
  while (i <= text.length) {
    let part = "";
    if (text[i] === "`") {
      i++;
      for (;;) {
        if (i >= text.length)
          throw invalid(`unterminated quote in table name ${JSON.stringify(text)}`);
        if (text[i] === "`") {
          if (text[i + 1] === "`") {
            part += "`";
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i];
        i++;
      }
    } else {
      const dot = text.indexOf(".", i);
      const end = dot === -1 ? text.length : dot;
      part = text.slice(i, end).trim();
      i = end;
    }
    parts.push(part);
    if (i >= text.length) break;
    if (text[i] !== ".") throw invalid(`malformed table name ${JSON.stringify(text)}`);
    i++;
  }
  if (parts.length > 2 || parts.some((p) => p === "")) {
    throw invalid(`malformed table name ${JSON.stringify(text)}: use table or database.table`);
  }
  if (parts.length === 1) {
    if (defaultDatabase === "") {
      throw invalid(
        `name the database as database.table: the gateway's MySQL URL names no default database`,
      );
    }
    return [defaultDatabase, parts[0] as string];
  }
  return [parts[0] as string, parts[1] as string];
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}
