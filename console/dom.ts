/**
 * A small element builder, so that the console's views read as the DOM they
 * build. Text always goes in as text nodes, never as HTML: values from the
 * database can hold anything, and the page holds credentials.
 */

/** Attributes (`aria-*`, `data-*`, `class`...) and event handlers (`onclick`). */
export type Props = Record<
  string,
  string | number | boolean | undefined | ((event: Event) => void)
>;

/** A child: a node, text, or nothing (skipped). */
export type Child = Node | string | false | null | undefined;

/** `<tag ...props>children</tag>`. A `false` or `undefined` attribute is left out; `true` is present and empty. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") {
      element.addEventListener(name.replace(/^on/, ""), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  element.append(...children.filter((c): c is Node | string => c !== false && c != null));
  return element;
}

/** Replaces the children of `element`. */
export function replaceChildren(element: Element, ...children: Child[]): void {
  element.replaceChildren(...children.filter((c): c is Node | string => c !== false && c != null));
}
