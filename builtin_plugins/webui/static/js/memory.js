// Memory: search what the characters remember, browse it by tier, add, edit and delete;
// each memory says which conversation and character it came from.
import { ApiError, del, enc, get, post } from "./api.js";
import { clear, formatTime, h, uid } from "./dom.js";
import { hasRoute } from "./features.js";
import { icon } from "./icons.js";
import { currentLang, formatNumber, t } from "./i18n.js";
import { toast } from "./toast.js";

const TIERS = ["long_term", "short_term", "mid_term", "associative", "knowledge"];

export function memoryView({ app, characters = [] }) {
  const names = Object.fromEntries(characters.map((c) => [c.id, c.name]));
  let titles = {}; // session_id -> title
  const view = { tier: null, label: "", total: 0 };
  const queryId = uid("query");
  const tierId = uid("tier");
  const query = h("input", { id: queryId, type: "search", name: "query", required: true, maxlength: 4000, autocomplete: "off" });
  const tier = h("select", { id: tierId, name: "tier" },
    h("option", { value: "", text: t("allTiers") }),
    TIERS.map((x) => h("option", { value: x, text: t(`tier_${x}`) })));
  const error = h("p", { class: "form-error", role: "alert" });
  const search = h("form", { class: "memory-search", role: "search", onsubmit: (e) => { e.preventDefault(); runSearch(); } },
    h("div", { class: "field grow" }, h("label", { for: queryId, text: t("searchLabel") }), query),
    h("div", { class: "field" }, h("label", { for: tierId, text: t("browse") }), tier),
    h("button", { type: "submit", class: "primary", text: t("search") }));
  const tabs = h("div", { class: "tier-tabs", role: "group", "aria-label": t("browse") });
  const heading = h("h2", { class: "results-title", id: uid("results"), tabindex: "-1" });
  const results = h("ul", { class: "memories", "aria-labelledby": heading.id });
  const newId = uid("new-memory");
  const newBox = h("textarea", { id: newId, rows: 2, maxlength: 4000, required: true });
  const adder = h("form", { class: "memory-add", onsubmit: (e) => { e.preventDefault(); add(); } },
    h("label", { for: newId, text: t("addMemoryLabel") }), newBox,
    h("button", { type: "submit", class: "primary", text: t("addMemory") }));
  const el = h("section", { class: "page memory-page", "aria-labelledby": "memory-title" },
    h("h1", { id: "memory-title", text: t("memory") }),
    h("p", { class: "lead", text: t("memoryIntro") }),
    search, error, adder, tabs, heading, results);

  async function add() {
    const content = newBox.value.trim();
    if (!content) return newBox.focus();
    try {
      await post("/api/v1/memory", { content, tier: "long_term", metadata: { source: "user" } });
    } catch (err) {
      return app.fail(err);
    }
    newBox.value = "";
    toast(t("memorySaved"));
    await loadStats();
    browse("long_term");
  }

  // Edited: the memory is stored anew with the new text (and the old one deleted).
  function edit(m, node) {
    const id = uid("edit-memory");
    const box = h("textarea", { id, rows: 3, maxlength: 4000 });
    box.value = m.content;
    const saved = Array.from(node.childNodes);
    const restore = () => { clear(node).append(...saved); };
    const form = h("form", {
      class: "memory-edit", onsubmit: async (e) => {
        e.preventDefault();
        const content = box.value.trim();
        if (!content || content === m.content) return restore();
        const body = { content, tier: m.tier };
        if (m.session_id) body.session_id = m.session_id;
        if (m.metadata && Object.keys(m.metadata).length) body.metadata = m.metadata;
        try {
          await post("/api/v1/memory", body);
          await del(`/api/v1/memory/${enc(m.memory_id)}`);
        } catch (err) {
          return app.fail(err);
        }
        toast(t("memorySaved"));
        if (view.tier) browse(view.tier); else runSearch();
      },
    }, h("label", { for: id, class: "visually-hidden", text: t("editMemory") }), box,
    h("div", { class: "edit-buttons" },
      h("button", { type: "submit", class: "primary", text: t("save") }),
      h("button", { type: "button", onclick: restore, text: t("cancel") })));
    clear(node).append(form);
    box.focus();
  }
  let listing = false; // the server may have no listing route: then search only

  async function loadStats() {
    let stats;
    try { stats = await get("/api/v1/memory/stats"); } catch (err) { return app.fail(err); }
    const focused = tabs.contains(document.activeElement) ? document.activeElement.dataset.tier : null;
    clear(tabs);
    for (const x of TIERS) {
      const count = stats.tiers[x] || 0;
      tabs.append(h("button", {
        type: "button", class: "tab", "data-tier": x, "aria-pressed": "false",
        onclick: () => browse(x),
      }, t(`tier_${x}`), h("span", { class: "count", text: formatNumber(count) })));
    }
    press(view.tier); // the chosen tab stays chosen
    if (focused) tabs.querySelector(`[data-tier="${focused}"]`)?.focus();
  }

  function press(x) {
    view.tier = x;
    for (const b of tabs.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.tier === x));
  }

  async function browse(x, focus = true) {
    press(x);
    tier.value = x;
    error.textContent = "";
    if (!listing) { query.focus(); return; }
    try {
      const page = await get(`/api/v1/memory?tier=${enc(x)}&limit=50`);
      view.total = page.total ?? page.memories.length;
      view.label = t(`tier_${x}`);
      show(countLabel(), page.memories, focus);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 405)) { listing = false; query.focus(); return; }
      error.textContent = err.userMessage || String(err);
    }
  }

  async function runSearch() {
    error.textContent = "";
    const text = query.value.trim();
    if (!text) { query.focus(); return; }
    const body = { query: text, top_k: 20 };
    if (tier.value) body.tiers = [tier.value];
    press(null);
    try {
      const found = await post("/api/v1/memory/search", body);
      view.total = found.results.length;
      view.label = `${t("search")}: ${text}`;
      show(countLabel(), found.results);
    } catch (err) {
      error.textContent = err instanceof ApiError ? (err.fieldErrors.query || err.userMessage) : String(err);
    }
  }

  function countLabel() {
    return `${view.label} · ${t("memoryCount", { count: formatNumber(view.total) })}`;
  }

  function show(label, items, focus = true) {
    heading.textContent = label;
    clear(results);
    if (!items.length) results.append(h("li", { class: "empty", text: t("noResults") }));
    for (const m of items) results.append(item(m));
    if (focus) heading.focus();
  }

  function item(m) {
    const node = h("li", { class: "memory", "data-tier": m.tier, "data-id": m.memory_id },
      h("p", { class: "memory-meta" },
        h("span", { class: "badge", text: t(`tier_${m.tier}`) }),
        typeof m.score === "number" ? h("span", { class: "score", text: t("score", { score: m.score.toFixed(2) }) }) : null,
        h("time", { datetime: m.created_at, text: formatTime(m.created_at, currentLang()) }),
        m.metadata && names[m.metadata.character] ? h("span", { class: "memory-character", text: t("memoryCharacter", { name: names[m.metadata.character] }) }) : null,
        m.session_id ? h("a", { href: `#/chat/${enc(m.session_id)}`, class: "memory-session", text: t("memorySession", { title: titles[m.session_id] || t("untitled") }) }) : null),
      h("p", { class: "memory-content", text: m.content }),
      h("button", {
        type: "button", class: "icon edit", "aria-label": `${t("editMemory")}: ${m.content.slice(0, 60)}`,
        onclick: () => edit(m, node),
      }, icon("pencil")),
      h("button", {
        type: "button", class: "icon danger", "aria-label": `${t("delete")}: ${m.content.slice(0, 60)}`,
        onclick: async () => {
          if (!window.confirm(t("deleteMemoryConfirm"))) return;
          try {
            await del(`/api/v1/memory/${enc(m.memory_id)}`);
          } catch (err) {
            if (!(err instanceof ApiError && err.status === 404)) return app.fail(err);
          }
          node.remove();
          view.total = Math.max(0, view.total - 1);
          heading.textContent = countLabel();
          if (!results.children.length) results.append(h("li", { class: "empty", text: t("noResults") }));
          toast(t("deleted"));
          loadStats();
        },
      }, icon("trash")));
    return node;
  }

  const sessions = get("/api/v1/chat/sessions?limit=200").then((r) => {
    titles = Object.fromEntries((r.sessions || []).map((x) => [x.session_id, x.title]));
  }).catch(() => {});
  hasRoute("get", "/api/v1/memory").then(async (yes) => {
    await sessions;
    listing = yes;
    await loadStats();
    if (listing) browse("long_term", false);
  });
  setTimeout(() => query.focus(), 0);
  return { el };
}
