// Short messages for everyone, screen readers included (a polite live region).
import { h } from "./dom.js";

let region = null;
let timer = null;

export function toast(text, kind = "info") {
  if (!region) {
    region = h("div", { class: "toast", role: "status", "aria-live": "polite" });
    document.body.append(region);
  }
  region.textContent = text;
  region.dataset.kind = kind;
  region.classList.add("visible");
  clearTimeout(timer);
  timer = setTimeout(() => region.classList.remove("visible"), kind === "error" ? 8000 : 3500);
}
