/**
 * The console's entry: signs in, then lays out the schema sidebar, the
 * editor with its toolbar (Run, Stop, the transaction bar, Copy as, History)
 * and the results, and wires them together. Each part lives in its own
 * module; this one only decides what happens when.
 */
import { DatabaseError } from "../client/src/fetch.js";
import { type Connection, connect, runStatement } from "./connection.js";
import { type SnippetKind, snippet } from "./copy-as.js";
import { h, replaceChildren } from "./dom.js";
import { createEditor } from "./editor.js";
import { createHistory, type HistoryEntry } from "./history.js";
import { ParamsError, parseParams } from "./params.js";
import { createResults } from "./results.js";
import { completionSchema, createSchemaSidebar, loadSchema } from "./schema-sidebar.js";
import { createSessionBar } from "./session-bar.js";
import { forgetCredentials, signIn, storedCredentials } from "./sign-in.js";

const url = location.origin;

async function start(): Promise<void> {
  let connection: Connection;
  const stored = storedCredentials();
  try {
    connection = await connect(url, stored);
  } catch (err) {
    const refused = err instanceof DatabaseError && err.code === "unauthenticated";
    // No credentials yet is the usual case: ask without an error.
    connection = await signIn(url, refused && Object.keys(stored).length === 0 ? undefined : err);
  }
  mount(connection);
}

