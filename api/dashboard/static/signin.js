// Sign in: the credential is checked with one read (`GET /jobs?limit=1`) before it is kept.

import { remember, request } from "./api.js";
import { append, h, showAlert } from "./dom.js";

/** Render the sign-in form; `onSignedIn` runs once a credential has been accepted. */
export function renderSignIn(main, { onSignedIn, notice }) {
  const kind = h("select", { id: "signin-kind", name: "kind" },
    h("option", { value: "api_key" }, "API key (sent as X-API-Key)"),
    h("option", { value: "bearer" }, "Access token (sent as Authorization: Bearer)"));
  const secret = h("input", {
    id: "signin-secret", name: "credential", type: "password", required: true,
    autocomplete: "off", spellcheck: "false", "aria-describedby": "signin-help signin-error",
  });
  const error = h("p", { id: "signin-error", class: "field-error", hidden: true });
  const submit = h("button", { type: "submit", id: "signin-submit" }, "Sign in");
  const form = h("form", { id: "signin-form", "aria-labelledby": "signin-heading", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "signin-kind" }, "Credential type"), kind),
    h("div", { class: "field" }, h("label", { for: "signin-secret" }, "API key or token"), secret,
      h("p", { id: "signin-help", class: "help" },
        "Kept in this browser tab only (sessionStorage) and forgotten when the tab closes or "
        + "you sign out. Every request of this page carries it in a header.")),
    error,
    h("div", { class: "actions" }, submit));

  const fail = (message) => {
    error.textContent = message;
    error.hidden = false;
    secret.setAttribute("aria-invalid", "true");
    showAlert(message);
    secret.focus();
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const cred = { kind: kind.value, value: secret.value.trim() };
    if (!cred.value) return fail("Sign-in failed: enter an API key or a token.");
    submit.disabled = true;
    try {
      await request("/jobs", { query: { limit: 1 }, cred });
    } catch (problem) {
      submit.disabled = false;
      const why = problem.status === 401 ? `the server refused it: ${problem.message}`
        : problem.status === 403 ? `it cannot read jobs: ${problem.message}`
          : problem.status ? problem.message : `the API did not answer (${problem.message})`;
      return fail(`Sign-in failed: ${why}`);
    }
    remember(cred.kind, cred.value);
    showAlert("");
    onSignedIn();
  });

  append(main, [h("h1", { id: "signin-heading", tabindex: "-1" }, "Sign in"),
    notice ? h("p", { class: "notice" }, notice) : null, form]);
  return () => {};
}
