/**
 * The SQL editor: CodeMirror 6 with the MySQL dialect, completion of the
 * schema's databases, tables and columns, and Ctrl/Cmd+Enter to run the
 * selection or the statement under the cursor. Tab is left to move the focus
 * (keyboard users must be able to leave the editor); Ctrl+] indents.
 *
 * The editor lives in a shadow root, styled only by its theme below, whose
 * colours are the page's CSS variables (they inherit into the shadow tree).
 */
import {
  autocompletion,
  closeBrackets,
  closeBracketsKeymap,
  completionKeymap,
} from "@codemirror/autocomplete";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { MySQL, type SQLNamespace, sql } from "@codemirror/lang-sql";
import { bracketMatching, HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { Compartment, EditorState, StateEffect, StateField } from "@codemirror/state";
import {
  Decoration,
  type DecorationSet,
  drawSelection,
  EditorView,
  highlightActiveLine,
  highlightActiveLineGutter,
  keymap,
  lineNumbers,
  placeholder,
} from "@codemirror/view";
import { tags } from "@lezer/highlight";
import { type StatementRange, statementAt, trimmed } from "./statements.js";

export interface Editor {
  readonly element: HTMLElement;
  readonly view: EditorView;
  /** The selection if there is one, else the statement under the cursor. */
  statementToRun(): StatementRange | undefined;
  /** Completes these names from now on; `defaultSchema`'s tables need no prefix. */
  setSchema(schema: SQLNamespace, defaultSchema: string): void;
  /** Underlines `from`..`to` (a failing place), moves the cursor there; cleared by the next edit. */
  markError(from: number, to: number): void;
  clearError(): void;
  /** Adds `text` as a statement of its own at the end and puts the cursor in it. */
  appendStatement(text: string): void;
  setText(text: string): void;
  text(): string;
}

const syntaxColours = HighlightStyle.define([
  { tag: tags.keyword, color: "var(--syntax-keyword)", fontWeight: "600" },
  { tag: [tags.string, tags.special(tags.string)], color: "var(--syntax-string)" },
  { tag: [tags.number, tags.bool, tags.null], color: "var(--syntax-number)" },
  {
    tag: [tags.comment, tags.lineComment, tags.blockComment],
    color: "var(--syntax-comment)",
    fontStyle: "italic",
  },
  { tag: [tags.typeName, tags.standard(tags.name)], color: "var(--syntax-type)" },
  { tag: [tags.special(tags.name), tags.quote], color: "var(--syntax-name)" },
  { tag: [tags.operator, tags.punctuation], color: "var(--syntax-punctuation)" },
]);

const theme = EditorView.theme({
  "&": { color: "var(--text)", backgroundColor: "var(--editor-bg)", height: "100%" },
  "&.cm-focused": { outline: "none" },
  ".cm-content": { caretColor: "var(--accent)", fontFamily: "var(--mono)", padding: "8px 0" },
  ".cm-scroller": { fontFamily: "var(--mono)", lineHeight: "1.55" },
  ".cm-gutters": {
    backgroundColor: "var(--editor-bg)",
    color: "var(--muted)",
    border: "none",
    borderRight: "1px solid var(--border)",
  },
  ".cm-activeLine, .cm-activeLineGutter": { backgroundColor: "var(--active-line)" },
  "&.cm-focused .cm-selectionBackground, .cm-selectionBackground, ::selection": {
    backgroundColor: "var(--selection) !important",
  },
  ".cm-cursor": { borderLeftColor: "var(--accent)" },
  ".cm-placeholder": { color: "var(--muted)" },
  ".cm-error-mark": {
    textDecoration: "underline wavy var(--danger)",
    backgroundColor: "var(--danger-soft)",
  },
  ".cm-tooltip": {
    backgroundColor: "var(--surface)",
    color: "var(--text)",
    border: "1px solid var(--border)",
  },
  ".cm-tooltip-autocomplete > ul > li[aria-selected]": {
    backgroundColor: "var(--accent)",
    color: "var(--on-accent)",
  },
});

const setError = StateEffect.define<{ from: number; to: number } | null>();
const errorMark = Decoration.mark({ class: "cm-error-mark" });
const errorField = StateField.define<DecorationSet>({
  create: () => Decoration.none,
  update(marks, tr) {
    let next = tr.docChanged ? Decoration.none : marks;
    for (const effect of tr.effects) {
      if (!effect.is(setError)) continue;
      next =
        effect.value === null || effect.value.from >= effect.value.to
          ? Decoration.none
          : Decoration.set([errorMark.range(effect.value.from, effect.value.to)]);
    }
    return next;
  },
  provide: (field) => EditorView.decorations.from(field),
});

export function createEditor(options: {
  readonly initial: string;
  readonly onRun: () => void;
}): Editor {
  const language = new Compartment();
  const languageFor = (schema: SQLNamespace, defaultSchema: string) =>
    sql({ dialect: MySQL, schema, defaultSchema, upperCaseKeywords: true });
  const run = () => {
    options.onRun();
    return true;
  };
  const element = document.createElement("div");
  element.className = "editor";
  // In a shadow root, CodeMirror's styles go into a constructed stylesheet
  // (adoptedStyleSheets); in the document they would be a <style> element,
  // which the console's Content-Security-Policy (style-src 'self') refuses.
  const root = element.attachShadow({ mode: "open" });
  const view = new EditorView({
    root,
    parent: root,
    state: EditorState.create({
      doc: options.initial,
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        history(),
        drawSelection(),
        highlightActiveLine(),
        bracketMatching(),
        closeBrackets(),
        autocompletion({ icons: false }),
        keymap.of([
          { key: "Mod-Enter", run, preventDefault: true },
          ...closeBracketsKeymap,
          ...completionKeymap,
          ...historyKeymap,
          ...defaultKeymap,
        ]),
        language.of(languageFor({}, "")),
        syntaxHighlighting(syntaxColours),
        errorField,
        theme,
        placeholder("SELECT … — Ctrl+Enter runs the statement under the cursor"),
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ "aria-label": "SQL", "aria-multiline": "true" }),
      ],
    }),
  });

  return {
    element,
    view,
    statementToRun() {
      const doc = view.state.doc.toString();
      const selection = view.state.selection.main;
      if (!selection.empty) return trimmed(doc, selection.from, selection.to);
      return statementAt(doc, selection.head);
    },
    setSchema(schema, defaultSchema) {
      view.dispatch({ effects: language.reconfigure(languageFor(schema, defaultSchema)) });
    },
    markError(from, to) {
      const end = Math.min(Math.max(to, from + 1), view.state.doc.length);
      view.dispatch({
        effects: setError.of({ from, to: end }),
        selection: { anchor: from },
        scrollIntoView: true,
      });
    },
    clearError() {
      view.dispatch({ effects: setError.of(null) });
    },
    appendStatement(text) {
      const doc = view.state.doc.toString();
      const prefix =
        doc.trim() === "" ? "" : doc.endsWith("\n\n") ? "" : doc.endsWith("\n") ? "\n" : "\n\n";
      const from = doc.trim() === "" ? 0 : doc.length;
      const insert = `${prefix}${text}`;
      view.dispatch({
        changes: { from, to: doc.trim() === "" ? doc.length : doc.length, insert },
        selection: { anchor: from + insert.length },
        scrollIntoView: true,
      });
      view.focus();
    },
    setText(text) {
      view.dispatch({
        changes: { from: 0, to: view.state.doc.length, insert: text },
        selection: { anchor: text.length },
      });
      view.focus();
    },
    text: () => view.state.doc.toString(),
  };
}
