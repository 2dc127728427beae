// Sign up and log in. 422 field errors appear under their field; anything else (401, 409,
// 429 with its retry time, a network failure) above the button.
import { ApiError, signIn } from "./api.js";
import { field, h } from "./dom.js";
import { t } from "./i18n.js";

export function authView({ mode, notice, onDone }) {
  const register = mode === "register";
  const fields = {};
  if (register) fields.username = field({ name: "username", label: t("username"), autocomplete: "username" });
  fields.email = field({ name: "email", label: t("email"), type: "email", autocomplete: "email" });
  fields.password = field({
    name: "password", label: t("password"), type: "password",
    autocomplete: register ? "new-password" : "current-password", hint: register ? t("passwordHint") : null,
  });
  const general = h("p", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary wide", text: register ? t("register") : t("login") });
  const form = h("form", { class: "auth-form", novalidate: true, onsubmit: (e) => { e.preventDefault(); go(); } },
    Object.values(fields).map((f) => f.wrap), general, submit);

  async function go() {
    general.textContent = "";
    for (const f of Object.values(fields)) { f.error.textContent = ""; f.input.removeAttribute("aria-invalid"); }
    const body = Object.fromEntries(Object.entries(fields).map(([k, f]) => [k, f.input.value]));
    submit.disabled = true;
    try {
      await signIn(register ? "register" : "login", body);
      onDone();
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(0, {});
      const perField = e.fieldErrors;
      let placed = false;
      for (const [name, message] of Object.entries(perField)) {
        if (fields[name]) {
          fields[name].error.textContent = message;
          fields[name].input.setAttribute("aria-invalid", "true");
          if (!placed) fields[name].input.focus();
          placed = true;
        }
      }
      if (!placed) general.textContent = e.userMessage;
      else if (e.status !== 422) general.textContent = e.userMessage;
    } finally {
      submit.disabled = false;
    }
  }

  const other = register ? "#/login" : "#/register";
  const el = h("section", { class: "auth", "aria-labelledby": "auth-title" },
    h("div", { class: "auth-card" },
      h("h1", { id: "auth-title" }, h("span", { class: "brand-mark", "aria-hidden": "true", text: "◆ " }), register ? t("register") : t("login")),
      h("p", { class: "lead", text: t("welcome") }),
      notice ? h("p", { class: "notice", role: "status", text: notice }) : null,
      form,
      h("p", { class: "switch" }, h("a", { href: other, text: register ? t("haveAccount") : t("noAccount") }))));
  setTimeout(() => Object.values(fields)[0].input.focus(), 0);
  return { el };
}
