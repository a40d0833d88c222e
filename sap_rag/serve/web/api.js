// Talking to the server: JSON requests relative to this page, its errors, and the API key (asked for
// when the server answers 401, kept in sessionStorage for this tab).

const KEY_STORAGE = "sap-rag-api-key";

export const auth = { key: sessionStorage.getItem(KEY_STORAGE) || "", prompt: null };

export class ApiError extends Error {
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

export function authHeaders() {
  return auth.key ? { "X-API-Key": auth.key } : {};
}

// JSON (or the raw Response with raw: true) from a path relative to this page; asks for the API key
// and retries when the server answers 401.
export async function api(path, { method = "GET", json, body, raw = false } = {}) {
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
    await askForKey(auth.key ? "That key was refused." : "");
    return api(path, { method, json, body, raw });
  }
  if (!response.ok) throw await errorOf(response);
  return raw ? response : response.json();
}

export function askForKey(problem) {
  if (auth.prompt) return auth.prompt;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const error = document.getElementById("key-error");
  error.hidden = !problem;
  error.textContent = problem || "";
  input.value = "";
  auth.prompt = new Promise((resolve) => {
    const form = document.getElementById("key-form");
    const onSubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (key.length < 8) {
        error.hidden = false;
        error.textContent = "An API key has at least 8 characters.";
        return;
      }
      auth.key = key;
      sessionStorage.setItem(KEY_STORAGE, key);
      form.removeEventListener("submit", onSubmit);
      dialog.close();
      auth.prompt = null;
      resolve();
    };
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", (event) => event.preventDefault()); // the page needs the key
  });
  dialog.showModal();
  input.focus();
  return auth.prompt;
}

export function withParams(url, params) {
  const target = new URL(url, document.baseURI);
  for (const [name, value] of Object.entries(params)) target.searchParams.set(name, String(value));
  return target.pathname + target.search;
}
