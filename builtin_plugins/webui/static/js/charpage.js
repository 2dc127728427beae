// Characters: every character the user may talk to, one in detail (#/characters/<id>),
// made, edited, deleted, given a picture, or imported from a Character Card V2 (JSON or
// PNG) dropped on the page or chosen with a file picker.
import { ApiError, api, del, enc, get, patch, post } from "./api.js";
import { avatar, colourOf } from "./characters.js";
import { clear, h, uid } from "./dom.js";
import { t } from "./i18n.js";
import { icon } from "./icons.js";
import { toast } from "./toast.js";

const FIELDS = [
  ["name", "input", { maxlength: 64, required: true }],
  ["aliases", "input", { maxlength: 600 }],
  ["description", "textarea", { maxlength: 2000, rows: 2 }],
  ["persona", "textarea", { maxlength: 20000, rows: 6 }],
  ["greeting", "textarea", { maxlength: 20000, rows: 2 }],
];

export function charactersView({ app, me, selected, onChange }) {
  const isAdmin = (me.roles || []).includes("admin");
  let list = [];
  const grid = h("ul", { class: "character-list" });
  const detail = h("section", { class: "panel character-detail", "aria-live": "polite", hidden: true });
  const fileId = uid("card-file");
  const fileInput = h("input", { id: fileId, type: "file", accept: ".json,.png,application/json,image/png", class: "visually-hidden", onchange: () => { if (fileInput.files[0]) importCard(fileInput.files[0]); fileInput.value = ""; } });
  const drop = h("div", { class: "dropzone", "data-drop": "card" },
    icon("plus"), h("span", { text: t("importHint") }), " ",
    h("label", { for: fileId, class: "link-button", text: t("chooseFile") }), fileInput);
  for (const kind of ["dragenter", "dragover"]) drop.addEventListener(kind, (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) importCard(file);
  });

  const el = h("div", { class: "page characters-page" },
    h("div", { class: "page-head" },
      h("h1", { text: t("characters") }),
      h("button", { type: "button", class: "primary", onclick: () => editor(null) }, icon("plus"), h("span", { text: t("newCharacter") }))),
    drop, grid, detail);

  function editable(c) {
    return c.scope === "private" || isAdmin;
  }

  async function load() {
    try {
      list = await get("/api/v1/chat/characters");
      if (!Array.isArray(list)) list = list.characters || [];
    } catch (err) {
      return app.fail(err);
    }
    onChange(list);
    render();
  }

  function render() {
    clear(grid);
    for (const c of list) {
      grid.append(h("li", { class: ["character-card", c.id === selected && "current"], "data-character": c.id, vars: { "--who": colourOf(c.id) } },
        h("a", { href: `#/characters/${enc(c.id)}`, "aria-current": c.id === selected ? "page" : null },
          avatar(c, 44),
          h("span", { class: "character-text" },
            h("strong", { class: "character-name", text: c.name }),
            h("span", { class: "character-desc", text: c.description || "" })),
          h("span", { class: "badge scope", text: t(`scope_${c.scope || "system"}`) }))));
    }
    const c = list.find((x) => x.id === selected);
    if (c) show(c);
    else if (selected) { detail.hidden = false; clear(detail).append(h("p", { text: t("notFound") })); }
  }

  async function show(c) {
    detail.hidden = false;
    let full = c;
    try { full = await get(`/api/v1/chat/characters/${enc(c.id)}`); } catch { /* the list's copy */ }
    const titleId = uid("char");
    const pictureId = uid("picture");
    const pictureInput = h("input", { id: pictureId, type: "file", accept: "image/png,image/jpeg,image/webp", class: "visually-hidden", onchange: () => { if (pictureInput.files[0]) setPicture(full, pictureInput.files[0]); } });
    const facts = [
      [t("aliases"), (full.aliases || []).join(", ")],
      [t("provider"), [full.provider, full.model].filter(Boolean).join(" · ")],
      [t("scope"), t(`scope_${full.scope || "system"}`)],
    ].filter(([, v]) => v);
    clear(detail).append(
      h("div", { class: "character-head", vars: { "--who": colourOf(full.id) } }, avatar(full, 72),
        h("div", null, h("h2", { id: titleId, text: full.name }), h("p", { class: "muted", text: full.description || "" }))),
      h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
      full.persona ? h("div", null, h("h3", { text: t("persona") }), h("p", { class: "persona", text: full.persona })) : null,
      editable(full) ? h("div", { class: "button-row" },
        h("button", { type: "button", class: "primary", onclick: () => editor(full) }, icon("pencil"), h("span", { text: t("edit") })),
        h("label", { for: pictureId, class: "button-like", text: t("changePicture") }), pictureInput,
        h("button", { type: "button", class: "danger", onclick: () => remove(full) }, icon("trash"), h("span", { text: t("delete") }))) : null);
    detail.setAttribute("aria-labelledby", titleId);
  }

  function editor(c) {
    detail.hidden = false;
    const inputs = {};
    const errors = {};
    const titleId = uid("edit");
    const rows = FIELDS.map(([name, tag, attrs]) => {
      const id = uid(name);
      const input = h(tag, { id, name, ...attrs, "aria-describedby": `${id}-error` });
      const value = c ? (name === "aliases" ? (c.aliases || []).join(", ") : c[name] || "") : "";
      input.value = value;
      inputs[name] = input;
      errors[name] = h("p", { class: "field-error", id: `${id}-error`, "aria-live": "polite" });
      return h("div", { class: "field" }, h("label", { for: id, text: t(`char_${name}`) }), input,
        name === "aliases" ? h("p", { class: "hint", text: t("aliasesHint") }) : null, errors[name]);
    });
    const general = h("p", { class: "form-error", role: "alert" });
    const form = h("form", { class: "character-form", novalidate: true, onsubmit: (e) => { e.preventDefault(); save(); } },
      h("h2", { id: titleId, text: c ? t("editCharacter", { name: c.name }) : t("newCharacter") }),
      rows, general,
      h("div", { class: "button-row" },
        h("button", { type: "submit", class: "primary", text: t("save") }),
        h("button", { type: "button", onclick: () => (c ? show(c) : (detail.hidden = true)), text: t("cancel") })));
    clear(detail).append(form);
    detail.setAttribute("aria-labelledby", titleId);
    inputs.name.focus();

    async function save() {
      general.textContent = "";
      for (const [k, e] of Object.entries(errors)) { e.textContent = ""; inputs[k].removeAttribute("aria-invalid"); }
      const body = {
        name: inputs.name.value.trim(),
        aliases: inputs.aliases.value.split(/[,、，]/).map((x) => x.trim()).filter(Boolean),
        description: inputs.description.value,
        persona: inputs.persona.value,
        greeting: inputs.greeting.value,
      };
      if (!body.name) {
        errors.name.textContent = t("fieldRequired");
        inputs.name.setAttribute("aria-invalid", "true");
        inputs.name.focus();
        return;
      }
      try {
        const saved = c ? await patch(`/api/v1/chat/characters/${enc(c.id)}`, body) : await post("/api/v1/chat/characters", body);
        toast(t("characterSaved", { name: saved.name }));
        selected = saved.id;
        if (window.location.hash !== `#/characters/${enc(saved.id)}`) window.location.hash = `#/characters/${enc(saved.id)}`;
        else await load();
      } catch (err) {
        const e = err instanceof ApiError ? err : new ApiError(0, {});
        let first = null;
        for (const [name, message] of Object.entries(e.fieldErrors)) {
          if (!errors[name]) continue;
          errors[name].textContent = message;
          inputs[name].setAttribute("aria-invalid", "true");
          first = first || inputs[name];
        }
        if (first) first.focus();
        else general.textContent = e.userMessage;
      }
    }
  }

  async function remove(c) {
    if (!window.confirm(t("deleteCharacterConfirm", { name: c.name }))) return;
    try { await del(`/api/v1/chat/characters/${enc(c.id)}`); } catch (err) { return app.fail(err); }
    toast(t("deleted"));
    window.location.hash = "#/characters";
  }

  async function setPicture(c, file) {
    if (file.size > 1024 * 1024) return toast(t("code_PAYLOAD_TOO_LARGE"), "error");
    try {
      await api("PUT", `/api/v1/chat/characters/${enc(c.id)}/avatar`, undefined, { raw: file });
    } catch (err) {
      return app.fail(err);
    }
    toast(t("pictureSaved"));
    await load();
  }

  async function importCard(file) {
    try {
      let made;
      if (file.type === "image/png" || file.name.toLowerCase().endsWith(".png")) {
        made = await api("POST", "/api/v1/chat/characters/import", undefined, { raw: new Blob([file], { type: "image/png" }) });
      } else {
        let card;
        try { card = JSON.parse(await file.text()); } catch { return toast(t("code_INVALID_CARD"), "error"); }
        made = await post("/api/v1/chat/characters/import", card);
      }
      toast(t("characterImported", { name: made.name }));
      window.location.hash = `#/characters/${enc(made.id)}`;
    } catch (err) {
      app.fail(err);
    }
  }

  load();
  return { el };
}
