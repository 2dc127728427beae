// Memory: search what the characters remember, browse it by tier, delete what should go.
import { ApiError, del, enc, get, post } from "./api.js";
import { clear, formatTime, h, uid } from "./dom.js";
import { hasRoute } from "./features.js";
import { icon } from "./icons.js";
import { currentLang, formatNumber, t } from "./i18n.js";
import { toast } from "./toast.js";

const TIERS = ["long_term", "short_term", "mid_term", "associative", "knowledge"];

export function memoryView({ app }) {
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
  const el = h("section", { class: "page memory-page", "aria-labelledby": "memory-title" },
    h("h1", { id: "memory-title", text: t("memory") }),
    h("p", { class: "lead", text: t("memoryIntro") }),
    search, error, tabs, heading, results);
  let listing = false; // the server may have no listing route: then search only

  async function loadStats() {
    let stats;
    try { stats = await get("/api/v1/memory/stats"); } catch (err) { return app.fail(err); }
    clear(tabs);
    for (const x of TIERS) {
      const count = stats.tiers[x] || 0;
      tabs.append(h("button", {
        type: "button", class: "tab", "data-tier": x, "aria-pressed": "false",
        onclick: () => browse(x),
      }, t(`tier_${x}`), h("span", { class: "count", text: formatNumber(count) })));
    }
  }

  function press(x) {
    for (const b of tabs.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.tier === x));
  }

  async function browse(x, focus = true) {
    press(x);
    tier.value = x;
    error.textContent = "";
    if (!listing) { query.focus(); return; }
    try {
      const page = await get(`/api/v1/memory?tier=${enc(x)}&limit=50`);
      show(`${t(`tier_${x}`)} · ${t("memoryCount", { count: formatNumber(page.total ?? page.memories.length) })}`, page.memories, focus);
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
      show(`${t("search")}: ${text}`, found.results);
    } catch (err) {
      error.textContent = err instanceof ApiError ? (err.fieldErrors.query || err.userMessage) : String(err);
    }
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
        m.session_id ? h("a", { href: `#/chat/${enc(m.session_id)}`, text: t("navChat") }) : null),
      h("p", { class: "memory-content", text: m.content }),
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
          toast(t("deleted"));
          loadStats();
        },
      }, icon("trash")));
    return node;
  }

  hasRoute("get", "/api/v1/memory").then(async (yes) => {
    listing = yes;
    await loadStats();
    if (listing) browse("long_term", false);
  });
  setTimeout(() => query.focus(), 0);
  return { el };
}
