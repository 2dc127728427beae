// Profile: today's tokens against the quota, the persona the characters are told about,
// API keys (made, copied once, revoked), password change.
import { ApiError, del, enc, get, post, put } from "./api.js";
import { clear, field, formatDate, formatTime, h, uid } from "./dom.js";
import { currentLang, formatNumber, t } from "./i18n.js";
import { toast } from "./toast.js";

export function profileView({ app }) {
  const account = h("div", { class: "account" });
  const usage = h("div", { class: "usage" });
  const keys = h("ul", { class: "keys" });
  const fresh = h("div", { class: "fresh-key", role: "status", "aria-live": "polite" });

  const keyName = field({ name: "name", label: t("keyName"), autocomplete: "off" });
  keyName.input.maxLength = 100;
  const keyForm = h("form", { class: "inline-form", onsubmit: (e) => { e.preventDefault(); makeKey(); } },
    keyName.wrap, h("button", { type: "submit", class: "primary", text: t("makeKey") }));

  const current = field({ name: "current_password", label: t("currentPassword"), type: "password", autocomplete: "current-password" });
  const next = field({ name: "new_password", label: t("newPassword"), type: "password", autocomplete: "new-password", hint: t("passwordHint") });
  const pwError = h("p", { class: "form-error", role: "alert" });
  const pwForm = h("form", { class: "stack-form", onsubmit: (e) => { e.preventDefault(); changePassword(); } },
    current.wrap, next.wrap, pwError, h("button", { type: "submit", class: "primary", text: t("changePassword") }));

  // The user's persona: what the characters are told about the user.
  const personaName = field({ name: "persona_name", label: t("personaName"), autocomplete: "nickname", required: false });
  personaName.input.maxLength = 60;
  const aboutId = uid("persona-about");
  const about = h("textarea", { id: aboutId, name: "persona_description", rows: 4, maxlength: 1000, "aria-describedby": `${aboutId}-error` });
  const aboutError = h("p", { class: "field-error", id: `${aboutId}-error`, "aria-live": "polite" });
  const personaError = h("p", { class: "form-error", role: "alert" });
  const personaForm = h("form", { class: "stack-form persona-form", onsubmit: (e) => { e.preventDefault(); savePersona(); } },
    h("p", { class: "muted", text: t("personaIntro") }),
    personaName.wrap,
    h("div", { class: "field" }, h("label", { for: aboutId, text: t("personaDescription") }), about, aboutError),
    personaError, h("button", { type: "submit", class: "primary", text: t("savePersona") }));

  const section = (id, title, ...body) => h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id, text: title }), ...body);
  const el = h("div", { class: "page profile-page" },
    h("h1", { text: t("profile") }),
    section(uid("acc"), t("account"), account),
    section(uid("use"), t("usage"), usage),
    section(uid("persona"), t("yourPersona"), personaForm),
    section(uid("keys"), t("apiKeys"), keyForm, fresh, keys),
    section(uid("pw"), t("changePassword"), pwForm));

  async function loadMe() {
    let me;
    try { me = await get("/api/v1/auth/me"); } catch (err) { return app.fail(err); }
    const u = me.user;
    clear(account).append(
      h("p", { class: "who-am-i" }, h("strong", { text: u.username }), " · ", u.email),
      h("p", { class: "muted" }, t("memberSince", { date: formatDate(u.created_at, currentLang()) }),
        " · ", t("roles"), ": ", u.roles.join(", ")));
    const q = me.quota || { tokens_per_day: 0, used_today: 0 };
    clear(usage);
    if (!q.tokens_per_day) {
      usage.append(h("p", { text: t("unlimited", { used: formatNumber(q.used_today) }) }));
    } else {
      const exact = (q.used_today / q.tokens_per_day) * 100;
      const pct = Math.min(100, exact >= 10 ? Math.round(exact) : Math.round(exact * 10) / 10);
      const label = t("usageOf", { used: formatNumber(q.used_today), limit: formatNumber(q.tokens_per_day), pct });
      usage.append(
        h("div", { class: ["meter", pct >= 90 && "high"], role: "progressbar", "aria-valuemin": 0, "aria-valuemax": q.tokens_per_day, "aria-valuenow": q.used_today, "aria-valuetext": label, "aria-label": t("usage") },
          h("div", { class: "meter-fill", vars: { "--pct": `${q.used_today ? Math.max(pct, 1) : 0}%` } })),
        h("p", { class: "meter-label", text: label }));
    }
  }

  async function loadKeys() {
    let list;
    try { list = await get("/api/v1/auth/api-keys"); } catch (err) { return app.fail(err); }
    const items = Array.isArray(list) ? list : list.keys || list.api_keys || [];
    clear(keys);
    if (!items.length) keys.append(h("li", { class: "empty", text: t("noKeys") }));
    for (const k of items) {
      keys.append(h("li", { class: "key", "data-key": k.key_id },
        h("div", null, h("strong", { text: k.name }),
          h("p", { class: "muted" }, t("created", { date: formatTime(k.created_at, currentLang()) }), " · ",
            k.expires_at ? t("expires", { date: formatTime(k.expires_at, currentLang()) }) : t("never"))),
        h("button", { type: "button", class: "danger", onclick: () => revoke(k), "aria-label": `${t("revoke")}: ${k.name}`, text: t("revoke") })));
    }
  }

  async function makeKey() {
    keyName.error.textContent = "";
    try {
      const made = await post("/api/v1/auth/api-keys", { name: keyName.input.value.trim() });
      keyName.input.value = "";
      const valueId = uid("key");
      const value = h("input", { id: valueId, class: "key-value", readonly: true, value: made.key, spellcheck: "false" });
      clear(fresh).append(
        h("label", { for: valueId, text: t("keyOnce") }),
        h("div", { class: "inline-form" }, value,
          h("button", {
            type: "button", class: "primary", text: t("copy"),
            onclick: async () => {
              try { await navigator.clipboard.writeText(made.key); } catch { value.select(); document.execCommand("copy"); }
              toast(t("copied"));
            },
          }),
          h("button", { type: "button", text: t("close"), onclick: () => clear(fresh) })));
      value.focus();
      value.select();
      loadKeys();
    } catch (err) {
      keyName.error.textContent = err instanceof ApiError ? (err.fieldErrors.name || err.userMessage) : String(err);
    }
  }

  async function revoke(k) {
    if (!window.confirm(t("revokeConfirm", { name: k.name }))) return;
    try { await del(`/api/v1/auth/api-keys/${enc(k.key_id)}`); } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) return app.fail(err);
    }
    loadKeys();
  }

  async function loadPersona() {
    let p;
    try { p = await get("/api/v1/chat/persona"); } catch (err) {
      if (err instanceof ApiError && err.status === 404) { personaForm.closest("section").hidden = true; return; }
      return app.fail(err);
    }
    personaName.input.value = p.name || "";
    about.value = p.description || "";
  }

  async function savePersona() {
    personaError.textContent = "";
    for (const [f, e] of [[personaName.input, personaName.error], [about, aboutError]]) { e.textContent = ""; f.removeAttribute("aria-invalid"); }
    try {
      const p = await put("/api/v1/chat/persona", { name: personaName.input.value.trim(), description: about.value.trim() });
      personaName.input.value = p.name;
      about.value = p.description;
      toast(t("personaSaved"));
    } catch (err) {
      if (!(err instanceof ApiError)) { personaError.textContent = String(err); return; }
      const per = err.fieldErrors;
      let placed = false;
      for (const [name, input, e] of [["name", personaName.input, personaName.error], ["description", about, aboutError]]) {
        if (per[name]) { e.textContent = per[name]; input.setAttribute("aria-invalid", "true"); placed = true; }
      }
      if (!placed) personaError.textContent = err.userMessage;
    }
  }

  async function changePassword() {
    pwError.textContent = "";
    for (const f of [current, next]) { f.error.textContent = ""; f.input.removeAttribute("aria-invalid"); }
    try {
      await post("/api/v1/auth/change-password", { current_password: current.input.value, new_password: next.input.value });
      current.input.value = "";
      next.input.value = "";
      toast(t("passwordChanged"));
    } catch (err) {
      if (!(err instanceof ApiError)) { pwError.textContent = String(err); return; }
      const per = err.fieldErrors;
      let placed = false;
      for (const [name, f] of [["current_password", current], ["new_password", next]]) {
        if (per[name]) { f.error.textContent = per[name]; f.input.setAttribute("aria-invalid", "true"); placed = true; }
      }
      if (!placed) pwError.textContent = err.userMessage;
    }
  }

  loadMe();
  loadPersona();
  loadKeys();
  return { el };
}
