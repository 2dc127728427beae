// The REST client: bearer tokens refreshed silently (one refresh at a time, across tabs),
// every failure turned into an ApiError carrying the server's Problem Details.
import { prefs } from "./prefs.js";
import { has, t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "";
    this.detail = problem.detail || problem.title || "";
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.retryAfter = retryAfter;
    this.problem = problem; // the whole Problem (extra members such as "plugins")
  }

  // What to tell the user, in their language.
  get userMessage() {
    if (this.status === 0) return t("errorNetwork");
    if (this.status === 429) {
      if (this.code === "QUOTA_EXCEEDED" && this.retryAfter) return t("errorQuota", { time: duration(this.retryAfter) });
      return this.retryAfter ? t("errorRateLimited", { seconds: this.retryAfter }) : t("errorRateLimitedNow");
    }
    // the stable code in the user's language; the server's words only when it is unknown
    const byCode = codeMessage(this.code, this.detail);
    if (byCode) return byCode;
    if (this.status >= 500) return `${t("errorServer", { status: this.status })}${this.detail ? ` ${this.detail}` : ""}`;
    if (this.status === 422 && this.errors.length) return t("errorInvalid");
    return this.detail || t("errorGeneric", { detail: this.status });
  }

  // Field errors by field name ("/password" -> "password"), every field at once, in the
  // user's language when the field or the code is known (the server's words otherwise).
  get fieldErrors() {
    const out = {};
    for (const e of this.errors) {
      const name = String(e.path || "").replace(/^\//, "").split("/")[0];
      if (name && !out[name]) out[name] = fieldMessage(name, this.code, e.message);
    }
    // a conflict or check that names no path but whose code belongs to one field
    const field = CODE_FIELDS[this.code];
    const name = typeof field === "function" ? field(this.detail) : field;
    if (name && !out[name]) out[name] = this.userMessage;
    return out;
  }
}

// Codes that are about one field of a form.
const CODE_FIELDS = {
  WEAK_PASSWORD: "password",
  PASSWORD_TOO_LONG: "password",
  INVALID_EMAIL: "email",
  INVALID_USERNAME: "username",
  USER_EXISTS: (detail) => (/user ?name/i.test(detail) ? "username" : "email"),
  CHARACTER_NAME_TAKEN: "name",
  WRONG_PASSWORD: "current_password",
};

function codeMessage(code, detail) {
  if (!code) return "";
  if (code === "USER_EXISTS") return t(/user ?name/i.test(detail || "") ? "code_USER_EXISTS_username" : "code_USER_EXISTS_email");
  return has(`code_${code}`) ? t(`code_${code}`) : "";
}

export function fieldMessage(name, code, message) {
  if (code && CODE_FIELDS[code] && has(`code_${code}`)) return codeMessage(code, message);
  if (has(`field_${name}`)) return t(`field_${name}`);
  return message || t("errorInvalid");
}

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.ceil((s % 3600) / 60);
  if (h) return `${h} h ${m} min`;
  if (m > 1 || s >= 60) return `${m} min`;
  return `${s} s`;
}

const listeners = new Set();
let refreshTimer = null;
let inFlightRefresh = null;

function notify(kind, detail) {
  for (const fn of listeners) fn(kind, detail);
}

export const session = {
  get accessToken() { return prefs.get("access"); },
  get signedIn() { return Boolean(prefs.get("refresh")); },
  onChange(fn) { listeners.add(fn); return () => listeners.delete(fn); },

  save(pair) {
    prefs.set("access", pair.access_token);
    prefs.set("refresh", pair.refresh_token);
    prefs.set("expires", String(Date.now() + pair.expires_in * 1000));
    schedule();
    notify("tokens");
  },

  // Forget the tokens; ``reason`` is shown on the login screen ("expired", "logout").
  clear(reason) {
    const had = this.signedIn;
    for (const k of ["access", "refresh", "expires"]) prefs.set(k, null);
    clearTimeout(refreshTimer);
    if (had) notify("logout", reason);
  },

  resume() {
    if (this.signedIn) schedule();
  },
};

