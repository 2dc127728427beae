// The chat: conversations on the side, messages streaming in over the WebSocket, one
// bubble per character, tool calls as cards, nominating a character by picker or name.
import { ApiError, api, del, enc, get, patch, post } from "./api.js";
import { avatar, colourOf, localized, nominee } from "./characters.js";
import { clear, formatTime, h, uid } from "./dom.js";
import { currentLang, t } from "./i18n.js";
import { hasRoute } from "./features.js";
import { icon } from "./icons.js";
import { renderMarkdown } from "./markdown.js";
import { toolCallLine, toolCard } from "./tools.js";
import { toast } from "./toast.js";

const PAGE = 100;

export function chatView({ app, socket, characters: all, sessionId }) {
  const characters = localized(all);
  const byId = Object.fromEntries(characters.map((c) => [c.id, c]));
  const state = { sessionId: sessionId || null, messages: [], sessions: [], sessionsLoaded: false, hasEarlier: false, canRename: false };
  // request_id -> { sessionId, text, sentAt, anchor, bubbles: Map(character -> bubble), userEl, typing, cancelling }
  const pending = new Map();
  let loads = 0; // history requests in flight
  let resyncing = 0; // reconnections whose replies are being looked for

  // ---- layout ----------------------------------------------------------------------
  const list = h("ul", { class: "session-list" });
  const filterId = uid("filter");
  const filter = h("input", { id: filterId, type: "search", class: "session-filter", autocomplete: "off", oninput: () => renderSessions() });
  const sidebar = h("aside", { class: "sessions", id: uid("sessions"), "aria-label": t("sessions") },
    h("div", { class: "sessions-head" },
      h("h2", { text: t("sessions") }),
      h("button", { type: "button", class: "primary new-chat", onclick: () => { toggleDrawer(false); openSession(null); input.focus(); } }, icon("plus"), h("span", { text: t("newChat") }))),
    h("div", { class: "session-search" }, h("label", { for: filterId, class: "visually-hidden", text: t("searchConversations") }), filter),
    list);
  filter.placeholder = t("searchConversations");
  const drawerToggle = h("button", {
    type: "button", class: "drawer-toggle", "aria-controls": sidebar.id, "aria-expanded": "false",
    "aria-label": t("sessions"), onclick: () => toggleDrawer(),
  }, icon("menu", 20));
  const title = h("h1", { class: "conv-title", id: uid("title") });
  const connection = h("span", { class: "connection", role: "status" });
  const exporter = h("details", { class: "export" },
    h("summary", { text: t("export") }),
    h("div", { class: "export-menu" },
      h("button", { type: "button", onclick: () => download("markdown"), text: t("exportMarkdown") }),
      h("button", { type: "button", onclick: () => download("json"), text: t("exportJson") })));

  async function download(format) {
    exporter.open = false;
    if (!state.sessionId) return;
    let blob;
    try {
      blob = await api("GET", `/api/v1/chat/sessions/${enc(state.sessionId)}/export?format=${format}`, undefined, { blob: true, accept: "*/*" });
    } catch (err) {
      return app.fail(err);
    }
    const url = URL.createObjectURL(blob);
    const name = `${(title.textContent || "conversation").replace(/[\\/:*?"<>|]+/g, "_").slice(0, 80)}.${format === "json" ? "json" : "md"}`;
    const a = h("a", { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
  const roster = h("div", { class: "roster", role: "group", "aria-label": t("characters") },
    characters.map((c) => h("button", {
      // a shortcut for the mouse; the keyboard has the "who answers" list in the composer
      type: "button", class: "who", "data-character": c.id, title: c.description || c.name, tabindex: "-1",
      vars: { "--who": colourOf(c.id) }, onclick: () => { picker.value = c.id; updateNominee(); input.focus(); },
    }, avatar(c, 28), h("span", { text: c.name }))));
  const messages = h("ol", { class: "messages", role: "log", "aria-live": "polite", "aria-labelledby": title.id, tabindex: "0" });
  const earlier = h("button", { type: "button", class: "link earlier", hidden: true, onclick: () => loadEarlier(), text: t("loadEarlier") });
  const scroller = h("div", { class: "scroller" }, earlier, messages);

  const pickerId = uid("picker");
  const picker = h("select", { id: pickerId, name: "character", onchange: () => { updateNominee(); saveDraft(); } },
    h("option", { value: "", text: t("auto") }),
    characters.map((c) => h("option", { value: c.id, text: c.name })));
  const inputId = uid("message");
  const input = h("textarea", {
    id: inputId, name: "message", rows: 2, placeholder: t("composerPlaceholder"), required: true,
    maxlength: 16000, autocomplete: "off",
    oninput: () => { updateNominee(); saveDraft(); },
    onkeydown: (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        form.requestSubmit();
      }
    },
  });
  const chip = h("p", { class: "nominee", "aria-live": "polite" });
  const sendBtn = h("button", { type: "submit", class: "primary send", text: t("send") });
  const stopBtn = h("button", { type: "button", class: "stop", hidden: true, onclick: () => cancelAll(), text: t("stop") });
  const form = h("form", { class: "composer", onsubmit: (e) => { e.preventDefault(); send(); } },
    h("div", { class: "composer-who" }, h("label", { for: pickerId, text: t("whoAnswers") }), picker, chip),
    h("label", { for: inputId, class: "visually-hidden", text: t("composerLabel") }),
    h("div", { class: "composer-row" }, input, h("div", { class: "composer-buttons" }, sendBtn, stopBtn)));

  const conversation = h("section", { class: "conversation", "aria-labelledby": title.id },
    h("div", { class: "conv-head" }, drawerToggle, title, exporter, connection), roster, scroller, form);
  const el = h("div", { class: "chat" }, sidebar, conversation);
  conversation.addEventListener("click", (e) => closeOnTap(e), true);

  // The draft and the picker's choice outlive a reload (this tab only: sessionStorage).
  function draftKey() {
    return `llmmc.draft.${state.sessionId || "new"}`;
  }
  function saveDraft() {
    try {
      if (input.value) sessionStorage.setItem(draftKey(), input.value); else sessionStorage.removeItem(draftKey());
      if (picker.value) sessionStorage.setItem("llmmc.picker", picker.value); else sessionStorage.removeItem("llmmc.picker");
    } catch { /* storage refused: drafts are not kept */ }
  }
  function restoreDraft() {
    try {
      input.value = sessionStorage.getItem(draftKey()) || "";
      const chosen = sessionStorage.getItem("llmmc.picker");
      if (chosen && byId[chosen]) picker.value = chosen;
    } catch { /* nothing kept */ }
    updateNominee();
  }

  // ---- sessions --------------------------------------------------------------------
  function toggleDrawer(open) {
    const was = el.classList.contains("drawer-open");
    const next = open ?? !was;
    el.classList.toggle("drawer-open", next);
    drawerToggle.setAttribute("aria-expanded", String(next));
    if (next) sidebar.querySelector("button")?.focus();
    else if (was && sidebar.contains(document.activeElement)) drawerToggle.focus();
  }
  sidebar.addEventListener("keydown", (e) => { if (e.key === "Escape") toggleDrawer(false); });
  // on a phone, a tap beside the open drawer closes it (and does nothing else)
  function closeOnTap(e) {
    if (!el.classList.contains("drawer-open") || sidebar.contains(e.target) || drawerToggle.contains(e.target)) return;
    e.preventDefault();
    e.stopPropagation();
    toggleDrawer(false);
  }

  async function loadSessions() {
    try {
      state.sessions = (await get("/api/v1/chat/sessions?limit=200")).sessions;
    } catch (err) {
      return app.fail(err);
    }
    state.sessionsLoaded = true;
    renderSessions();
  }

  // The list is one tab stop: the current conversation (else the first) takes focus, the
  // arrow keys, Home and End move it, Enter opens; a row's buttons follow its link.
  list.addEventListener("keydown", (e) => {
    const links = Array.from(list.querySelectorAll("a.session-open"));
    const at = links.indexOf(document.activeElement);
    if (at < 0) return;
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: links.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    rove(links[Math.max(0, Math.min(links.length - 1, to))]);
  });
  list.addEventListener("focusin", (e) => {
    const link = e.target.closest("li.session")?.querySelector("a.session-open");
    if (link && link.tabIndex !== 0) rove(link, false);
  });

  function rove(link, focus = true) {
    for (const item of list.querySelectorAll("li.session")) {
      const mine = item.contains(link);
      for (const el of item.querySelectorAll("a, button")) el.tabIndex = mine ? 0 : -1;
    }
    if (focus) link.focus();
  }

  function renderSessions() {
    const hadFocus = list.contains(document.activeElement) ? document.activeElement.closest("li.session")?.dataset.session : null;
    clear(list);
    if (!state.sessions.length && state.sessionsLoaded) list.append(h("li", { class: "empty", text: t("noSessions") }));
    const words = filter.value.trim().toLowerCase();
    const shown = words ? state.sessions.filter((s) => titleOf(s).toLowerCase().includes(words)) : state.sessions;
    if (words && !shown.length) list.append(h("li", { class: "empty", text: t("noResults") }));
    let group = null;
    for (const s of shown) {
      const g = dateGroup(s.updated_at || s.created_at);
      if (g !== group) {
        group = g;
        list.append(h("li", { class: "session-group", text: t(`group_${g}`) }));
      }
      const current = s.session_id === state.sessionId;
      const open = h("a", {
        href: `#/chat/${enc(s.session_id)}`, class: "session-open", "aria-current": current ? "page" : null,
        onclick: () => toggleDrawer(false),
      }, h("span", { class: "session-title", text: titleOf(s) }),
      h("span", { class: "session-time", text: formatTime(s.updated_at, currentLang()) }));
      const item = h("li", { class: ["session", current && "current"], "data-session": s.session_id }, open,
        h("div", { class: "session-actions" },
          state.canRename ? h("button", { type: "button", class: "icon", "aria-label": `${t("rename")}: ${titleOf(s)}`, title: t("rename"), onclick: () => rename(s, item) }, icon("pencil")) : null,
          h("button", { type: "button", class: "icon danger", "aria-label": `${t("delete")}: ${titleOf(s)}`, title: t("delete"), onclick: () => remove(s) }, icon("trash"))));
      list.append(item);
    }
    const links = Array.from(list.querySelectorAll("a.session-open"));
    const keep = hadFocus && list.querySelector(`li.session[data-session="${CSS.escape(hadFocus)}"] a.session-open`);
    const active = keep || list.querySelector("li.session.current a.session-open") || links[0];
    if (active) rove(active, Boolean(keep));
  }

  function rename(s, item) {
    const id = uid("rename");
    const field = h("input", { id, value: s.title || "", maxlength: 200, required: true });
    const error = h("p", { class: "field-error", id: `${id}-error` });
    field.setAttribute("aria-describedby", error.id);
    const done = () => renderSessions();
    const editor = h("form", {
      class: "rename", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const updated = await patch(`/api/v1/chat/sessions/${enc(s.session_id)}`, { title: field.value });
          Object.assign(s, updated);
          if (s.session_id === state.sessionId) title.textContent = titleOf(s);
          done();
          list.querySelector(`[data-session="${CSS.escape(s.session_id)}"] .session-open`)?.focus();
        } catch (err) {
          error.textContent = err instanceof ApiError ? (err.fieldErrors.title || err.userMessage) : String(err);
          field.setAttribute("aria-invalid", "true");
        }
      },
    }, h("label", { for: id, class: "visually-hidden", text: t("renamePrompt") }), field,
    h("button", { type: "submit", class: "primary", text: t("save") }),
    h("button", { type: "button", onclick: done, text: t("cancel") }), error);
    field.addEventListener("keydown", (e) => { if (e.key === "Escape") done(); });
    clear(item).append(editor);
    field.focus();
    field.select();
  }

  async function remove(s) {
    if (!window.confirm(t("deleteSessionConfirm", { title: titleOf(s) }))) return;
    try {
      await del(`/api/v1/chat/sessions/${enc(s.session_id)}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) return app.fail(err);
    }
    state.sessions = state.sessions.filter((x) => x.session_id !== s.session_id);
    if (s.session_id === state.sessionId) openSession(null);
    else renderSessions();
    toast(t("deleted"));
  }

  function openSession(id) {
    if (id) window.location.hash = `#/chat/${enc(id)}`;
    else if (window.location.hash !== "#/chat") window.location.hash = "#/chat";
    else showSession(null);
  }

  // ---- messages --------------------------------------------------------------------
  async function showSession(id) {
    state.sessionId = id;
    state.messages = [];
    state.hasEarlier = false;
    restoreDraft();
    exporter.hidden = !id;
    clear(messages);
    renderSessions();
    const s = state.sessions.find((x) => x.session_id === id);
    title.textContent = id ? (s ? titleOf(s) : t("loading")) : t("newChat");
    if (!id) {
      messages.append(h("li", { class: "empty-chat" },
        h("p", { class: "hint", text: t("emptyChat") }),
        h("ul", { class: "intro" }, characters.map((c) => h("li", { class: "intro-card", vars: { "--who": colourOf(c.id) } },
          avatar(c, 44), h("div", null, h("strong", { text: c.name }), h("p", { text: c.description || "" })))))));
      earlier.hidden = true;
      input.focus();
      return;
    }
    await loadHistory();
    if (!s) {
      await firstSessions;
      if (!state.sessions.some((x) => x.session_id === id)) await loadSessions();
      const found = state.sessions.find((x) => x.session_id === id);
      if (found && id === state.sessionId) title.textContent = titleOf(found);
    }
    input.focus();
  }

  // ``settle(page)`` runs after the page arrives and before it is shown.
  async function loadHistory(settle) {
    const id = state.sessionId;
    if (!id) return;
    let page;
    loads += 1;
    busy();
    try {
      page = await get(`/api/v1/chat/history/${enc(id)}?limit=${PAGE}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        title.textContent = t("notFound");
        clear(messages).append(h("li", { class: "hint", text: t("notFound") }));
        return;
      }
      return app.fail(err);
    } finally {
      loads -= 1;
      busy();
    }
    if (id !== state.sessionId) return;
    // keep what is already loaded before the page (after "load earlier")
    const first = page.messages[0];
    const at = first ? state.messages.findIndex((m) => m.message_id === first.message_id) : -1;
    state.messages = at > 0 ? [...state.messages.slice(0, at), ...page.messages] : page.messages;
    if (at <= 0 && !state.hasEarlier) state.hasEarlier = page.messages.length >= PAGE;
    if (settle) settle();
    renderMessages();
  }

  async function loadEarlier() {
    const first = state.messages[0];
    if (!first) return;
    try {
      const page = await get(`/api/v1/chat/history/${enc(state.sessionId)}?limit=${PAGE}&before=${enc(first.message_id)}`);
      state.messages = [...page.messages, ...state.messages];
      state.hasEarlier = page.messages.length >= PAGE;
      const height = scroller.scrollHeight;
      clear(messages);
      renderMessages();
      scroller.scrollTop = scroller.scrollHeight - height;
    } catch (err) {
      app.fail(err);
    }
  }

  // New messages only ever arrive at the end: keep the nodes that match, replace the rest
  // (streamed bubbles become the stored messages), so a screen reader hears only what is new.
  // What the server did not store stays on screen: a stopped or failed turn's message,
  // partial reply and the note saying so, or a reply still running on the server after a
  // reconnect ("provisional": until the history has something after it). Those nodes carry
  // data-after, the stored message they follow ("^": the start), and stay right after it.
  function renderMessages() {
    const stick = nearBottom();
    earlier.hidden = !state.hasEarlier;
    let locals = Array.from(messages.querySelectorAll(":scope > li[data-after]"));
    for (const n of locals) if (n.dataset.provisional && storedAfter(n.dataset.after).length) n.remove();
    locals = locals.filter((n) => n.isConnected);
    const nodes = Array.from(messages.children).filter((n) => !n.dataset.after);
    let keep = 0;
    while (keep < nodes.length && keep < state.messages.length && nodes[keep].dataset.id === state.messages[keep].message_id
      && nodes[keep].dataset.sig === signature(state.messages[keep])) keep += 1;
    for (const node of nodes.slice(keep)) if (!node.dataset.request || !pending.has(node.dataset.request)) node.remove();
    const tail = nodes.slice(keep).filter((n) => n.isConnected);
    state.messages.slice(keep).forEach((m) => {
      const node = messageNode(m);
      if (!node) return;
      node.dataset.sig = signature(m);
      messages.insertBefore(node, tail[0] || null);
    });
    placeLocals(locals);
    markLastReply();
    if (stick) scrollDown();
  }

  // Each local node right after its anchor (or the local before it with the same anchor);
  // one already there is left alone, so a screen reader does not hear it again.
  function placeLocals(locals) {
    let anchor = null;
    let prev = null;
    for (const n of locals) {
      if (n.dataset.after !== anchor) {
        anchor = n.dataset.after;
        prev = anchor === "^" ? "start" : messages.querySelector(`:scope > li[data-id="${CSS.escape(anchor)}"]`);
      }
      if (prev === "start") { if (messages.firstElementChild !== n) messages.prepend(n); }
      else if (prev) { if (n.previousElementSibling !== prev) prev.after(n); }
      else if (n.nextElementSibling) messages.append(n); // its message is not loaded yet
      prev = n;
    }
  }

  // The stored messages after ``anchor`` (all of them for "^" or an id not loaded).
  function storedAfter(anchor) {
    const at = state.messages.findIndex((m) => m.message_id === anchor);
    return state.messages.slice(at + 1);
  }

  function lastStoredId() {
    const last = state.messages[state.messages.length - 1];
    return last ? last.message_id : "^";
  }

  // Keep ``nodes`` (in this order) after the stored message ``anchor`` from now on.
  function keepLocal(nodes, anchor, provisional = false) {
    for (const n of nodes) {
      n.dataset.after = anchor;
      if (provisional) n.dataset.provisional = "true";
      else delete n.dataset.provisional;
    }
  }

  // A request's nodes on screen, in order (its message, bubbles, tool lines, typing dots).
  function turnNodes(requestId) {
    return Array.from(messages.children).filter((n) => n.dataset.request === requestId);
  }

  // What a stored message's node shows: a node whose message changed (edited, continued,
  // another alternative chosen) is drawn again; any other stays (a screen reader would
  // read a node put back again).
  function signature(m) {
    return [m.status || "", (m.content || "").length, (m.alternatives || []).join(",")].join("|");
  }

  // Only the last reply can be continued.
  function markLastReply() {
    const last = state.messages[lastReplyIndex()];
    for (const b of messages.querySelectorAll(":scope > li.assistant .act-forward")) {
      b.hidden = !last || b.closest("li").dataset.id !== last.message_id;
    }
  }

  function lastReplyIndex() {
    for (let i = state.messages.length - 1; i >= 0; i -= 1) {
      const m = state.messages[i];
      if (m.role === "assistant" && m.content) return i;
      if (m.role === "user") return -1;
    }
    return -1;
  }

  function actionButton(name, label, onclick, extra = {}) {
    return h("button", { type: "button", class: `icon act act-${name}`, "aria-label": label, title: label, onclick, ...extra }, icon(name));
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      toast(t("copied"));
    } catch {
      toast(t("copyFailed"), "error");
    }
  }

  // A copy button on each code block of a rendered message.
  function decorate(body) {
    for (const pre of body.querySelectorAll("pre")) {
      if (pre.parentNode.classList.contains("code-block")) continue;
      const code = pre.textContent;
      const wrap = h("div", { class: "code-block" });
      pre.replaceWith(wrap);
      wrap.append(pre, actionButton("copy", t("copyCode"), () => copyText(code), { class: "icon act code-copy" }));
    }
    return body;
  }

  function userActions(m) {
    return h("div", { class: "actions", role: "group", "aria-label": t("messageActions") },
      actionButton("copy", t("copy"), () => copyText(m.content)),
      actionButton("pencil", t("editMessage"), (e) => editMessage(m, e.currentTarget.closest("li"))),
      actionButton("trash", t("deleteMessage"), () => deleteMessage(m)));
  }

  function replyActions(m, c) {
    const alts = m.alternatives || [];
    const at = alts.indexOf(m.message_id);
    const nav = alts.length > 1 ? h("span", { class: "alts" },
      actionButton("left", t("previousReply"), () => selectReply(alts[at - 1]), { disabled: at <= 0 }),
      h("span", { class: "alt-count", text: `${at + 1}/${alts.length}` }),
      actionButton("right", t("nextReply"), () => selectReply(alts[at + 1]), { disabled: at >= alts.length - 1 })) : null;
    return h("div", { class: "actions", role: "group", "aria-label": t("messageActions") },
      actionButton("copy", t("copy"), () => copyText(m.content)),
      actionButton("refresh", t("regenerate"), () => regenerate(m)),
      actionButton("forward", t("continueReply"), () => continueReply(m, c)),
      actionButton("trash", t("deleteMessage"), () => deleteMessage(m)),
      nav);
  }

  function messageNode(m) {
    if (m.role === "user") {
      return h("li", { class: "msg user", "data-id": m.message_id },
        h("div", { class: "bubble" },
          h("p", { class: "meta" }, h("span", { class: "visually-hidden", text: `${t("you")}: ` }), h("time", { datetime: m.created_at, text: formatTime(m.created_at, currentLang()) })),
          h("div", { class: "body plain", text: m.content }),
          userActions(m)));
    }
    if (m.role === "tool") {
      return h("li", { class: "msg tool", "data-id": m.message_id, "data-tool": m.tool_name || "" }, toolCard(m));
    }
    const c = byId[m.character] || { id: m.character || "?", name: m.character || "?" };
    const calls = (m.tool_calls || []).map((call) => toolCallLine(call, c));
    if (!m.content && calls.length) {
      return h("li", { class: "msg calls", "data-id": m.message_id, "data-character": c.id, vars: { "--who": colourOf(c.id) } }, calls);
    }
    const node = characterBubble(c, m.created_at);
    node.dataset.id = m.message_id;
    if (m.status && m.status !== "complete") {
      node.classList.add(m.status);
      node.querySelector(".meta").append(h("span", { class: "status-mark", text: t(`status_${m.status}`) }));
    }
    const body = node.querySelector(".body");
    body.append(renderMarkdown(m.content));
    decorate(body);
    if (calls.length) node.querySelector(".bubble").append(...calls);
    node.querySelector(".bubble").append(replyActions(m, c));
    return node;
  }

  function characterBubble(c, createdAt) {
    return h("li", { class: "msg assistant", "data-character": c.id, vars: { "--who": colourOf(c.id) } },
      avatar(c),
      h("div", { class: "bubble" },
        h("p", { class: "meta" }, h("span", { class: "name", text: c.name }),
          createdAt ? h("time", { datetime: createdAt, text: formatTime(createdAt, currentLang()) }) : null),
        h("div", { class: "body" })));
  }

  // ---- message actions -------------------------------------------------------------
  // A REST action that changes the conversation: the history is read again afterwards.
  async function act(run, after) {
    loads += 1;
    busy();
    const typing = h("li", { class: "msg typing", "aria-hidden": "true" }, h("span", { class: "dots" }, h("span"), h("span"), h("span")));
    if (after) after.after(typing);
    try {
      await run();
    } catch (err) {
      app.fail(err);
    } finally {
      typing.remove();
      loads -= 1;
      busy();
    }
    await loadHistory();
  }

  function selectReply(id) {
    if (!id) return;
    act(() => post(`/api/v1/chat/messages/${enc(id)}/select`));
  }

  function continueReply(m, c) {
    const node = messages.querySelector(`:scope > li[data-id="${CSS.escape(m.message_id)}"]`);
    act(() => post(`/api/v1/chat/sessions/${enc(state.sessionId)}/continue`, { character: c.id }), node);
  }

  // A user message goes with the replies that answered it; a reply alone (its next
  // alternative, if any, is shown instead). Asked first: nothing brings it back.
  function deleteMessage(m) {
    const user = m.role === "user";
    if (!window.confirm(t(user ? "deleteMessageConfirm" : "deleteReplyConfirm"))) return;
    const gone = (x) => x.message_id === m.message_id || (user && x.reply_to === m.message_id);
    act(async () => {
      await del(`/api/v1/chat/messages/${enc(m.message_id)}`);
      state.messages = state.messages.filter((x) => !gone(x));
      toast(t("messageDeleted"));
    });
  }

  // A new reply streams over the socket in place of this one; the old one stays an alternative.
  function regenerate(m) {
    const node = messages.querySelector(`:scope > li[data-id="${CSS.escape(m.message_id)}"]`);
    const requestId = crypto.randomUUID();
    const typing = h("li", { class: "msg typing", "data-request": requestId, "aria-hidden": "true" },
      h("span", { class: "dots" }, h("span"), h("span"), h("span")));
    if (node) node.after(typing); else messages.append(typing);
    const frame = { type: "regenerate", message_id: m.message_id, request_id: requestId };
    pending.set(requestId, {
      sessionId: state.sessionId, text: "", sentAt: Date.now(), anchor: lastStoredId(), frame,
      bubbles: new Map(), userEl: h("li"), typing, cancelling: false,
    });
    busy();
    socket.send(frame);
  }

  function editMessage(m, item) {
    if (!item) return;
    const id = uid("edit");
    const box = h("textarea", { id, rows: 3, maxlength: 16000, required: true });
    box.value = m.content;
    const bubble = item.querySelector(".bubble");
    const saved = Array.from(bubble.childNodes);
    const restore = () => { clear(bubble).append(...saved); bubble.querySelector(".act-pencil")?.focus(); };
    const editor = h("form", {
      class: "edit-message", onsubmit: (e) => {
        e.preventDefault();
        const content = box.value.trim();
        if (!content) return;
        if (content === m.content) return restore();
        clear(bubble).append(h("div", { class: "body plain", text: content }));
        // what came after it goes: the server removes it and answers again
        let next = item.nextElementSibling;
        while (next) { const n = next.nextElementSibling; next.remove(); next = n; }
        act(() => patch(`/api/v1/chat/messages/${enc(m.message_id)}`, { content }), item);
      },
    }, h("label", { for: id, class: "visually-hidden", text: t("editMessage") }), box,
    h("div", { class: "edit-buttons" },
      h("button", { type: "submit", class: "primary", text: t("saveAndResend") }),
      h("button", { type: "button", onclick: restore, text: t("cancel") })));
    box.addEventListener("keydown", (e) => { if (e.key === "Escape") restore(); });
    clear(bubble).append(editor);
    box.focus();
  }

  // ---- sending and streaming -------------------------------------------------------
  function updateNominee() {
    const chosen = picker.value ? byId[picker.value] : nominee(input.value, characters);
    chip.textContent = chosen ? t("nominated", { name: chosen.name }) : "";
    chip.style.setProperty("--who", chosen ? colourOf(chosen.id) : "transparent");
    return chosen;
  }

  function send() {
    const text = input.value.trim();
    if (!text) return;
    const chosen = updateNominee();
    const requestId = crypto.randomUUID();
    // the same id goes with every resend: the server starts the turn once
    const frame = { type: "chat", message: text, request_id: requestId, client_message_id: requestId };
    if (state.sessionId) frame.session_id = state.sessionId;
    if (chosen) frame.character = chosen.id;
    messages.querySelector(".empty-chat")?.remove();
    const userEl = h("li", { class: "msg user", "data-request": requestId },
      h("div", { class: "bubble" }, h("p", { class: "meta visually-hidden", text: `${t("you")}:` }), h("div", { class: "body plain", text })));
    messages.append(userEl);
    const typing = h("li", { class: "msg typing", "data-request": requestId, "aria-hidden": "true" },
      h("span", { class: "dots" }, h("span"), h("span"), h("span")));
    messages.append(typing);
    pending.set(requestId, {
      sessionId: state.sessionId, text, sentAt: Date.now(), anchor: lastStoredId(), frame,
      bubbles: new Map(), userEl, typing, cancelling: false,
    });
    input.value = "";
    picker.value = "";
    saveDraft();
    updateNominee();
    busy();
    scrollDown();
    if (!socket.send(frame)) markPending(userEl, true);
  }

  // A message that waits for the connection says so until it has gone out.
  function markPending(userEl, on) {
    userEl.classList.toggle("pending", on);
    userEl.querySelector(".pending-mark")?.remove();
    if (on) userEl.querySelector(".bubble").append(h("p", { class: "pending-mark", text: t("pendingSend") }));
  }

  // aria-busy while replies stream or the history is being brought up to date
  function busy() {
    stopBtn.hidden = pending.size === 0;
    conversation.setAttribute("aria-busy", String(pending.size > 0 || loads > 0 || resyncing > 0));
  }

  function bubbleFor(p, requestId, characterId) {
    let b = p.bubbles.get(characterId);
    if (!b) {
      const c = byId[characterId] || { id: characterId, name: characterId };
      const node = characterBubble(c, null);
      node.dataset.request = requestId;
      node.classList.add("streaming");
      node.setAttribute("aria-busy", "true");
      b = { node, body: node.querySelector(".body"), raw: "", frame: 0 };
      p.bubbles.set(characterId, b);
      const stick = nearBottom();
      messages.insertBefore(node, p.typing.parentNode === messages ? p.typing : null);
      if (stick) scrollDown();
    }
    return b;
  }

  function paint(b) {
    if (!b.painted) {
      // the first token shows at once; later ones at most once a frame
      b.painted = true;
      clear(b.body).append(renderMarkdown(b.raw));
      return;
    }
    if (b.frame) return;
    b.frame = requestAnimationFrame(() => {
      b.frame = 0;
      const stick = nearBottom();
      clear(b.body).append(renderMarkdown(b.raw));
      if (stick) scrollDown();
    });
  }

  // The server made the conversation for the first message: it is in the URL and the list.
  function adoptSession(id) {
    if (!id || state.sessionId) return;
    state.sessionId = id;
    window.history.replaceState(null, "", `#/chat/${enc(id)}`);
    for (const p of pending.values()) if (!p.sessionId) p.sessionId = id;
    refreshSessions();
  }

  function refreshSessions() {
    return loadSessions().then(() => { title.textContent = currentTitle(); });
  }

  function onFrame(frame) {
    if (frame.type === "reconnected") {
      for (const id of frame.resent || []) { const q = pending.get(id); if (q) markPending(q.userEl, false); }
      return resync(new Set(frame.resent || []));
    }
    const p = frame.request_id ? pending.get(frame.request_id) : null;
    if (!p) return;
    const here = !p.sessionId || p.sessionId === state.sessionId;
    if (frame.type === "start") {
      if (!p.sessionId) { adoptSession(frame.session_id); p.sessionId = frame.session_id; }
      if (here) {
        const b = bubbleFor(p, frame.request_id, frame.character);
        if (p.resent) b.raw = ""; // a resent message's stored reply comes whole: it replaces what was shown
      }
    } else if (frame.type === "chunk") {
      if (!here) return;
      const b = bubbleFor(p, frame.request_id, frame.character);
      b.raw += frame.data;
      paint(b);
    } else if (frame.type === "tool") {
      if (!here) return;
      // the call has run; its card comes with the stored history when the reply completes
      const c = byId[frame.character] || { id: frame.character, name: frame.character };
      const line = h("li", { class: "msg calls live", "data-request": frame.request_id, "data-character": c.id, vars: { "--who": colourOf(c.id) } },
        toolCallLine({ function: { name: frame.name, arguments: frame.arguments } }, c));
      const stick = nearBottom();
      messages.insertBefore(line, p.typing.parentNode === messages ? p.typing : null);
      const b = p.bubbles.get(frame.character);
      if (b && !b.raw) { b.node.remove(); p.bubbles.delete(frame.character); }
      if (stick) scrollDown();
    } else if (frame.type === "complete") {
      if (!p.sessionId) { adoptSession(frame.session_id); p.sessionId = frame.session_id; }
      if (frame.cancelled) stopped(frame.request_id, p, frame.replies || []);
      else finish(frame.request_id);
      if (p.sessionId === state.sessionId) loadHistory();
      refreshSessions();
    } else if (frame.type === "error") {
      // a cancel that came after the reply had finished: its "complete" tells the rest
      if (p.cancelling && frame.code === "BAD_MESSAGE") return;
      // a resent message whose turn still runs on the server: its reply comes with the history
      if (frame.code === "TURN_IN_PROGRESS") return follow([[frame.request_id, p]]);
      failed(frame.request_id, p, frame);
    }
  }

  function currentTitle() {
    const s = state.sessions.find((x) => x.session_id === state.sessionId);
    return s ? titleOf(s) : t("newChat");
  }

  // The request is over: its bubbles show their final text.
  function finish(requestId) {
    const p = pending.get(requestId);
    if (!p) return;
    pending.delete(requestId);
    p.typing.remove();
    for (const b of p.bubbles.values()) settleBubble(b);
    busy();
  }

  function settleBubble(b) {
    b.node.classList.remove("streaming");
    b.node.removeAttribute("aria-busy");
    if (b.frame) { cancelAnimationFrame(b.frame); b.frame = 0; clear(b.body).append(renderMarkdown(b.raw)); }
  }

  // Stopped: the server kept the replies in ``replies`` (and then the user's message), not
  // the one it was writing. What it did not keep stays on screen with a note saying so.
  function stopped(requestId, p, replies) {
    const nodes = turnNodes(requestId);
    finish(requestId);
    if (p.sessionId && p.sessionId !== state.sessionId) return;
    const kept = new Set(replies.map((r) => r.character));
    const unsaved = nodes.filter((n) => n.isConnected && (n === p.userEl ? !replies.length : !kept.has(n.dataset.character)));
    const note = h("li", { class: "msg note", text: unsaved.length ? t("stoppedUnsaved") : t("cancelled") });
    placeAfter(nodes, note);
    keepLocal([...unsaved, note], replies.length ? replies[replies.length - 1].message_id : lastStoredId());
    busy();
  }

  // ``note`` goes after what is still shown of a request's ``nodes`` (else at the end).
  function placeAfter(nodes, note) {
    const last = nodes.filter((n) => n.isConnected).pop();
    if (last) last.after(note);
    else messages.append(note);
  }

  function failed(requestId, p, frame) {
    const error = new ApiError(frame.status || (frame.code === "RATE_LIMITED" ? 429 : 500), { code: frame.code, detail: frame.message }, frame.retry_after ?? null);
    const nodes = turnNodes(requestId);
    const started = p.bubbles.size > 0 || nodes.some((n) => n.classList.contains("calls"));
    finish(requestId);
    const text = error.status === 429 ? `${error.userMessage} ${frame.message || ""}`.trim() : error.userMessage;
    if (p.sessionId && p.sessionId !== state.sessionId) return toast(text, "error");
    const note = h("li", { class: "msg error", role: "alert", text });
    const shown = nodes.filter((n) => n.isConnected);
    placeAfter(nodes, note);
    if (!started) {
      // nothing of it was stored: give the text back so nothing is lost
      p.userEl.classList.add("failed");
      if (!input.value) input.value = p.text;
      keepLocal([...shown, note], lastStoredId());
    } else {
      // an earlier character's reply may have been stored (and the message with it): keep
      // on screen what the history does not have, after what it has
      keepLocal([...shown, note], p.anchor);
      if (p.sessionId === state.sessionId) {
        loadHistory(() => {
          const after = storedAfter(p.anchor);
          const kept = new Set(after.filter((m) => m.role === "assistant" && m.content).map((m) => m.character));
          for (const n of shown) {
            if (n === p.userEl ? after.some((m) => m.role === "user") : kept.has(n.dataset.character)) n.remove();
          }
          const rest = [...shown, note].filter((n) => n.isConnected);
          keepLocal(rest, after.length ? after[after.length - 1].message_id : p.anchor);
        });
      }
    }
    scrollDown();
  }

  function cancelAll() {
    for (const [requestId, p] of pending) {
      if (socket.unqueue((f) => f.type === "chat" && f.request_id === requestId)) {
        // it never went out: take it back
        for (const n of turnNodes(requestId)) n.remove();
        finish(requestId);
        if (!input.value) input.value = p.text;
      } else if (!p.cancelling) {
        p.cancelling = true;
        sendCancel(requestId, 0);
      }
    }
  }

  // While a stopped reply goes on, Stop is sent again (servers before 2026-12-06 could
  // lose a cancel: docs/webui.md, "Known problems"); once it has worked, nothing is sent.
  function sendCancel(requestId, tries) {
    if (!pending.has(requestId)) return;
    socket.send({ type: "cancel", request_id: requestId });
    if (tries < 5) setTimeout(() => sendCancel(requestId, tries + 1), 2000);
  }

  // The socket came back. Requests sent on the old one went on on the server and are
  // stored when done (those in ``resent`` were only queued and went out just now: they
  // stream as usual). What was shown of them stays, "provisional", until the history has
  // the reply; the history is read again until the conversation stops growing.
  async function resync(resent) {
    const lost = Array.from(pending.entries()).filter(([id]) => !resent.has(id));
    if (!lost.length) return;
    // a chat message is sent again with its client_message_id: the server answers with the
    // stored turn, starts it if it never arrived, or says the turn still runs
    const again = lost.filter(([, p]) => p.frame && p.frame.type === "chat" && !p.resent);
    for (const [, p] of again) { p.resent = true; socket.send(p.frame); }
    await follow(lost.filter((x) => !again.includes(x)));
  }

  async function follow(lost) {
    if (!lost.length) return;
    resyncing += 1;
    for (const [requestId, p] of lost) {
      const nodes = turnNodes(requestId);
      pending.delete(requestId);
      for (const b of p.bubbles.values()) { settleBubble(b); b.node.setAttribute("aria-busy", "true"); }
      keepLocal(nodes, p.anchor, true);
      if (!p.sessionId) {
        await loadSessions();
        const recent = state.sessions.find((s) => Date.parse(s.created_at) >= p.sentAt - 5000);
        if (recent) { adoptSession(recent.session_id); p.sessionId = recent.session_id; }
      }
    }
    busy();
    toast(t("replyAfterReconnect"));
    try {
      let last = -1;
      let stable = 0;
      for (let round = 0; round < 40 && stable < 2; round += 1) {
        await loadHistory();
        const n = state.messages.length;
        const answered = n > 0 && state.messages[n - 1].role !== "user" && !messages.querySelector(":scope > li[data-provisional]");
        stable = n === last && answered ? stable + 1 : 0;
        last = n;
        if (stable < 2) await new Promise((r) => setTimeout(r, 1500));
      }
    } finally {
      // a reply that never came (it failed on the server): stop showing it as on its way
      for (const n of messages.querySelectorAll(":scope > li.typing[data-provisional]")) n.remove();
      for (const n of messages.querySelectorAll(":scope > li[data-provisional]")) n.removeAttribute("aria-busy");
      resyncing -= 1;
      busy();
    }
    refreshSessions();
  }

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  }
  function scrollDown() {
    scroller.scrollTop = scroller.scrollHeight;
  }

  function setConnection(stateName) {
    const label = { connecting: t("connecting"), reconnecting: t("reconnecting"), open: t("connected"), closed: t("offline") }[stateName] || "";
    connection.textContent = label;
    connection.dataset.state = stateName;
  }

  hasRoute("patch", "/api/v1/chat/sessions/{session_id}").then((yes) => { state.canRename = yes; renderSessions(); });
  // the conversation is shown at once (a message sent while the list loads is never
  // wiped), as soon as the view is on the page (so the composer can take focus)
  const firstSessions = loadSessions();
  queueMicrotask(() => showSession(state.sessionId));
  setConnection(socket.state);

  return {
    el,
    skip: { label: t("skipToComposer"), target: () => input },
    onFrame,
    setConnection,
    open: (id) => { if (id !== state.sessionId) showSession(id); },
  };
}

// A conversation's title as plain text (the first message's Markdown taken off).
export function plainTitle(text) {
  return String(text || "")
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+)/, "")
    .replace(/(\*\*|__|~~|\*|`)/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

function titleOf(s) {
  return plainTitle(s.title) || t("untitled");
}

// today | yesterday | week | older, by the browser's calendar
function dateGroup(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "older";
  const day = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const days = Math.round((day(new Date()) - day(d)) / 86_400_000);
  if (days <= 0) return "today";
  if (days === 1) return "yesterday";
  if (days < 7) return "week";
  return "older";
}
