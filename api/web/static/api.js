// Calls to /api/v1 through the session cookie; writes carry the session's CSRF token.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const RANK = { read: 0, write: 1, admin: 2 };
let current = null;
let onSignedOut = () => {};

export function session() {
  return current;
}

export function whenSignedOut(callback) {
  onSignedOut = callback;
}

/** Whether the signed-in token grants `scope` (the API checks again on every call). */
export function can(scope) {
  return current !== null && current.scopes.some((s) => RANK[s] >= RANK[scope]);
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && current) headers["X-CSRF-Token"] = current.csrf;
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    const failure = new ApiError(
      response.status,
      error.code || "http_error",
      error.message || `${response.status} ${response.statusText}`,
    );
    if (response.status === 401 && current !== null && !path.startsWith("/session")) {
      current = null;
      onSignedOut(failure);
    }
    throw failure;
  }
  return data;
}

/** Every item of a paged list endpoint. */
export async function all(path, signal) {
  const items = [];
  const join = path.includes("?") ? "&" : "?";
  let offset = 0;
  for (;;) {
    const page = await api(`${path}${join}limit=1000&offset=${offset}`, { signal });
    items.push(...page.items);
    if (page.next_offset === null || page.next_offset === undefined) return items;
    offset = page.next_offset;
  }
}

export async function resume() {
  try {
    current = await api("/session");
  } catch (error) {
    if (error.status !== 401) throw error;
    current = null;
  }
  return current;
}

export async function signIn(token) {
  current = await api("/session", { method: "POST", body: { token } });
  return current;
}

export async function signOut() {
  try {
    await api("/session", { method: "DELETE" });
  } finally {
    current = null;
  }
}

/** A selector as a query parameter. */
export function q(selector) {
  return encodeURIComponent(selector);
}
