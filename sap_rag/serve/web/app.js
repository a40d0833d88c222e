// sap-rag web page: search an index by text or image, look at the pages and their kept anchors,
// upload documents. Plain JavaScript, no build step, nothing loaded from elsewhere.
// Text from the server is only ever set with textContent / attributes, never parsed as HTML.
// Modules: api.js (requests, errors, the API key), documents.js (stats, document list), uploads.js
// (upload jobs), this file (search and results).
import { api, auth, withParams } from "./api.js";
import { documentName, loadDocuments, loadInfo, markChosenDocument } from "./documents.js";
import { formatBytes, initUploads, uploadFiles } from "./uploads.js";

const ANCHORS_STORAGE = "sap-rag-anchors";
const IMAGE_SIDE = 640; // result images: shown ~300 px wide, so 2x for sharp screens
const FULL_SIDE = 2048; // the image a result links to
const SNIPPET = 280;

const $ = (id) => document.getElementById(id);
const state = {
  image: null, // the query image (a File), or null for a text search
  imageUrl: null,
  hits: [],
  anchors: localStorage.getItem(ANCHORS_STORAGE) === "1",
  objectUrls: [],
  searchSeq: 0,
  limits: {},
};

// --- messages ----------------------------------------------------------------------------------

function showStatus(text) {
  $("status").textContent = text;
}

