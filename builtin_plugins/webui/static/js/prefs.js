// The only things this app keeps in the browser: the login's two tokens and two display
// preferences (language, theme). No message, memory or account data is ever stored.
const KEYS = { access: "llmmc.access", refresh: "llmmc.refresh", expires: "llmmc.expires", lang: "llmmc.lang", theme: "llmmc.theme" };

function read(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}
function write(key, value) {
  try {
    if (value === null || value === undefined) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch { /* private mode: the session lasts as long as the tab */ }
}

export const prefs = {
  get: (name) => read(KEYS[name]),
  set: (name, value) => write(KEYS[name], value),
  key: (name) => KEYS[name],
};
