// Plugins at run time (administrators): every installed plugin with an on/off switch, its
// settings as a form built from the plugin's JSON Schema, and its history. Every change
// goes through PATCH /api/v1/admin/plugins/{name} and the row shows what the server answered.
import { ApiError, enc, get, patch, post } from "./api.js";
import { clear, formatTime, h, uid } from "./dom.js";
import { currentLang, has, t } from "./i18n.js";
import { toast } from "./toast.js";

const word = (prefix, value) => (has(`${prefix}_${value}`) ? t(`${prefix}_${value}`) : String(value));
const SECRET = /(key|secret|token|password)$/i;

export function pluginAdmin({ app, container }) {
  const list = h("ul", { class: "plugin-list" });
  const rescan = h("button", { type: "button", class: "rescan", text: t("rescan"), onclick: () => reload(true) });
  clear(container).append(h("div", { class: "plugin-tools" }, rescan), list);

  async function reload(scan = false) {
    let plugins;
    try {
      plugins = (scan ? await post("/api/v1/admin/plugins/rescan") : await get("/api/v1/admin/plugins")).plugins;
    } catch (err) {
      return app.fail(err);
    }
    clear(list);
    for (const p of plugins) list.append(row(p));
    if (scan) toast(t("rescanned"));
  }

  function row(p) {
    const item = h("li", { class: ["plugin", !p.enabled && "off"], "data-plugin": p.name });
    fill(item, p);
    return item;
  }

  function fill(item, p) {
    const titleId = uid("plugin");
    const locked = p.locked || p.required;
    const toggle = h("input", {
      type: "checkbox", role: "switch", class: "switch-input", checked: p.enabled,
      disabled: locked && p.enabled, "aria-label": `${t("pluginOn")}: ${p.name}`,
      "aria-describedby": `${titleId}-error`,
    });
    const error = h("p", { class: "field-error", id: `${titleId}-error`, role: "alert" });
    toggle.addEventListener("change", async () => {
      error.textContent = "";
      toggle.disabled = true;
      try {
        const updated = await patch(`/api/v1/admin/plugins/${enc(p.name)}`, { enabled: toggle.checked });
        replace(item, updated, "switch");
        toast(t(updated.enabled ? "pluginTurnedOn" : "pluginTurnedOff", { name: p.name }));
      } catch (err) {
        toggle.checked = !toggle.checked;
        toggle.disabled = false;
        error.textContent = conflictText(err);
      }
    });
    const settings = h("details", { class: "plugin-settings" }, h("summary", { text: t("pluginSettings") }));
    settings.addEventListener("toggle", () => { if (settings.open && !settings.dataset.built) { settings.dataset.built = "1"; settings.append(settingsForm(item, p)); } }, { once: false });
    const history = h("details", { class: "plugin-history" }, h("summary", { text: t("pluginHistory") }));
    history.addEventListener("toggle", () => { if (history.open) loadHistory(p, history); });
    clear(item).append(
      h("div", { class: "plugin-head" },
        h("div", { class: "plugin-title" },
          h("h3", { id: titleId }, h("span", { text: p.name }), h("span", { class: "plugin-version", text: ` ${p.version || ""}` })),
          p.description ? h("p", { class: "muted", text: p.description }) : null),
        h("span", { class: ["state", `state-${String(p.state).toLowerCase()}`], text: word("state", p.state) }),
        h("label", { class: "switch" }, toggle, h("span", { class: "switch-track", "aria-hidden": "true" }))),
      h("p", { class: "plugin-facts" },
        locked ? h("span", { class: "badge", text: t("pluginRequired") }) : null,
        (p.requires || []).length ? h("span", { text: t("pluginRequires", { names: p.requires.join(", ") }) }) : null,
        (p.overridden || []).length ? h("span", { class: "overridden", text: t("overridden", { keys: p.overridden.join(", ") }) }) : null,
        p.error ? h("span", { class: "state-error", text: p.error }) : null),
      error, settings, history);
  }

  function replace(item, p, focus) {
    item.classList.toggle("off", !p.enabled);
    fill(item, p);
    if (focus === "switch") item.querySelector(".switch-input")?.focus();
  }

  // 409s name the plugins concerned: the code in the user's language, then those names.
  function conflictText(err) {
    if (!(err instanceof ApiError)) return String(err);
    const names = Array.isArray(err.problem.plugins) ? err.problem.plugins : [];
    return names.length ? `${err.userMessage} (${names.join(", ")})` : err.userMessage;
  }

  // A field per property of the plugin's schema: booleans as checkboxes, enums as lists,
  // numbers with their bounds, strings (secrets as password fields), lists one a line,
  // anything else as JSON.
  function settingsForm(item, p) {
    const props = (p.schema && p.schema.properties) || {};
    const names = Object.keys(props);
    if (!names.length) return h("p", { class: "muted", text: t("noSettings") });
    const fields = {};
    const rows = names.map((name) => {
      const spec = props[name] || {};
      const id = uid(`cfg-${name}`);
      const value = (p.config || {})[name] ?? spec.default;
      const type = Array.isArray(spec.type) ? spec.type.find((x) => x !== "null") : spec.type;
      let input;
      let read;
      if (type === "boolean") {
        input = h("input", { id, type: "checkbox", checked: Boolean(value) });
        read = () => input.checked;
      } else if (Array.isArray(spec.enum)) {
        input = h("select", { id }, spec.enum.map((v) => h("option", { value: JSON.stringify(v), text: String(v), selected: v === value })));
        read = () => JSON.parse(input.value);
      } else if (type === "integer" || type === "number") {
        input = h("input", { id, type: "number", step: type === "integer" ? "1" : "any", min: spec.minimum, max: spec.maximum });
        input.value = value ?? "";
        read = () => (input.value === "" ? null : Number(input.value));
      } else if (type === "string") {
        input = h("input", { id, type: SECRET.test(name) ? "password" : "text", autocomplete: "off", maxlength: spec.maxLength });
        input.value = value ?? "";
        read = () => input.value;
      } else if (type === "array" && (spec.items || {}).type === "string") {
        input = h("textarea", { id, rows: 3 });
        input.value = (value || []).join("\n");
        read = () => input.value.split("\n").map((x) => x.trim()).filter(Boolean);
      } else {
        input = h("textarea", { id, rows: 4, class: "json" });
        input.value = value === undefined ? "" : JSON.stringify(value, null, 2);
        read = () => (input.value.trim() ? JSON.parse(input.value) : null);
      }
      const error = h("p", { class: "field-error", id: `${id}-error`, "aria-live": "polite" });
      input.setAttribute("aria-describedby", `${id}-error${spec.description ? ` ${id}-hint` : ""}`);
      fields[name] = { input, read, error, spec, before: JSON.stringify(value ?? null) };
      const labelEl = h("label", { for: id, text: name });
      return h("div", { class: ["field", type === "boolean" && "field-check"] },
        type === "boolean" ? [input, labelEl] : [labelEl, input],
        spec.description ? h("p", { class: "hint", id: `${id}-hint`, text: spec.description }) : null, error);
    });
    const general = h("p", { class: "form-error", role: "alert" });
    const form = h("form", {
      class: "settings-form", novalidate: true, onsubmit: async (e) => {
        e.preventDefault();
        general.textContent = "";
        const config = {};
        let bad = null;
        for (const [name, f] of Object.entries(fields)) {
          f.error.textContent = "";
          f.input.removeAttribute("aria-invalid");
          let v;
          try { v = f.read(); } catch { f.error.textContent = t("errorInvalid"); f.input.setAttribute("aria-invalid", "true"); bad = bad || f.input; continue; }
          if (JSON.stringify(v ?? null) !== f.before) config[name] = v;
        }
        if (bad) return bad.focus();
        if (!Object.keys(config).length) return;
        try {
          const updated = await patch(`/api/v1/admin/plugins/${enc(p.name)}`, { config });
          toast(t("settingsSaved", { name: p.name }));
          replace(item, updated);
        } catch (err) {
          const e2 = err instanceof ApiError ? err : new ApiError(0, {});
          let first = null;
          for (const x of e2.errors) {
            const key = String(x.path || "").replace(/^\/(config\/)?/, "").split("/")[0];
            const f = fields[key];
            if (!f) continue;
            // in the user's language when the schema says what is allowed
            const { minimum: min, maximum: max } = f.spec;
            f.error.textContent = min !== undefined && max !== undefined ? t("fieldRange", { min, max }) : x.message || t("errorInvalid");
            f.input.setAttribute("aria-invalid", "true");
            first = first || f.input;
          }
          if (first) first.focus();
          else general.textContent = e2.userMessage;
        }
      },
    }, rows, general, h("button", { type: "submit", class: "primary", text: t("saveSettings") }));
    return form;
  }

  async function loadHistory(p, box) {
    let events;
    try {
      events = (await get(`/api/v1/admin/plugins/${enc(p.name)}/history?limit=20`)).events;
    } catch (err) {
      return app.fail(err);
    }
    box.querySelector(".history-body")?.remove();
    const body = h("div", { class: "history-body table-wrap" });
    if (!events.length) body.append(h("p", { class: "muted", text: t("noHistory") }));
    else {
      body.append(h("table", { class: "history" },
        h("thead", null, h("tr", null, [t("when"), t("what"), t("outcome"), t("detail")].map((x) => h("th", { scope: "col", text: x })))),
        h("tbody", null, events.map((ev) => h("tr", { class: `outcome-${ev.outcome}` },
          h("td", { "data-label": t("when"), text: formatTime(new Date(ev.at * 1000).toISOString(), currentLang()) }),
          h("td", { "data-label": t("what"), text: word("kind", ev.kind) }),
          h("td", { "data-label": t("outcome"), class: ev.outcome === "error" ? "state-error" : null, text: word("outcome", ev.outcome) }),
          h("td", { "data-label": t("detail"), text: [ev.detail, ev.error, ev.duration_ms != null ? t("duration", { ms: Math.round(ev.duration_ms) }) : ""].filter(Boolean).join(" · ") }))))));
    }
    box.append(body);
  }

  reload();
}