function showError(error) {
  const box = $("error");
  box.textContent = error instanceof Error ? error.message : String(error);
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// --- images (with an API key, <img src> cannot send it: such images are fetched as blobs) ----------

async function showImage(img, url) {
  img.dataset.src = url;
  const frame = img.closest(".hit-image");
  const spinner = frame && frame.querySelector(".spinner");
  if (frame) frame.classList.add("loading");
  if (spinner) spinner.hidden = false;
  const done = () => {
    if (img.dataset.src !== url) return; // a newer image was asked for meanwhile
    if (frame) frame.classList.remove("loading");
    if (spinner) spinner.hidden = true;
  };
  img.onload = done;
  img.onerror = () => {
    done();
    img.alt = `${img.dataset.label} (the image could not be loaded)`;
  };
  if (!auth.key) {
    img.src = url;
    return;
  }
  try {
    const response = await api(url, { raw: true });
    const blobUrl = URL.createObjectURL(await response.blob());
    state.objectUrls.push(blobUrl);
    if (img.dataset.src === url) img.src = blobUrl;
  } catch (error) {
    img.onerror();
    showError(error);
  }
}

function releaseImages() {
  for (const url of state.objectUrls) URL.revokeObjectURL(url);
  state.objectUrls = [];
}

async function refreshInfo() {
  state.limits = await loadInfo();
}

// --- search ------------------------------------------------------------------------------------

function hasQuery() {
  return Boolean(state.image) || $("query").value.trim().length > 0;
}

async function search() {
  clearError();
  const text = $("query").value.trim();
  if (!state.image && !text) {
    showStatus("Type a question, or choose an image to search with.");
    $("query").focus();
    return;
  }
  const k = Number($("k").value);
  const doc = $("doc-filter").value;
  const filter = doc ? { doc_id: doc } : null;
  const seq = ++state.searchSeq;
  const button = $("search-button");
  button.disabled = true;
  showStatus("Searching…");
  try {
    let data;
    if (state.image) {
      const form = new FormData();
      form.append("image", state.image, state.image.name || "query.png");
      form.append("k", String(k));
      form.append("snippet", String(SNIPPET));
      if (filter) form.append("filter", JSON.stringify(filter));
      data = await api("search/image", { method: "POST", body: form });
    } else {
      data = await api("search", { method: "POST", json: { query: text, k, filter, snippet: SNIPPET } });
      const params = new URLSearchParams({ q: text });
      if (doc) params.set("doc", doc);
      history.replaceState(null, "", `?${params}`);
    }
    if (seq !== state.searchSeq) return; // a newer search was started meanwhile
    renderHits(data.hits || []);
    const n = (data.hits || []).length;
    const took = typeof data.took_ms === "number" ? ` in ${Math.round(data.took_ms)} ms` : "";
    showStatus(n ? `${n} page${n === 1 ? "" : "s"}${took}, best first.` : `No pages found${took}.`);
  } catch (error) {
    if (seq !== state.searchSeq) return;
    showStatus("");
    showError(error);
  } finally {
    if (seq === state.searchSeq) button.disabled = false;
  }
}

function imageUrls(hit) {
  if (!hit.image_url) return null;
  return {
    page: withParams(hit.image_url, { max_side: IMAGE_SIDE, format: "jpeg", quality: 82 }),
    overlay: hit.overlay_url ? withParams(hit.overlay_url, { max_side: IMAGE_SIDE }) : null,
    full: withParams(hit.image_url, { max_side: FULL_SIDE, format: "png" }),
  };
}

function renderHits(hits) {
  releaseImages();
  state.hits = hits;
  const results = $("results");
  results.replaceChildren();
  if (!hits.length) {
    const empty = document.createElement("div");
    empty.className = "empty";
    const title = document.createElement("p");
    title.className = "empty-title";
    title.textContent = "No pages found";
    const tip = document.createElement("p");
    tip.textContent = $("doc-filter").value ? "Try all documents, or other words." : "Try other words.";
    empty.append(title, tip);
    results.append(empty);
    return;
  }
  const template = $("hit-template");
  hits.forEach((hit, i) => {
    const card = template.content.firstElementChild.cloneNode(true);
    const name = documentName({ doc_id: hit.doc_id, metadata: hit.metadata });
    card.dataset.pageId = hit.page_id;
    card.dataset.docId = hit.doc_id;
    card.dataset.pageNumber = String(hit.page_number);
    card.dataset.filename = name;
    card.querySelector(".rank").textContent = `#${i + 1}`;
    setBreakable(card.querySelector(".doc-name"), name);
    card.querySelector(".doc-name").title = hit.doc_id;
    card.querySelector(".page-no").textContent = `page ${hit.page_number}`;
    const relevance = Math.max(0, Math.min(1, Number(hit.relevance) || 0));
    card.querySelector(".relevance .fill").style.width = `${(relevance * 100).toFixed(1)}%`;
    card.querySelector(".relevance .value").textContent = `relevance ${relevance.toFixed(2)}`;
    card.querySelector(".relevance").title = `MaxSim score ${Number(hit.score).toFixed(3)}`;
    card.querySelector(".snippet").textContent = hit.text || "";
    card.querySelector(".page-id").textContent = hit.page_id;
    const img = card.querySelector("img");
    img.dataset.label = `Page ${hit.page_number} of ${name}`;
    const urls = imageUrls(hit);
    const link = card.querySelector(".image-link");
    if (urls) {
      link.href = urls.full;
      link.title = "Open the page image";
      if (auth.key) link.addEventListener("click", (event) => openWithKey(event, urls.full));
      setCardImage(card, urls);
    } else {
      link.removeAttribute("href");
      img.alt = `${img.dataset.label} (no image stored)`;
    }
    results.append(card);
  });
}

// Text that may wrap after "_", "-", "." and "/" (file names have no spaces), built as text nodes.
function setBreakable(element, text) {
  element.replaceChildren();
  for (const part of text.split(/(?<=[_\-./])/)) {
    element.append(document.createTextNode(part), document.createElement("wbr"));
  }
}

function setCardImage(card, urls) {
  const img = card.querySelector("img");
  const overlay = state.anchors && urls.overlay;
  card.classList.toggle("anchors", Boolean(overlay));
  img.alt = overlay ? `${img.dataset.label}, with its kept anchors outlined` : img.dataset.label;
  showImage(img, overlay ? urls.overlay : urls.page);
}

function refreshImages() {
  for (const card of $("results").querySelectorAll(".hit")) {
    const hit = state.hits.find((h) => h.page_id === card.dataset.pageId);
    const urls = hit && imageUrls(hit);
    if (urls) setCardImage(card, urls);
  }
}

async function openWithKey(event, url) {
  event.preventDefault();
  try {
    const response = await api(url, { raw: true });
    const blobUrl = URL.createObjectURL(await response.blob());
    state.objectUrls.push(blobUrl);
    window.open(blobUrl, "_blank", "noopener");
  } catch (error) {
    showError(error);
  }
}

// --- searching with an image ---------------------------------------------------------------------

function setQueryImage(file) {
  clearError();
  if (!file || !file.type.startsWith("image/")) {
    showError(
      file && file.type === "application/pdf"
        ? "To add a PDF to the index, drop it on “Add documents”. The search box takes images."
        : "Search with an image file (PNG, JPEG, ...)."
    );
    return;
  }
  const limit = state.limits.max_image_bytes;
  if (limit && file.size > limit) {
    showError(`${file.name} is ${formatBytes(file.size)}; this server takes query images up to ${formatBytes(limit)}.`);
    return;
  }
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.image = file;
  state.imageUrl = URL.createObjectURL(file);
  $("image-thumb").src = state.imageUrl;
  $("image-name").textContent = file.name || "pasted image";
  $("image-chip").hidden = false;
  $("query").hidden = true;
  search();
}

function clearQueryImage() {
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.image = null;
  state.imageUrl = null;
  $("image-input").value = "";
  $("image-chip").hidden = true;
  $("query").hidden = false;
  $("query").focus();
}

function firstFile(dataTransfer) {
  return dataTransfer && dataTransfer.files && dataTransfer.files.length ? dataTransfer.files[0] : null;
}

function dropTarget(element, onFiles) {
  let depth = 0;
  element.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    element.classList.add("dragging");
  });
  element.addEventListener("dragover", (event) => event.preventDefault());
  element.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) element.classList.remove("dragging");
  });
  element.addEventListener("drop", (event) => {
    event.preventDefault();
    event.stopPropagation();
    depth = 0;
    element.classList.remove("dragging");
    onFiles(event.dataTransfer);
  });
}

