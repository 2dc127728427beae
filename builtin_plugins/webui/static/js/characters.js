// Characters as the chat shows them: a colour each and an avatar: the character's picture
// when it has one (read with the user's credentials, shown as a data: URL), else initials.
import { api } from "./api.js";
import { svg } from "./dom.js";
import { currentLang } from "./i18n.js";

// The name in the user's script when the character has an alias in it ("クラリス" for a
// Japanese reader, "클라리스" for a Korean one), else its name.
const SCRIPTS = {
  ja: /[\p{Script=Hiragana}\p{Script=Katakana}]/u,
  zh: /^[\p{Script=Han}\s·]+$/u,
  ko: /\p{Script=Hangul}/u,
};

export function displayName(c, lang = currentLang()) {
  const script = SCRIPTS[lang];
  if (!script || !c) return c ? c.name : "?";
  return (c.aliases || []).find((a) => script.test(a)) || c.name;
}

// Characters as shown: their names in the user's script (the original name still nominates).
export function localized(characters) {
  return characters.map((c) => {
    const name = displayName(c);
    return name === c.name ? c : { ...c, name, aliases: [c.name, ...(c.aliases || [])] };
  });
}

const pictures = new Map(); // avatar_url -> Promise of a data: URL (or null)

function readAsDataURL(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

export function picture(url) {
  if (!pictures.has(url)) {
    pictures.set(url, api("GET", url, undefined, { blob: true, accept: "image/*" }).then(readAsDataURL).catch(() => null));
  }
  return pictures.get(url);
}

const KNOWN = { lumina: "#d9822b", claris: "#2f7ed8", nox: "#7b52c7" };

export function colourOf(id) {
  if (KNOWN[id]) return KNOWN[id];
  let hash = 0;
  for (const ch of String(id)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 55% 45%)`;
}

export function initials(name) {
  const words = String(name || "?").trim().split(/\s+/);
  const first = Array.from(words[0] || "?")[0] || "?";
  const second = words.length > 1 ? Array.from(words[1])[0] : "";
  return (first + second).toUpperCase();
}

export function avatar(character, size = 36) {
  const name = character ? character.name : "?";
  const el = svg("svg", {
    class: "avatar", width: size, height: size, viewBox: "0 0 40 40", "aria-hidden": "true",
    vars: { "--who": character ? colourOf(character.id) : "var(--muted)" },
  },
  svg("circle", { cx: 20, cy: 20, r: 20, class: "avatar-bg" }),
  svg("text", { x: 20, y: 21, "text-anchor": "middle", "dominant-baseline": "middle", class: "avatar-text" }, initials(name)));
  if (character && character.avatar_url) {
    picture(character.avatar_url).then((src) => {
      if (src) el.append(svg("image", { href: src, x: 0, y: 0, width: 40, height: 40, class: "avatar-picture", preserveAspectRatio: "xMidYMid slice" }));
    });
  }
  return el;
}

// The character named at the start of a message ("クラリス、...", "Claris: ...", "@nox ...").
export function nominee(text, characters) {
  const trimmed = String(text).trimStart();
  let best = null;
  for (const c of characters) {
    for (const name of [c.name, c.id, ...(c.aliases || [])]) {
      if (!name) continue;
      const lower = trimmed.toLowerCase();
      const n = name.toLowerCase();
      const at = lower.startsWith(`@${n}`) ? 1 : lower.startsWith(n) ? 0 : -1;
      if (at < 0) continue;
      const next = trimmed.slice(at + name.length, at + name.length + 1);
      if (next && !/[\s,，、。:：!！?？.]/.test(next)) continue;
      if (!best || name.length > best.len) best = { character: c, len: name.length };
    }
  }
  return best ? best.character : null;
}