// Another tab logged in, out, or refreshed: follow it.
window.addEventListener("storage", (event) => {
  if (event.key === prefs.key("refresh")) {
    if (!event.newValue) notify("logout", "logout");
    else { schedule(); notify("tokens"); }
  }
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && session.signedIn && expiresSoon(60)) refresh().catch(() => {});
});

function expiresSoon(marginSeconds) {
  const at = Number(prefs.get("expires") || 0);
  return !at || at - Date.now() < marginSeconds * 1000;
}

function schedule() {
  clearTimeout(refreshTimer);
  const at = Number(prefs.get("expires") || 0);
  if (!at) return;
  // a minute before expiry, or at 80% of a lifetime under five minutes
  const left = at - Date.now();
  const wait = Math.max(5_000, left > 300_000 ? left - 60_000 : left * 0.8);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), wait);
}

// Refresh tokens are single-use and a reused one revokes the whole login, so only one
// refresh may run at a time: within this tab (one shared promise) and across tabs (a
// Web Lock, inside which we first check whether another tab has already refreshed).
export function refresh() {
  if (!inFlightRefresh) {
    const seen = prefs.get("refresh");
    const run = async () => {
      const current = prefs.get("refresh");
      if (!current) throw new ApiError(401, { code: "AUTH_REQUIRED", detail: t("sessionExpired") });
      if (current !== seen && !expiresSoon(30)) return; // another tab refreshed meanwhile
      let response;
      try {
        response = await fetch("/api/v1/auth/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ refresh_token: current }),
        });
      } catch {
        throw new ApiError(0, { code: "NETWORK" });
      }
      if (response.status === 401 || response.status === 403) {
        const problem = await response.json().catch(() => ({}));
        session.clear(problem.code === "ACCOUNT_DISABLED" ? "disabled" : "expired");
        throw new ApiError(401, { code: "SESSION_EXPIRED", detail: t("sessionExpired") });
      }
      if (!response.ok) throw await errorOf(response);
      session.save(await response.json());
    };
    const locked = navigator.locks ? () => navigator.locks.request("llmmc-refresh", run) : run;
    inFlightRefresh = locked().finally(() => { inFlightRefresh = null; });
  }
  return inFlightRefresh;
}

async function errorOf(response) {
  let problem = {};
  try { problem = await response.json(); } catch { /* not JSON: keep the status */ }
  const retry = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return new ApiError(response.status, problem, Number.isFinite(retry) ? retry : null);
}

// One REST call. ``auth: false`` for the public auth routes; ``raw``: a Blob or File sent
// as it is with its own type (a picture); ``accept``: what to ask for.
export async function api(method, path, body, { auth = true, raw = null, accept = "application/json", blob = false } = {}) {
  if (auth && session.signedIn && expiresSoon(15)) await refresh();
  const send = () => {
    const headers = { Accept: accept };
    if (raw) headers["Content-Type"] = raw.type || "application/octet-stream";
    else if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && session.accessToken) headers.Authorization = `Bearer ${session.accessToken}`;
    return fetch(path, { method, headers, body: raw || (body === undefined ? undefined : JSON.stringify(body)) });
  };
  let response;
  try {
    response = await send();
    if (response.status === 401 && auth && session.signedIn) {
      await refresh();
      response = await send();
    }
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw new ApiError(0, { code: "NETWORK" });
  }
  if (response.status === 401 && auth) session.clear("expired");
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  if (blob) return response.blob();
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);
export const put = (path, body) => api("PUT", path, body);
export const enc = encodeURIComponent;

export async function signIn(kind, body) {
  const path = kind === "register" ? "/api/v1/auth/register" : "/api/v1/auth/login";
  const pair = await api("POST", path, body, { auth: false });
  session.save(pair);
  return pair.user;
}

export async function signOut() {
  const token = prefs.get("refresh");
  try {
    if (token) await api("POST", "/api/v1/auth/logout", { refresh_token: token }, { auth: false });
  } catch { /* the tokens are forgotten below either way */ }
  session.clear("logout");
}
