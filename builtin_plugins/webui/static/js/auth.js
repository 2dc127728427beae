// Sign up, log in, forgot password and reset password. Every field error shows at once under
// its field, in the user's language: the ones the browser can tell before sending, then the
// server's (by its Problem's `code` and `errors[].path`); anything else (401, 409, 429 with
// its retry time, a network failure) above the button.
import { ApiError, api, signIn } from "./api.js";
import { field, h } from "./dom.js";
import { t } from "./i18n.js";

const USERNAME = /^[\p{L}\p{N}_.-]{3,32}$/u;
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

export function authView({ mode, notice, onDone }) {
  const register = mode === "register";
  const forgot = mode === "forgot";
  const reset = mode === "reset";
  const fields = {};
  if (register) fields.username = field({ name: "username", label: t("username"), autocomplete: "username", hint: t("usernameHint") });
  if (reset) fields.reset_token = field({ name: "reset_token", label: t("resetToken"), autocomplete: "one-time-code" });
  if (!reset) fields.email = field({ name: "email", label: t("email"), type: "email", autocomplete: "email" });
  if (!forgot) {
    const name = reset ? "new_password" : "password";
    fields[name] = field({
      name, label: reset ? t("newPassword") : t("password"), type: "password",
      autocomplete: register || reset ? "new-password" : "current-password", hint: register || reset ? t("passwordHint") : null,
    });
  }
  const general = h("p", { class: "form-error", role: "alert" });
  const done = h("p", { class: "form-done", role: "status" });
  const label = register ? t("register") : forgot ? t("sendResetMail") : reset ? t("resetPassword") : t("login");
  const submit = h("button", { type: "submit", class: "primary wide", text: label });
  const form = h("form", { class: "auth-form", novalidate: true, onsubmit: (e) => { e.preventDefault(); go(); } },
    Object.values(fields).map((f) => f.wrap), general, done, submit);

  // What the browser can tell before asking the server, for every field at once.
  function check(body) {
    const out = {};
    if (register && !USERNAME.test(body.username)) out.username = t("field_username");
    if ("email" in body && !EMAIL.test(body.email)) out.email = t("field_email");
    for (const k of ["password", "new_password"]) {
      if (k in body && (register || reset) && body[k].length < 8) out[k] = t("field_password");
      if (k in body && !body[k]) out[k] = t("fieldRequired");
    }
    if (reset && !body.reset_token.trim()) out.reset_token = t("fieldRequired");
    return out;
  }

  function show(perField) {
    let first = null;
    for (const [name, message] of Object.entries(perField)) {
      const f = fields[name];
      if (!f) continue;
      f.error.textContent = message;
      f.input.setAttribute("aria-invalid", "true");
      first = first || f;
    }
    if (first) first.input.focus();
    return Boolean(first);
  }

  async function go() {
    general.textContent = "";
    done.textContent = "";
    for (const f of Object.values(fields)) { f.error.textContent = ""; f.input.removeAttribute("aria-invalid"); }
    const body = Object.fromEntries(Object.entries(fields).map(([k, f]) => [k, f.input.value]));
    if (show(check(body))) return;
    submit.disabled = true;
    try {
      if (forgot) {
        await api("POST", "/api/v1/auth/forgot-password", body, { auth: false });
        done.textContent = t("resetMailSent");
        return;
      }
      if (reset) {
        await api("POST", "/api/v1/auth/reset-password", body, { auth: false });
        window.location.hash = "#/login";
        return;
      }
      await signIn(register ? "register" : "login", body);
      onDone();
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(0, {});
      const placed = show(e.fieldErrors);
      if (!placed || e.status !== 422) general.textContent = placed && e.status === 409 ? "" : e.userMessage;
    } finally {
      submit.disabled = false;
    }
  }

  const links = [];
  if (register || forgot || reset) links.push(h("a", { href: "#/login", text: t("haveAccount") }));
  if (!register) links.push(h("a", { href: "#/register", text: t("noAccount") }));
  if (!forgot && !register) links.push(h("a", { href: "#/forgot", text: t("forgotPassword") }));
  if (forgot) links.push(h("a", { href: "#/reset", text: t("haveResetToken") }));
  const el = h("section", { class: "auth", "aria-labelledby": "auth-title" },
    h("div", { class: "auth-card" },
      h("h1", { id: "auth-title" }, h("span", { class: "brand-mark", "aria-hidden": "true", text: "◆ " }), label),
      h("p", { class: "lead", text: forgot ? t("forgotLead") : reset ? t("resetLead") : t("welcome") }),
      notice ? h("p", { class: "notice", role: "status", text: notice }) : null,
      form,
      links.map((a) => h("p", { class: "switch" }, a))));
  setTimeout(() => Object.values(fields)[0].input.focus(), 0);
  return { el };
}
