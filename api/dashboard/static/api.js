// Calls to the API, with the credential the user typed.
//
// The credential lives in sessionStorage: it goes when the tab closes and is never
// shared with other tabs or written to disk for later sessions, as localStorage would
// keep it indefinitely on a shared machine. Neither store protects it from a script
// injected into the page; the page's defence there is that it runs no script but its
// own (Content-Security-Policy) and puts the API's data in the page as text only.
// It is sent in headers only (never in a cookie or a URL): another site cannot make the
// browser send it, and no proxy or history records it.

const STORE_KEY = "zyra.credential";

// The API's root: two levels up from /ui/static/api.js (works behind a path prefix).
export const API_BASE = new URL("../../", import.meta.url);

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body;
  }
}

/** @returns {{kind: "api_key"|"bearer", value: string} | null} */
export function credential() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
    if (stored && (stored.kind === "api_key" || stored.kind === "bearer") && stored.value) {
      return stored;
    }
  } catch {
    // unreadable: as if signed out
  }
  return null;
}

export function remember(kind, value) {
  sessionStorage.setItem(STORE_KEY, JSON.stringify({ kind, value }));
}

export function forget() {
  sessionStorage.removeItem(STORE_KEY);
}

export function authHeaders(cred = credential()) {
  if (!cred) return {};
  return cred.kind === "bearer"
    ? { Authorization: `Bearer ${cred.value}` }
    : { "X-API-Key": cred.value };
}

export function apiUrl(path, query = {}) {
  const url = new URL(path.replace(/^\//, ""), API_BASE);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

/** One line saying what the API answered: its `message` (422), its `detail`, or the status. */
export function describeError(status, body) {
  if (body && typeof body.message === "string") return body.message;
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((p) => `${(p.loc || []).slice(1).join(".")}: ${p.msg}`).join("; ");
  }
  return `the server answered HTTP ${status}`;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's page): the status says it
  }
  let detail = describeError(response.status, body);
  const retry = response.headers.get("Retry-After");
  if (retry && (response.status === 429 || response.status === 503)) {
    detail += ` (retry in ${retry} s)`;
  }
  return new ApiError(response.status, detail, body);
}

// Whoever shows the page learns of a refused credential (to go back to sign-in).
let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/** JSON from the API, or ApiError. `cred` overrides the stored credential (sign-in). */
export async function request(path, { method = "GET", query, json, body, cred, signal } = {}) {
  const headers = { Accept: "application/json", ...authHeaders(cred || credential()) };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(apiUrl(path, query), {
    method, headers, body, signal, credentials: "omit", cache: "no-store",
  });
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401 && !cred) onUnauthorized(error);
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

/** `POST /upload`: the uploaded file's metadata (`file_id`, …). */
export function upload(file, signal) {
  const form = new FormData();
  form.append("file", file, file.name);
  return request("/upload", { method: "POST", body: form, signal });
}

function filenameOf(disposition, fallback) {
  if (disposition) {
    const star = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(disposition);
    if (star) {
      try {
        return decodeURIComponent(star[1].trim());
      } catch {
        // malformed: try the plain form
      }
    }
    const plain = /filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;\s]+)/.exec(disposition);
    if (plain) return plain[1] ?? plain[2];
  }
  return fallback;
}

/**
 * A job's output (or the zip of all when `file` is null) as a Blob and the file name the
 * server gives it. Downloads need the credential header, so a plain link cannot do.
 */
export async function fetchOutput(jobId, file) {
  const query = file ? { file } : {};
  const response = await fetch(apiUrl(`/jobs/${encodeURIComponent(jobId)}/download`, query), {
    headers: authHeaders(), credentials: "omit", cache: "no-store", redirect: "manual",
  });
  if (response.type === "opaqueredirect") {
    // To a presigned storage URL: another origin, which the page's CSP (and CORS) refuse.
    throw new ApiError(307, "this server sends downloads straight from storage "
      + "(ZYRA_S3_REDIRECT_DOWNLOADS), which the dashboard cannot follow; use the API or zyra-remote");
  }
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  const fallback = file ? file.split("/").pop() : `${jobId}.zip`;
  const name = filenameOf(response.headers.get("Content-Disposition"), fallback);
  return { blob: await response.blob(), name };
}

/** Save a Blob under `name` through the browser's own download. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

let catalogPromise = null;

/** `GET /cli/commands`, asked once per sign-in. */
export function catalog() {
  catalogPromise ??= request("/cli/commands").catch((error) => {
    catalogPromise = null;
    throw error;
  });
  return catalogPromise;
}

export function forgetCatalog() {
  catalogPromise = null;
}
