// Building DOM nodes. Text always goes in as text nodes; attributes are set one by one
// (never "style" or "on..." strings), so nothing from the server is ever parsed as HTML.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  if (attrs) setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "vars") for (const [k, v] of Object.entries(value)) el.style.setProperty(k, v);
    else if (key === "style" || key.startsWith("on")) throw new Error(`refusing attribute ${key}`);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let ids = 0;
export function uid(prefix = "id") {
  ids += 1;
  return `${prefix}-${ids}`;
}

// A labelled form field whose error message sits right below it (aria-describedby).
export function field({ name, label, type = "text", autocomplete, required = true, value = "", hint }) {
  const id = uid(name);
  const errorId = `${id}-error`;
  const input = h("input", {
    id, name, type, autocomplete, required, value,
    "aria-describedby": hint ? `${errorId} ${id}-hint` : errorId,
  });
  const error = h("p", { class: "field-error", id: errorId, "aria-live": "polite" });
  const wrap = h("div", { class: "field" },
    h("label", { for: id, text: label }), input,
    hint ? h("p", { class: "hint", id: `${id}-hint`, text: hint }) : null,
    error);
  return { wrap, input, error };
}

export function formatTime(iso, lang) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const sameDay = d.toDateString() === new Date().toDateString();
  return new Intl.DateTimeFormat(lang, sameDay
    ? { hour: "2-digit", minute: "2-digit" }
    : { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }).format(d);
}

export function formatDate(iso, lang) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return "";
  return new Intl.DateTimeFormat(lang, { year: "numeric", month: "long", day: "numeric" }).format(d);
}
