// The app shell: top bar, hash routes (#/chat/<session>, #/memory, #/profile, #/admin,
// #/login, #/register), language and theme, and the one chat socket of the login.
import { ApiError, get, session, signOut } from "./api.js";
import { adminView } from "./admin.js";
import { authView } from "./auth.js";
import { charactersView } from "./charpage.js";
import { chatView } from "./chat.js";
import { clear, h, uid } from "./dom.js";
import { LANGUAGES, currentLang, t } from "./i18n.js";
import { memoryView } from "./memory.js";
import { prefs } from "./prefs.js";
import { profileView } from "./profile.js";
import { ChatSocket } from "./socket.js";
import { toast } from "./toast.js";

const root = document.getElementById("app");
const state = { me: null, characters: null, socket: null, view: null, chat: null, notice: null };

const app = {
  // An error the page cannot handle itself: tell the user (401s end the login elsewhere).
  fail(err) {
    if (err instanceof ApiError && err.status === 401) return;
    toast(err instanceof ApiError ? err.userMessage : String(err), "error");
  },
};

function applyTheme() {
  const theme = prefs.get("theme") || "auto";
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
}

function applyLang() {
  document.documentElement.lang = currentLang();
  document.title = t("appName");
}

function topbar(route) {
  const nav = [["chat", t("navChat")], ["characters", t("navCharacters")], ["memory", t("navMemory")], ["profile", t("navProfile")]];
  if (state.me && state.me.roles.includes("admin")) nav.push(["admin", t("navAdmin")]);
  const langId = uid("lang");
  const themeId = uid("theme");
  const lang = h("select", {
    id: langId, onchange: () => { prefs.set("lang", lang.value); applyLang(); render(true); },
  }, LANGUAGES.map(([code, name]) => h("option", { value: code, text: name, selected: code === currentLang() })));
  const themeValue = prefs.get("theme") || "auto";
  const theme = h("select", {
    id: themeId, onchange: () => { prefs.set("theme", theme.value === "auto" ? null : theme.value); applyTheme(); },
  }, [["auto", t("themeAuto")], ["light", t("themeLight")], ["dark", t("themeDark")]].map(([v, label]) => h("option", { value: v, text: label, selected: v === themeValue })));
  return h("header", { class: ["topbar", !state.me && "bare"] },
    h("a", { class: "brand", href: "#/chat" }, h("span", { class: "brand-mark", "aria-hidden": "true", text: "◆" }), h("span", { class: "brand-name", text: t("appName") })),
    state.me ? h("nav", { "aria-label": t("navLabel") }, h("ul", null, nav.map(([key, label]) => h("li", null,
      h("a", { href: `#/${key}`, "aria-current": route === key ? "page" : null, text: label }))))) : h("span", { class: "grow" }),
    h("div", { class: "settings" },
      h("label", { for: langId, class: "visually-hidden", text: t("language") }), lang,
      h("label", { for: themeId, class: "visually-hidden", text: t("theme") }), theme,
      state.me ? h("button", { type: "button", class: "logout", onclick: logout, text: t("logout") }) : null));
}

async function logout() {
  stopSocket();
  await signOut();
}

function stopSocket() {
  if (state.socket) state.socket.close();
  state.socket = null;
  state.chat = null;
  state.me = null;
  state.characters = null;
}

function parseRoute() {
  const parts = window.location.hash.replace(/^#\/?/, "").split("/").map((p) => {
    try { return decodeURIComponent(p); } catch { return ""; }
  });
  return { name: parts[0] || "chat", arg: parts[1] || null };
}

async function ensureSignedIn() {
  if (state.me) return true;
  if (!session.signedIn) return false;
  session.resume();
  const characters = get("/api/v1/chat/characters").catch((err) => { app.fail(err); return []; });
  try {
    state.me = (await get("/api/v1/auth/me")).user;
  } catch (err) {
    app.fail(err);
    return false;
  }
  state.characters = await characters;
  state.socket = new ChatSocket({
    onFrame: (frame) => state.chat && state.chat.onFrame(frame),
    onState: (s) => state.chat && state.chat.setConnection(s),
  });
  state.socket.connect();
  return true;
}

let rendering = 0;
async function render(force = false) {
  const ticket = ++rendering;
  const route = parseRoute();
  if (["login", "register", "forgot", "reset"].includes(route.name)) {
    if (session.signedIn && await ensureSignedIn()) { window.location.hash = "#/chat"; return; }
    show(route.name, authView({ mode: route.name, notice: state.notice, onDone: () => { state.notice = null; window.location.hash = "#/chat"; } }));
    return;
  }
  if (!(await ensureSignedIn())) {
    if (ticket !== rendering) return;
    window.location.hash = "#/login";
    return;
  }
  if (ticket !== rendering) return;
  if (route.name === "chat" && state.chat && state.view === "chat" && !force) {
    state.chat.open(route.arg);
    return;
  }
  state.chat = null;
  let view;
  if (route.name === "memory") view = memoryView({ app, characters: state.characters || [] });
  else if (route.name === "characters") {
    view = charactersView({ app, me: state.me, selected: route.arg, onChange: (list) => { state.characters = list; } });
  }
  else if (route.name === "profile") view = profileView({ app });
  else if (route.name === "admin" && state.me.roles.includes("admin")) view = adminView({ app });
  else if (route.name === "admin") view = { el: h("p", { class: "page", role: "alert", text: t("notAllowed") }) };
  else {
    view = chatView({ app, socket: state.socket, characters: state.characters || [], sessionId: route.arg });
    state.chat = view;
  }
  show(route.name === "chat" || !["memory", "profile", "admin", "characters"].includes(route.name) ? "chat" : route.name, view);
}

function show(name, view) {
  state.view = name;
  const main = h("main", { id: "main", tabindex: "-1", class: `view-${name}` }, view.el);
  clear(root).append(
    h("a", {
      class: "skip", href: "#main", text: view.skip ? view.skip.label : t("skip"),
      onclick: (e) => { e.preventDefault(); (view.skip ? view.skip.target() : main).focus(); },
    }),
    topbar(name), main);
}

session.onChange((kind, reason) => {
  if (kind !== "logout") return;
  stopSocket();
  state.notice = { expired: t("sessionExpired"), disabled: t("accountDisabledNotice"), deleted: t("accountDeletedNotice") }[reason] || t("loggedOut");
  if (window.location.hash !== "#/login") window.location.hash = "#/login";
  else render(true);
});

window.addEventListener("hashchange", () => render());
applyTheme();
applyLang();
render();
