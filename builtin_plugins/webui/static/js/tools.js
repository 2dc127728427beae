// Tool calls and their results as the chat shows them: a weather card, a translation
// card, and a plain card with the result for any other tool.
import { h, formatTime } from "./dom.js";
import { currentLang, t } from "./i18n.js";
import { icon } from "./icons.js";
import { weatherText } from "./wx.js";

function parse(content) {
  try { return JSON.parse(content); } catch { return content; }
}

function fmtArgs(raw) {
  const args = parse(raw || "{}");
  if (!args || typeof args !== "object") return String(args ?? "");
  return Object.entries(args).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ");
}

export function toolCallLine(call, character) {
  const fn = (call && call.function) || {};
  return h("p", { class: "tool-call" },
    icon("tool", 14),
    t("toolCall", { name: character ? character.name : "?", tool: fn.name || "?" }),
    fn.arguments && fn.arguments !== "{}" ? h("code", { text: ` (${fmtArgs(fn.arguments)})` }) : null);
}

export function toolCard(message) {
  const result = parse(message.content);
  const name = message.tool_name || "tool";
  if (result && typeof result === "object" && result.error && Object.keys(result).length === 1) {
    const detail = result.error.detail || result.error.code || "";
    return h("div", { class: "card card-error", role: "note" }, t("toolFailed", { tool: name, detail }));
  }
  if (name === "weather" && result && typeof result.temperature === "number") return weatherCard(result);
  if (name === "translate" && result && typeof result.translated_text === "string") return translateCard(result);
  return h("div", { class: "card", role: "note" },
    h("p", { class: "card-title", text: name }),
    h("pre", { class: "card-json", text: typeof result === "string" ? result : JSON.stringify(result, null, 2) }));
}

function weatherCard(w) {
  const imperial = w.units === "imperial";
  const num = (n, digits = 1) => new Intl.NumberFormat(currentLang(), { maximumFractionDigits: digits }).format(n);
  return h("div", { class: "card card-weather", role: "note", "aria-label": `${t("weather")}: ${w.city}` },
    h("p", { class: "card-title" }, icon("cloud", 16), `${t("weather")} · ${w.city}`),
    h("p", { class: "weather-main" },
      h("span", { class: "weather-temp", text: `${num(w.temperature)} °${imperial ? "F" : "C"}` }),
      h("span", { class: "weather-desc", text: weatherText(w.description || "") })),
    h("dl", { class: "weather-facts" },
      typeof w.humidity === "number" ? [h("dt", { text: t("humidity") }), h("dd", { text: `${num(w.humidity, 0)} %` })] : null,
      typeof w.wind_speed === "number" ? [h("dt", { text: t("wind") }), h("dd", { text: `${num(w.wind_speed)} ${imperial ? "mph" : "m/s"}` })] : null,
      w.observed_at ? [h("dt", { text: t("observed") }), h("dd", { text: formatTime(w.observed_at, currentLang()) })] : null),
    w.provider ? h("p", { class: "card-source", text: w.provider }) : null);
}

function translateCard(r) {
  // "auto": the provider detected the language (detected_source_lang, when it says)
  const from = (r.source_lang && r.source_lang !== "auto" ? r.source_lang : r.detected_source_lang) || "?";
  return h("div", { class: "card card-translate", role: "note" },
    h("p", { class: "card-title", text: `${t("translation")} · ${from} → ${r.target_lang}` }),
    h("blockquote", { class: "translate-original", lang: from !== "?" ? from : null, text: r.original_text || "" }),
    h("p", { class: "translate-result", lang: r.target_lang, text: r.translated_text }),
    r.provider ? h("p", { class: "card-source", text: r.provider }) : null);
}
