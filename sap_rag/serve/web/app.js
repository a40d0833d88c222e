// sap-rag web page: search an index by text or image, look at the pages and their kept anchors,
// upload documents. Plain JavaScript, no build step, nothing loaded from elsewhere.
// Text from the server is only ever set with textContent / attributes, never parsed as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "sap-rag-api-key";
  const ANCHORS_STORAGE = "sap-rag-anchors";
  const IMAGE_SIDE = 640; // result images: shown ~300 px wide, so 2x for sharp screens
  const FULL_SIDE = 2048; // the image a result links to
  const SNIPPET = 280;
  const POLL_MS = 600;
  const POLL_LIMIT_MS = 6 * 60 * 60 * 1000; // stop polling a job after six hours
  const DOCS_LIMIT = 1000;

  const $ = (id) => document.getElementById(id);
  const state = {
    apiKey: sessionStorage.getItem(KEY_STORAGE) || "",
    keyPrompt: null, // a Promise while the key dialog is open
    image: null, // the query image (a File), or null for a text search
    imageUrl: null,
    hits: [],
    anchors: localStorage.getItem(ANCHORS_STORAGE) === "1",
    objectUrls: [],
    searchSeq: 0,
    limits: {},
  };

  // --- talking to the server ---------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function errorOf(response) {
    let message = `${response.status} ${response.statusText}`.trim();
    try {
      const body = await response.json();
      if (body && body.error && typeof body.error.message === "string") message = body.error.message;
    } catch (_) {
      /* not JSON: keep the status line */
    }
    return new ApiError(response.status, message);
  }

  function authHeaders() {
    return state.apiKey ? { "X-API-Key": state.apiKey } : {};
  }

  // JSON (or the raw Response with raw: true) from a path relative to this page; asks for the API key
  // and retries when the server answers 401.
  async function api(path, { method = "GET", json, body, raw = false } = {}) {
    const headers = authHeaders();
    let payload = body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload });
    } catch (_) {
      throw new ApiError(0, "The server did not answer. Is it still running?");
    }
    if (response.status === 401) {
      await askForKey(state.apiKey ? "That key was refused." : "");
      return api(path, { method, json, body, raw });
    }
    if (!response.ok) throw await errorOf(response);
    return raw ? response : response.json();
  }

  function askForKey(problem) {
    if (state.keyPrompt) return state.keyPrompt;
    const dialog = $("key-dialog");
    const input = $("key-input");
    const error = $("key-error");
    error.hidden = !problem;
    error.textContent = problem || "";
    input.value = "";
    state.keyPrompt = new Promise((resolve) => {
      const form = $("key-form");
      const onSubmit = (event) => {
        event.preventDefault();
        const key = input.value.trim();
        if (key.length < 8) {
          error.hidden = false;
          error.textContent = "An API key has at least 8 characters.";
          return;
        }
        state.apiKey = key;
        sessionStorage.setItem(KEY_STORAGE, key);
        form.removeEventListener("submit", onSubmit);
        dialog.close();
        state.keyPrompt = null;
        resolve();
      };
      form.addEventListener("submit", onSubmit);
      dialog.addEventListener("cancel", (event) => event.preventDefault()); // the page needs the key
    });
    dialog.showModal();
    input.focus();
    return state.keyPrompt;
  }

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

  function withParams(url, params) {
    const target = new URL(url, document.baseURI);
    for (const [name, value] of Object.entries(params)) target.searchParams.set(name, String(value));
    return target.pathname + target.search;
  }

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
    if (!state.apiKey) {
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

  // --- stats and documents -------------------------------------------------------------------------

  const number = new Intl.NumberFormat();

  function setStat(name, text, title) {
    const cell = document.querySelector(`[data-stat="${name}"]`);
    if (!cell) return;
    cell.textContent = text;
    if (title) cell.title = title;
  }

  async function loadInfo() {
    const info = await api("info");
    const stats = info.stats || {};
    state.limits = info.limits || {};
    setStat("documents", number.format(stats.documents ?? 0));
    setStat("pages", number.format(stats.pages ?? 0));
    setStat("vectors_per_page", stats.pages ? Number(stats.vectors_per_page).toFixed(1) : "–");
    setStat("keep_ratio", typeof stats.keep_ratio === "number" ? `${Math.round(stats.keep_ratio * 100)}%` : "–");
    // A local checkpoint's folder name, not its server-side path (the full spec is in the tooltip).
    const model = typeof stats.model === "string" ? stats.model : "";
    const isPath = /^([./~\\]|[A-Za-z]:)/.test(model) || model.split("/").length > 2; // not a hub id "org/name"
    setStat("model", (isPath ? model.split(/[\\/]/).filter(Boolean).pop() : model) || "–", model);
  }

  function documentName(doc) {
    const meta = doc.metadata || {};
    return (typeof doc.filename === "string" && doc.filename) || (typeof meta.filename === "string" && meta.filename) || doc.doc_id;
  }

  async function loadDocuments() {
    const data = await api(`documents?limit=${DOCS_LIMIT}`);
    const docs = data.documents || [];
    const select = $("doc-filter");
    const chosen = select.value;
    while (select.options.length > 1) select.remove(1);
    for (const doc of docs) {
      const option = document.createElement("option");
      option.value = doc.doc_id;
      option.textContent = `${documentName(doc)} (${doc.pages} p.)`;
      select.append(option);
    }
    select.value = docs.some((d) => d.doc_id === chosen) ? chosen : "";

    const list = $("doc-list");
    list.replaceChildren();
    const total = typeof data.total === "number" ? data.total : docs.length;
    $("docs-count").textContent = `(${number.format(total)})`;
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

  function markChosenDocument() {
    const chosen = $("doc-filter").value;
    for (const button of $("doc-list").querySelectorAll("button[data-doc-id]")) {
      button.setAttribute("aria-pressed", String(button.dataset.docId === chosen));
    }
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
        if (state.apiKey) link.addEventListener("click", (event) => openWithKey(event, urls.full));
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

  // --- uploads -----------------------------------------------------------------------------------

  function formatBytes(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function jobView(files) {
    const box = document.createElement("div");
    box.className = "job";
    const title = document.createElement("div");
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    const list = document.createElement("ul");
    box.append(title, bar, list);
    $("upload-status").prepend(box);
    const names = files.map((f) => f.name).join(", ");
    bar.setAttribute("aria-label", `Progress of ${names}`);
    return {
      box,
      set(text, value) {
        title.textContent = text;
        if (value === null) bar.removeAttribute("value");
        else bar.value = value;
      },
      results(items) {
        list.replaceChildren();
        for (const item of items) {
          const li = document.createElement("li");
          if (item.error) {
            li.className = "failed";
            li.textContent = `${item.file}: ${item.error}`;
          } else {
            li.className = "ok";
            const what = item.status === "unchanged" ? "already indexed" : `${item.pages} page${item.pages === 1 ? "" : "s"}`;
            li.textContent = `${item.file}: ${what}`;
          }
          list.append(li);
        }
      },
    };
  }

  function uploadFiles(fileList) {
    clearError();
    const files = Array.from(fileList || []);
    if (!files.length) return;
    const { max_files: maxFiles, max_file_bytes: maxBytes } = state.limits;
    if (maxFiles && files.length > maxFiles) {
      showError(`${files.length} files; this server takes at most ${maxFiles} in one upload.`);
      return;
    }
    const big = maxBytes ? files.find((f) => f.size > maxBytes) : null;
    if (big) {
      showError(`${big.name} is ${formatBytes(big.size)}; this server takes files up to ${formatBytes(maxBytes)}.`);
      return;
    }
    const view = jobView(files);
    view.set(`Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`, 0);
    send(files, view);
  }

  function send(files, view) {
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", "documents");
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) view.set(`Uploading… ${formatBytes(event.loaded)} of ${formatBytes(event.total)}`, event.loaded / event.total * 0.3);
    };
    request.onerror = () => {
      view.set("The upload failed: the server did not answer.", 0);
      view.box.dataset.state = "failed";
    };
    request.onload = async () => {
      if (request.status === 401) {
        await askForKey(state.apiKey ? "That key was refused." : "");
        send(files, view);
        return;
      }
      let body = null;
      try {
        body = JSON.parse(request.responseText);
      } catch (_) {
        /* handled below */
      }
      if (request.status !== 202 || !body || !body.job_id) {
        const message = body && body.error ? body.error.message : `the server answered ${request.status}`;
        view.set(`Not uploaded: ${message}`, 0);
        view.box.dataset.state = "failed";
        return;
      }
      follow(body.job_id, view);
    };
    request.send(form);
  }

  async function follow(jobId, view) {
    const started = Date.now();
    while (Date.now() - started < POLL_LIMIT_MS) {
      let job;
      try {
        job = await api(`jobs/${encodeURIComponent(jobId)}`);
      } catch (error) {
        view.set(`Lost track of the upload: ${error.message}`, 0);
        return;
      }
      const p = job.progress || {};
      const total = p.files_total || 1;
      const fraction = 0.3 + 0.7 * (p.files_done || 0) / total;
      view.results(job.results || []);
      if (job.state === "done" || job.state === "failed") {
        const failed = (job.results || []).filter((r) => r.error).length;
        const added = (job.results || []).length - failed;
        let text = job.state === "done" ? `Indexed: ${added} document${added === 1 ? "" : "s"}, ${p.pages_done || 0} pages` : "Indexing failed";
        if (failed) text += `; ${failed} file${failed === 1 ? "" : "s"} not indexed`;
        if (job.error) text += ` (${job.error})`;
        view.set(text, 1);
        view.box.dataset.state = job.state;
        await Promise.all([loadDocuments(), loadInfo()]).catch(showError);
        return;
      }
      const label = job.state === "queued" ? "Waiting for the indexer…" : `Indexing: ${p.files_done || 0} of ${total} files, ${p.pages_done || 0} pages`;
      view.set(label, fraction);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    view.set("Still indexing; reload the page later to see the documents.", null);
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
    wire();
    try {
      await loadInfo(); // answers 401 first when the server has a key: the dialog asks for it
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
})();
