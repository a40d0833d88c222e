// The index's stats and its documents (the filter select and the side list).

import { api } from "./api.js";

const DOCS_LIMIT = 1000;

const number = new Intl.NumberFormat();

function setStat(name, text, title) {
  const cell = document.querySelector(`[data-stat="${name}"]`);
  if (!cell) return;
  cell.textContent = text;
  if (title) cell.title = title;
}

// The index's stats in the header; returns the server's limits.
export async function loadInfo() {
  const info = await api("info");
  const stats = info.stats || {};
  setStat("documents", number.format(stats.documents ?? 0));
  setStat("pages", number.format(stats.pages ?? 0));
  setStat("vectors_per_page", stats.pages ? Number(stats.vectors_per_page).toFixed(1) : "–");
  setStat("keep_ratio", typeof stats.keep_ratio === "number" ? `${Math.round(stats.keep_ratio * 100)}%` : "–");
  // A local checkpoint's folder name, not its server-side path (the full spec is in the tooltip).
  const model = typeof stats.model === "string" ? stats.model : "";
  const isPath = /^([./~\\]|[A-Za-z]:)/.test(model) || model.split("/").length > 2; // not a hub id "org/name"
  setStat("model", (isPath ? model.split(/[\\/]/).filter(Boolean).pop() : model) || "–", model);
  return info.limits || {};
}

export function documentName(doc) {
  const meta = doc.metadata || {};
  return (typeof doc.filename === "string" && doc.filename) || (typeof meta.filename === "string" && meta.filename) || doc.doc_id;
}

// The document filter and the document list, from GET /documents.
export async function loadDocuments() {
  const data = await api(`documents?limit=${DOCS_LIMIT}`);
  const docs = data.documents || [];
  const select = document.getElementById("doc-filter");
  const chosen = select.value;
  while (select.options.length > 1) select.remove(1);
  for (const doc of docs) {
    const option = document.createElement("option");
    option.value = doc.doc_id;
    option.textContent = `${documentName(doc)} (${doc.pages} p.)`;
    select.append(option);
  }
  select.value = docs.some((d) => d.doc_id === chosen) ? chosen : "";

  const list = document.getElementById("doc-list");
  list.replaceChildren();
  const total = typeof data.total === "number" ? data.total : docs.length;
  document.getElementById("docs-count").textContent = `(${number.format(total)})`;
  if (!docs.length) {
    const empty = document.createElement("li");
    empty.className = "none";
    empty.textContent = "No documents yet: add some above.";
    list.append(empty);
  }
  for (const doc of docs) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.docId = doc.doc_id;
    button.title = `Search only in ${documentName(doc)} (${doc.doc_id})`;
    button.setAttribute("aria-pressed", String(doc.doc_id === select.value));
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = documentName(doc);
    const pages = document.createElement("span");
    pages.className = "pages";
    pages.textContent = `${doc.pages} p.`;
    button.append(name, pages);
    button.addEventListener("click", () => {
      select.value = select.value === doc.doc_id ? "" : doc.doc_id;
      select.dispatchEvent(new Event("change"));
    });
    item.append(button);
    list.append(item);
  }
}

export function markChosenDocument() {
  const chosen = document.getElementById("doc-filter").value;
  for (const button of document.getElementById("doc-list").querySelectorAll("button[data-doc-id]")) {
    button.setAttribute("aria-pressed", String(button.dataset.docId === chosen));
  }
}
