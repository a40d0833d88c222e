// Uploads: POST /documents with the files (upload progress from the XMLHttpRequest), then poll
// /jobs/{id} until the job is done, showing its progress and each file's result.

import { askForKey, auth, api, authHeaders } from "./api.js";

const POLL_MS = 600;
const POLL_LIMIT_MS = 6 * 60 * 60 * 1000; // stop polling a job after six hours

// Set by initUploads: limits() (the server's), showError, clearError, onIndexed() (refresh the page's lists).
let options = null;

export function initUploads(given) {
  options = given;
}

export function formatBytes(bytes) {
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
  document.getElementById("upload-status").prepend(box);
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

export function uploadFiles(fileList) {
  options.clearError();
  const files = Array.from(fileList || []);
  if (!files.length) return;
  const { max_files: maxFiles, max_file_bytes: maxBytes } = options.limits();
  if (maxFiles && files.length > maxFiles) {
    options.showError(`${files.length} files; this server takes at most ${maxFiles} in one upload.`);
    return;
  }
  const big = maxBytes ? files.find((f) => f.size > maxBytes) : null;
  if (big) {
    options.showError(`${big.name} is ${formatBytes(big.size)}; this server takes files up to ${formatBytes(maxBytes)}.`);
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
      await askForKey(auth.key ? "That key was refused." : "");
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
      await options.onIndexed();
      return;
    }
    const label = job.state === "queued" ? "Waiting for the indexer…" : `Indexing: ${p.files_done || 0} of ${total} files, ${p.pages_done || 0} pages`;
    view.set(label, fraction);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  view.set("Still indexing; reload the page later to see the documents.", null);
}