function mount(connection: Connection): void {
  const announcer = h("div", { class: "visually-hidden", "aria-live": "polite" });
  const announce = (text: string) => {
    announcer.textContent = text;
  };
  const history = createHistory();
  const results = createResults();
  const paramsBox = h("textarea", {
    id: "params",
    class: "params",
    rows: 1,
    spellcheck: "false",
    placeholder: '[42, "text"] for ?, or {"id": 42} for :id',
  });
  const runButton = h(
    "button",
    {
      type: "button",
      class: "primary",
      title: "Run the statement under the cursor (Ctrl+Enter)",
      onclick: () => void run(),
    },
    "Run",
  );
  const stopButton = h(
    "button",
    {
      type: "button",
      disabled: true,
      title: "Cancel the call; the gateway kills the query on MySQL",
      onclick: () => stop(),
    },
    "Stop",
  );
  const editor = createEditor({
    initial: history.entries()[0]?.sql ?? "SELECT NOW(6) AS now, VERSION() AS version;",
    onRun: () => void run(),
  });
  const sessionBar = createSessionBar({
    connection: () => connection,
    onError: (err) => results.fail(err),
    announce,
  });
  const sidebar = createSchemaSidebar({
    onRefresh: () => void refreshSchema(),
    onTable: (statement) => editor.appendStatement(statement),
  });

  let abort: AbortController | undefined;

  async function refreshSchema(): Promise<void> {
    try {
      const schema = await loadSchema(connection);
      sidebar.show(schema, connection.database);
      editor.setSchema(completionSchema(schema), connection.database);
    } catch (err) {
      sidebar.showError(err instanceof Error ? err.message : String(err));
    }
  }

  function stop(): void {
    abort?.abort();
  }

  async function run(): Promise<void> {
    if (abort !== undefined) return;
    const range = editor.statementToRun();
    if (range === undefined) {
      results.fail(new ParamsError("Nothing to run: write a statement, or put the cursor in one."));
      return;
    }
    let params: ReturnType<typeof parseParams>;
    try {
      params = parseParams(paramsBox.value);
    } catch (err) {
      results.fail(err);
      return;
    }
    const open = sessionBar.current();
    const controller = new AbortController();
    abort = controller;
    runButton.disabled = true;
    stopButton.disabled = false;
    editor.clearError();
    results.start();
    const started = performance.now();
    let outcome: string;
    try {
      const summary = await runStatement(
        open?.tx ?? connection.client,
        range.text,
        params,
        { fields: (fields) => results.grid.reset(fields), row: (row) => results.grid.append(row) },
        controller.signal,
      );
      results.finish(summary, performance.now() - started, false);
      outcome = summary.streamed
        ? `${results.grid.rowCount.toLocaleString("en")} rows`
        : `${summary.rowsAffected} affected`;
      if (/^\s*(CREATE|ALTER|DROP|RENAME|TRUNCATE)\b/i.test(range.text)) void refreshSchema();
    } catch (err) {
      if (controller.signal.aborted) {
        results.finish(undefined, performance.now() - started, true);
        outcome = "stopped";
      } else {
        const position = results.fail(err, range.text);
        if (position !== undefined) {
          const token = /^[^\s,;()]+|^[\s\S]/.exec(range.text.slice(position))?.[0] ?? " ";
          editor.markError(range.from + position, range.from + position + token.length);
        }
        const e = err instanceof DatabaseError ? err : undefined;
        outcome = e?.errno !== undefined ? `error ${e.errno}` : `error: ${e?.code ?? "unknown"}`;
        // The gateway's own not_found / failed_precondition (no MySQL errno): the token is gone.
        if (
          open !== undefined &&
          e !== undefined &&
          e.errno === undefined &&
          (e.code === "not_found" || e.code === "failed_precondition")
        ) {
          sessionBar.lost("ended by the gateway");
        }
      }
    } finally {
      if (open !== undefined && sessionBar.current() === open) sessionBar.touched();
      abort = undefined;
      runButton.disabled = false;
      stopButton.disabled = true;
    }
    history.add({ sql: range.text, params: paramsBox.value, at: Date.now(), outcome });
  }

  function showSnippet(kind: SnippetKind, title: string): void {
    const range = editor.statementToRun();
    const hasSecret = Object.keys(connection.credentials).length > 0;
    const text = h("textarea", {
      class: "snippet",
      readonly: true,
      rows: 10,
      spellcheck: "false",
      "aria-label": `${title} snippet`,
    });
    const includeSecret = h("input", { id: "snippet-secret", type: "checkbox" });
    const status = h("p", { class: "muted", role: "status" });
    const fill = () => {
      try {
        text.value = snippet(kind, {
          url,
          credentials: connection.credentials,
          sql: range?.text ?? "",
          paramsText: paramsBox.value,
          session: sessionBar.current()?.tx.session,
          includeSecret: includeSecret.checked,
        });
      } catch (err) {
        text.value = err instanceof Error ? err.message : String(err);
      }
    };
    const copy = async () => {
      try {
        await navigator.clipboard.writeText(text.value);
        status.textContent = "Copied to the clipboard.";
      } catch {
        text.select();
        status.textContent = "Select and copy the text (the clipboard is not available here).";
      }
    };
    includeSecret.addEventListener("change", fill);
    fill();
    const dialog = openDialog(
      `Copy as ${title}`,
      text,
      hasSecret
        ? h(
            "div",
            { class: "check" },
            includeSecret,
            h(
              "label",
              { for: "snippet-secret" },
              "Include the password or token (otherwise read from an environment variable)",
            ),
          )
        : undefined,
      status,
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { type: "button", class: "primary", onclick: () => void copy() }, "Copy"),
        closeButton(),
      ),
    );
    text.focus();
    text.select();
    void copy();
    void dialog;
  }

  function showHistory(): void {
    const entries = history.entries();
    const list = h(
      "ol",
      { class: "history" },
      ...entries.map((entry: HistoryEntry) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              onclick: () => {
                editor.setText(entry.sql);
                paramsBox.value = entry.params;
                dialog.close();
              },
            },
            h("code", {}, entry.sql.length > 300 ? `${entry.sql.slice(0, 300)}…` : entry.sql),
            h(
              "span",
              { class: "muted" },
              `${new Date(entry.at).toLocaleString()} · ${entry.outcome}${entry.params !== "" ? ` · params ${entry.params}` : ""}`,
            ),
          ),
        ),
      ),
    );
    const dialog = openDialog(
      "History",
      entries.length === 0 ? h("p", { class: "muted" }, "Nothing run yet in this browser.") : list,
      h(
        "div",
        { class: "dialog-actions" },
        h(
          "button",
          {
            type: "button",
            onclick: () => {
              history.clear();
              dialog.close();
            },
          },
          "Clear history",
        ),
        closeButton(),
      ),
    );
  }

  const who = [
    connection.mysqlUser,
    connection.database && `database ${connection.database}`,
    connection.serverVersion,
  ]
    .filter(Boolean)
    .join(" · ");
  document.body.append(
    h(
      "header",
      { class: "topbar" },
      h("span", { class: "brand" }, h("strong", {}, "sqlgate"), " console"),
      h("span", { class: "who" }, who),
      Object.keys(connection.credentials).length > 0
        ? h(
            "button",
            {
              type: "button",
              class: "quiet",
              onclick: () => {
                forgetCredentials();
                location.reload();
              },
            },
            "Sign out",
          )
        : undefined,
    ),
    h(
      "div",
      { class: "layout" },
      sidebar.element,
      h(
        "main",
        { class: "workspace" },
        h(
          "section",
          { class: "query", "aria-label": "Query" },
          editor.element,
          h(
            "div",
            { class: "params-row" },
            h("label", { for: "params" }, "Parameters (JSON)"),
            paramsBox,
          ),
          h(
            "div",
            { class: "toolbar" },
            runButton,
            stopButton,
            sessionBar.element,
            h("span", { class: "toolbar-gap" }),
            h(
              "div",
              { class: "copy-as", role: "group", "aria-label": "Copy as" },
              h("span", { class: "muted" }, "Copy as"),
              h("button", { type: "button", onclick: () => showSnippet("curl", "curl") }, "curl"),
              h(
                "button",
                { type: "button", onclick: () => showSnippet("typescript", "TypeScript") },
                "TypeScript",
              ),
              h(
                "button",
                {
                  type: "button",
                  onclick: () => showSnippet("planetscale", "@planetscale/database"),
                },
                "@planetscale/database",
              ),
            ),
            h("button", { type: "button", onclick: () => showHistory() }, "History"),
          ),
        ),
        results.element,
      ),
    ),
    announcer,
  );
  // Ctrl/Cmd+Enter runs from the parameters box too.
  paramsBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      void run();
    }
  });
  editor.view.focus();
  void refreshSchema();
}

function closeButton(): HTMLButtonElement {
  return h(
    "button",
    { type: "button", onclick: (event) => (event.target as Element).closest("dialog")?.close() },
    "Close",
  );
}

/** A modal dialog titled `title`, removed from the page once closed; Escape closes it. */
function openDialog(title: string, ...content: (Node | undefined)[]): HTMLDialogElement {
  const id = `dialog-${Math.random().toString(36).slice(2)}`;
  const dialog = h("dialog", { "aria-labelledby": id }, h("h2", { id }, title), ...content);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

void start().catch((err: unknown) => {
  replaceChildren(
    document.body,
    h("p", { role: "alert" }, `The console could not start: ${String(err)}`),
  );
});
