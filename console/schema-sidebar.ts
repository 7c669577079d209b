/**
 * The schema sidebar: databases, their tables, and each table's columns
 * with type, nullability and key, read from information_schema through the
 * gateway like any other query. Activating a table's name inserts a
 * `SELECT ... LIMIT 100` of it; the same names feed the editor's completion.
 */
import type { SQLNamespace } from "@codemirror/lang-sql";
import { type Cell, cellFromValue } from "./cells.js";
import type { Connection } from "./connection.js";
import { h, replaceChildren } from "./dom.js";

export interface Column {
  readonly name: string;
  readonly type: string;
  readonly key: string;
  readonly nullable: boolean;
}

/** Database name to table name to columns, in MySQL's order. */
export type Schema = Map<string, Map<string, Column[]>>;

const systemDatabases = ["information_schema", "mysql", "performance_schema", "sys"];

/** Reads the schema visible to the signed-in credential. */
export async function loadSchema(connection: Connection): Promise<Schema> {
  const schema: Schema = new Map();
  const excluded = systemDatabases.map(() => "?").join(", ");
  const options = { as: "array", cast: cellFromValue } as const;
  const databases = connection.client.stream<Cell[]>(
    `SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN (${excluded}) ORDER BY SCHEMA_NAME`,
    systemDatabases,
    options,
  );
  for await (const [name] of databases) schema.set(name ?? "", new Map());
  const columns = connection.client.stream<Cell[]>(
    "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY, IS_NULLABLE" +
      ` FROM information_schema.COLUMNS WHERE TABLE_SCHEMA NOT IN (${excluded})` +
      " ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
    systemDatabases,
    options,
  );
  for await (const [database, table, name, type, key, nullable] of columns) {
    let tables = schema.get(database ?? "");
    if (tables === undefined) {
      tables = new Map();
      schema.set(database ?? "", tables);
    }
    let list = tables.get(table ?? "");
    if (list === undefined) {
      list = [];
      tables.set(table ?? "", list);
    }
    list.push({ name: name ?? "", type: type ?? "", key: key ?? "", nullable: nullable === "YES" });
  }
  return schema;
}

/** The schema as CodeMirror's SQL completion takes it. */
export function completionSchema(schema: Schema): SQLNamespace {
  const namespace: { [database: string]: { [table: string]: string[] } } = {};
  for (const [database, tables] of schema) {
    namespace[database] = {};
    for (const [table, columns] of tables) {
      namespace[database][table] = columns.map((c) => c.name);
    }
  }
  return namespace;
}

/** `name` quoted as a MySQL identifier (always: reserved words and odd names are names too). */
export function quoteName(name: string): string {
  return `\`${name.replaceAll("`", "``")}\``;
}

/** The statement a click on a table inserts. */
export function selectStatement(
  database: string,
  table: string,
  columns: readonly Column[],
  current: string,
): string {
  const list =
    columns.length > 0 && columns.length <= 12
      ? columns.map((c) => quoteName(c.name)).join(", ")
      : "*";
  const from =
    database === current ? quoteName(table) : `${quoteName(database)}.${quoteName(table)}`;
  return `SELECT ${list} FROM ${from} LIMIT 100;`;
}

const keyLabels: Record<string, string> = { PRI: "primary key", UNI: "unique", MUL: "indexed" };

export interface SchemaSidebar {
  readonly element: HTMLElement;
  show(schema: Schema, current: string): void;
  showError(message: string): void;
}

export function createSchemaSidebar(options: {
  readonly onRefresh: () => void;
  readonly onTable: (statement: string) => void;
}): SchemaSidebar {
  const tree = h("div", { class: "tree" }, h("p", { class: "muted" }, "Loading…"));
  const element = h(
    "nav",
    { class: "sidebar", "aria-label": "Schema" },
    h(
      "div",
      { class: "sidebar-head" },
      h("h2", {}, "Schema"),
      h(
        "button",
        {
          type: "button",
          class: "icon-button",
          "aria-label": "Refresh schema",
          title: "Refresh schema",
          onclick: () => options.onRefresh(),
        },
        "↻",
      ),
    ),
    tree,
  );

  function tableItem(
    database: string,
    table: string,
    columns: Column[],
    current: string,
  ): HTMLElement {
    const list = h(
      "ul",
      { class: "columns", hidden: true },
      ...columns.map((c) =>
        h(
          "li",
          {},
          h("span", { class: "column-name" }, c.name),
          h("span", { class: "column-type" }, `${c.type}${c.nullable ? "" : " not null"}`),
          c.key !== ""
            ? h(
                "span",
                { class: `key key-${c.key.toLowerCase()}`, title: keyLabels[c.key] ?? c.key },
                c.key === "PRI" ? "PK" : c.key,
              )
            : undefined,
        ),
      ),
    );
    const toggle = h("button", {
      type: "button",
      class: "expand",
      "aria-expanded": "false",
      "aria-label": `Columns of ${table}`,
      onclick: () => {
        const open = toggle.getAttribute("aria-expanded") !== "true";
        toggle.setAttribute("aria-expanded", String(open));
        list.hidden = !open;
      },
    });
    return h(
      "li",
      { class: "table" },
      h(
        "div",
        { class: "table-row" },
        toggle,
        h(
          "button",
          {
            type: "button",
            class: "table-name",
            title: `Insert SELECT … FROM ${table} LIMIT 100`,
            onclick: () => options.onTable(selectStatement(database, table, columns, current)),
          },
          table,
        ),
      ),
      list,
    );
  }

  return {
    element,
    show(schema, current) {
      if (schema.size === 0) {
        replaceChildren(
          tree,
          h("p", { class: "muted" }, "No databases visible to this credential."),
        );
        return;
      }
      const ordered = [...schema].sort(([a], [b]) =>
        a === current ? -1 : b === current ? 1 : a.localeCompare(b),
      );
      replaceChildren(
        tree,
        ...ordered.map(([database, tables]) =>
          h(
            "details",
            { open: database === current },
            h(
              "summary",
              {},
              h("span", { class: "database-name" }, database),
              database === current ? h("span", { class: "badge" }, "current") : undefined,
            ),
            tables.size === 0
              ? h("p", { class: "muted" }, "No tables")
              : h(
                  "ul",
                  { class: "tables" },
                  ...[...tables].map(([table, columns]) =>
                    tableItem(database, table, columns, current),
                  ),
                ),
          ),
        ),
      );
    },
    showError(message) {
      replaceChildren(
        tree,
        h("p", { class: "muted", role: "alert" }, `The schema could not be read: ${message}`),
      );
    },
  };
}