// --- wiring ------------------------------------------------------------------------------------

function wire() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  $("doc-filter").addEventListener("change", () => {
    markChosenDocument();
    if (hasQuery()) search();
  });
  $("k").addEventListener("change", () => hasQuery() && search());

  const toggle = $("anchors-toggle");
  toggle.checked = state.anchors;
  toggle.addEventListener("change", () => {
    state.anchors = toggle.checked;
    localStorage.setItem(ANCHORS_STORAGE, state.anchors ? "1" : "0");
    refreshImages();
  });

  $("image-pick").addEventListener("click", () => $("image-input").click());
  $("image-input").addEventListener("change", (event) => setQueryImage(event.target.files[0]));
  $("image-clear").addEventListener("click", clearQueryImage);
  dropTarget($("dropzone"), (data) => setQueryImage(firstFile(data)));
  $("query").addEventListener("paste", (event) => {
    const item = Array.from(event.clipboardData ? event.clipboardData.items : []).find((i) => i.type.startsWith("image/"));
    if (item) {
      event.preventDefault();
      setQueryImage(item.getAsFile());
    }
  });

  $("upload-input").addEventListener("change", (event) => {
    uploadFiles(event.target.files);
    event.target.value = "";
  });
  dropTarget($("upload-drop"), (data) => uploadFiles(data && data.files));

  // A file dropped anywhere else must not make the browser leave the page to show it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (event.key === "/" && !typing && !$("key-dialog").open) {
      event.preventDefault();
      $("query").focus();
    }
  });
}

async function start() {
  initUploads({
    limits: () => state.limits,
    showError,
    clearError,
    onIndexed: () => Promise.all([loadDocuments(), refreshInfo()]).catch(showError),
  });
  wire();
  try {
    await refreshInfo(); // answers 401 first when the server has a key: the dialog asks for it
    await loadDocuments();
  } catch (error) {
    showError(error);
    return;
  }
  const params = new URLSearchParams(location.search);
  const doc = params.get("doc");
  if (doc && Array.from($("doc-filter").options).some((o) => o.value === doc)) {
    $("doc-filter").value = doc;
    markChosenDocument();
  }
  if (params.get("q")) {
    $("query").value = params.get("q");
    search();
  } else {
    $("query").focus();
  }
}

document.body.dataset.ready = "false";
start().finally(() => {
  document.body.dataset.ready = "true";
});
