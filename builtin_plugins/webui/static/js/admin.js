// Administration: plugin states, and users when the server offers the admin API (list,
// search, make or remove an admin, disable or enable an account).
import { ApiError, enc, get, patch } from "./api.js";
import { clear, formatTime, h, uid } from "./dom.js";
import { hasRoute } from "./features.js";
import { pluginAdmin } from "./pluginadmin.js";
import { currentLang, has, t } from "./i18n.js";
import { toast } from "./toast.js";

// A server word (a role, a plugin state) in the user's language when known.
const word = (prefix, value) => (has(`${prefix}_${value}`) ? t(`${prefix}_${value}`) : String(value));

export function adminView({ app }) {
  const plugins = h("div", { class: "table-wrap" });
  const usersPanel = h("section", { class: "panel", hidden: true, "aria-labelledby": "admin-users" },
    h("h2", { id: "admin-users", text: t("users") }));
  const users = h("div", { class: "table-wrap" });
  const total = h("p", { class: "muted" });
  const qId = uid("q");
  const q = h("input", { id: qId, type: "search", autocomplete: "off" });
  usersPanel.append(
    h("form", { class: "inline-form", role: "search", onsubmit: (e) => { e.preventDefault(); loadUsers(); } },
      h("div", { class: "field grow" }, h("label", { for: qId, text: t("search") }), q),
      h("button", { type: "submit", class: "primary", text: t("search") })),
    total, users);
  const el = h("div", { class: "page admin-page" },
    h("h1", { text: t("admin") }),
    h("section", { class: "panel", "aria-labelledby": "admin-plugins" }, h("h2", { id: "admin-plugins", text: t("plugins") }), plugins),
    usersPanel);

  async function loadPlugins() {
    let list;
    try { list = (await get("/api/v1/plugins")).plugins; } catch (err) { return app.fail(err); }
    clear(plugins).append(h("table", null,
      h("thead", null, h("tr", null, [t("plugin"), t("state"), t("status"), t("version")].map((x) => h("th", { scope: "col", text: x })))),
      h("tbody", null, list.map((p) => h("tr", { "data-plugin": p.name },
        h("th", { scope: "row" }, h("strong", { text: p.name }), p.description ? h("span", { class: "muted block", text: p.description }) : null),
        h("td", null, h("span", { class: ["state", `state-${String(p.state).toLowerCase()}`], text: word("state", p.state) })),
        h("td", { text: [p.status, p.detail || p.error].filter(Boolean).join(" — ") }),
        h("td", { text: p.version }))))));
  }

  // The users list appears only when the server answers the admin API.
  async function loadUsers() {
    let page;
    try {
      page = await get(`/api/v1/admin/users?limit=100${q.value.trim() ? `&q=${enc(q.value.trim())}` : ""}`);
    } catch (err) {
      if (err instanceof ApiError && [404, 405].includes(err.status)) { usersPanel.hidden = true; return; }
      if (!usersPanel.hidden) app.fail(err);
      return;
    }
    usersPanel.hidden = false;
    total.textContent = t("total", { count: page.total ?? page.users.length });
    clear(users).append(h("table", { class: "users" },
      h("thead", null, h("tr", null, [t("username"), t("email"), t("roles"), t("lastLogin"), t("state"), t("actions")].map((x) => h("th", { scope: "col", text: x })))),
      h("tbody", null, page.users.map((u) => userRow(u)))));
  }

  function userRow(u) {
    const admin = (u.roles || []).includes("admin");
    const row = h("tr", { "data-user": u.user_id, class: u.disabled ? "disabled" : null },
      h("th", { scope: "row", text: u.username }),
      h("td", { "data-label": t("email"), text: u.email }),
      h("td", { class: "roles", "data-label": t("roles"), text: (u.roles || []).map((r) => word("role", r)).join(", ") }),
      h("td", { "data-label": t("lastLogin"), text: u.last_login_at ? formatTime(u.last_login_at, currentLang()) : "—" }),
      h("td", { class: ["account-state", u.disabled && "off"], "data-label": t("state"), text: u.disabled ? t("accountDisabled") : t("accountActive") }),
      h("td", { class: "row-actions", "data-label": t("actions") }, h("div", null,
        h("button", {
          type: "button", "data-action": "role", "aria-label": `${admin ? t("removeAdmin") : t("makeAdmin")}: ${u.username}`, text: admin ? t("removeAdmin") : t("makeAdmin"),
          onclick: () => change(u, row, { roles: admin ? ["user"] : ["user", "admin"] }, admin ? t("confirmRemoveAdmin", { name: u.username }) : null),
        }),
        h("button", {
          type: "button", "data-action": "state", class: u.disabled ? null : "danger", "aria-label": `${u.disabled ? t("enable") : t("disable")}: ${u.username}`, text: u.disabled ? t("enable") : t("disable"),
          onclick: () => change(u, row, { disabled: !u.disabled }, u.disabled ? null : t("confirmDisable", { name: u.username })),
        }))));
    return row;
  }

  // One change (roles or disabled); the row shows what the server answered.
  async function change(u, row, body, question) {
    if (question && !window.confirm(question)) return;
    for (const b of row.querySelectorAll("button")) b.disabled = true;
    let updated;
    try {
      updated = await patch(`/api/v1/admin/users/${enc(u.user_id)}`, body);
    } catch (err) {
      for (const b of row.querySelectorAll("button")) b.disabled = false;
      return app.fail(err);
    }
    const fresh = userRow(updated);
    row.replaceWith(fresh);
    fresh.querySelector(`button[data-action="${body.roles ? "role" : "state"}"]`).focus();
    toast(t("userSaved", { name: updated.username }));
  }

  // plugins switched and configured at run time where the server offers it; else their states
  hasRoute("get", "/api/v1/admin/plugins").then((yes) => (yes ? pluginAdmin({ app, container: plugins }) : loadPlugins()));
  hasRoute("get", "/api/v1/admin/users").then((yes) => yes && loadUsers());
  return { el };
}
