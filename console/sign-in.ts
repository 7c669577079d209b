/**
 * Signing in with the gateway's own credentials: a username and password
 * (HTTP Basic) or a token. They are held in memory, and in this tab's
 * sessionStorage if asked, never in a cookie: the browser attaches nothing by
 * itself, so every call carries an explicit `authorization` header and no
 * other site can make calls in the user's name (no CSRF).
 */
import { type Connection, type Credentials, connect } from "./connection.js";
import { h, replaceChildren } from "./dom.js";
import { errorView } from "./errors.js";

const storageKey = "sqlgate.console.credentials";

/** The credentials kept in this tab, or none. */
export function storedCredentials(): Credentials {
  try {
    const stored: unknown = JSON.parse(sessionStorage.getItem(storageKey) ?? "{}");
    if (stored === null || typeof stored !== "object") return {};
    const { username, password, token } = stored as Record<string, unknown>;
    if (typeof token === "string") return { token };
    if (typeof username === "string" && typeof password === "string") return { username, password };
  } catch {
    // Unreadable: sign in again.
  }
  return {};
}

export function forgetCredentials(): void {
  sessionStorage.removeItem(storageKey);
}

/**
 * Shows the sign-in dialog until the gateway accepts what is entered, and
 * resolves with the connection. `reason` (a failed call) is shown first.
 */
export function signIn(url: string, reason?: unknown): Promise<Connection> {
  const username = h("input", {
    id: "sign-in-username",
    name: "username",
    autocomplete: "username",
    spellcheck: "false",
  });
  const password = h("input", {
    id: "sign-in-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
  });
  const token = h("input", {
    id: "sign-in-token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
  });
  const remember = h("input", { id: "sign-in-remember", type: "checkbox", checked: true });
  const alerts = h("div", { class: "alerts" });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { method: "dialog", class: "sign-in-form" },
    h("h1", { id: "sign-in-title" }, "Sign in to sqlgate"),
    h(
      "p",
      { class: "muted" },
      `Use a credential of the gateway at ${url} (sqlgate credential create).`,
    ),
    alerts,
    h("label", { for: "sign-in-username" }, "Username"),
    username,
    h("label", { for: "sign-in-password" }, "Password"),
    password,
    h("p", { class: "or" }, "or"),
    h("label", { for: "sign-in-token" }, "Token"),
    token,
    h(
      "div",
      { class: "check" },
      remember,
      h("label", { for: "sign-in-remember" }, "Keep me signed in while this tab is open"),
    ),
    h("div", { class: "dialog-actions" }, submit),
  );
  const dialog = h("dialog", { class: "sign-in", "aria-labelledby": "sign-in-title" }, form);
  document.body.append(dialog);
  if (reason !== undefined) replaceChildren(alerts, errorView(reason).element);
  dialog.addEventListener("cancel", (event) => event.preventDefault());
  dialog.showModal();
  username.focus();

  return new Promise((resolve) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const credentials: Credentials =
        token.value !== ""
          ? { token: token.value }
          : { username: username.value, password: password.value };
      submit.disabled = true;
      submit.textContent = "Signing in…";
      try {
        const connection = await connect(url, credentials);
        if (remember.checked) sessionStorage.setItem(storageKey, JSON.stringify(credentials));
        else forgetCredentials();
        dialog.close();
        dialog.remove();
        resolve(connection);
      } catch (err) {
        replaceChildren(alerts, errorView(err).element);
        password.value = "";
        (token.value !== "" ? token : password).focus();
      } finally {
        submit.disabled = false;
        submit.textContent = "Sign in";
      }
    });
  });
}
