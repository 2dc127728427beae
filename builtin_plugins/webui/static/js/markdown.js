// A small Markdown renderer that builds DOM nodes directly. Every piece of the source ends
// up in a text node, so HTML in a message (``<img src=x onerror=...>``) is shown as text and
// never parsed; links are kept only for http(s) and mailto URLs.
import { h } from "./dom.js";

const FENCE = /^\s{0,3}(```|~~~)\s*([\w+-]*)\s*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const BULLET = /^(\s*)[-*+]\s+(.*)$/;
const ORDERED = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const TABLE_SEP = /^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$/;

export function renderMarkdown(source) {
  const frag = document.createDocumentFragment();
  const lines = String(source ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i += 1; continue; }
    let m;
    if ((m = line.match(FENCE))) {
      const close = m[1];
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(close)) { body.push(lines[i]); i += 1; }
      i += 1; // the closing fence (or the end while a reply is still streaming)
      const code = h("code", { text: body.join("\n") });
      if (m[2]) code.setAttribute("data-lang", m[2]);
      frag.append(h("pre", null, code));
    } else if ((m = line.match(HEADING))) {
      const level = Math.min(m[1].length + 2, 6); // inside a message: h3..h6
      frag.append(h(`h${level}`, null, inline(m[2])));
      i += 1;
    } else if (RULE.test(line)) {
      frag.append(h("hr"));
      i += 1;
    } else if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && (m = lines[i].match(QUOTE))) { body.push(m[1]); i += 1; }
      frag.append(h("blockquote", null, renderMarkdown(body.join("\n"))));
    } else if (BULLET.test(line) || ORDERED.test(line)) {
      i = list(lines, i, frag);
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1])) {
      i = table(lines, i, frag);
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() && !startsBlock(lines, i)) { para.push(lines[i].trim()); i += 1; }
      const p = h("p");
      para.forEach((text, n) => { if (n) p.append(h("br")); p.append(inline(text)); });
      frag.append(p);
    }
  }
  return frag;
}

function startsBlock(lines, i) {
  const line = lines[i];
  return FENCE.test(line) || HEADING.test(line) || QUOTE.test(line) || BULLET.test(line)
    || ORDERED.test(line) || RULE.test(line);
}

function list(lines, i, frag) {
  const ordered = ORDERED.test(lines[i]);
  const el = h(ordered ? "ol" : "ul");
  if (ordered) {
    const start = Number(lines[i].match(ORDERED)[2]);
    if (start !== 1) el.setAttribute("start", String(start));
  }
  let item = null;
  while (i < lines.length) {
    const line = lines[i];
    const m = ordered ? line.match(ORDERED) : line.match(BULLET);
    if (m) {
      item = h("li", null, inline(ordered ? m[3] : m[2]));
      el.append(item);
    } else if (line.trim() && item && /^\s+/.test(line) && !startsBlock(lines, i)) {
      item.append(h("br"), inline(line.trim())); // a continuation line
    } else break;
    i += 1;
  }
  frag.append(el);
  return i;
}

function cells(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
}

function table(lines, i, frag) {
  const head = cells(lines[i]);
  const rows = [];
  i += 2;
  while (i < lines.length && lines[i].includes("|") && lines[i].trim()) { rows.push(cells(lines[i])); i += 1; }
  frag.append(h("div", { class: "table-wrap" }, h("table", null,
    h("thead", null, h("tr", null, head.map((c) => h("th", { scope: "col" }, inline(c))))),
    h("tbody", null, rows.map((r) => h("tr", null, head.map((_, n) => h("td", null, inline(r[n] ?? "")))))))));
  return i;
}

// Inline spans: `code`, **bold**, *italic*, ~~strike~~, [text](url), bare URLs.
const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*(?=\S)([\s\S]*?\S)\*\*|(?<![\w.])__(?=\S)([\s\S]*?\S)__(?!\w)|~~(?=\S)([\s\S]*?\S)~~|\*(?=[^\s*])([\s\S]*?[^\s*])\*|(?<![\w.])_(?=[^\s_])([\s\S]*?[^\s_])_(?!\w)|\[([^\]\n]+)\]\(\s*<?([^)\s>]+)>?\s*\)|(https?:\/\/[^\s<>"')\]]+[^\s<>"')\].,;:!?])/;

export function inline(text) {
  const frag = document.createDocumentFragment();
  let rest = String(text);
  let m;
  while (rest && (m = INLINE.exec(rest))) {
    if (m.index) frag.append(document.createTextNode(rest.slice(0, m.index)));
    if (m[1]) frag.append(h("code", { text: m[2].replace(/^ (.*) $/, "$1") }));
    else if (m[3] !== undefined) frag.append(h("strong", null, inline(m[3])));
    else if (m[4] !== undefined) frag.append(h("strong", null, inline(m[4])));
    else if (m[5] !== undefined) frag.append(h("del", null, inline(m[5])));
    else if (m[6] !== undefined) frag.append(h("em", null, inline(m[6])));
    else if (m[7] !== undefined) frag.append(h("em", null, inline(m[7])));
    else if (m[8] !== undefined) frag.append(link(m[9], inline(m[8])));
    else if (m[10] !== undefined) frag.append(link(m[10], document.createTextNode(m[10])));
    rest = rest.slice(m.index + m[0].length);
  }
  if (rest) frag.append(document.createTextNode(rest));
  return frag;
}

export function safeUrl(raw) {
  try {
    const url = new URL(raw, window.location.href);
    return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(raw, content) {
  const href = safeUrl(raw);
  if (!href) return document.createTextNode(`[${content.textContent}](${raw})`);
  return h("a", { href, target: "_blank", rel: "noopener noreferrer nofollow" }, content);
}
