/**
 * The console's one link to the API and the only module that knows how it authenticates.
 * Today: an API token typed into the login form, kept in this tab's sessionStorage and
 * sent as `Authorization: Bearer`. When users and sessions land, this module switches to
 * `POST /v1/session` (the `__Host-novacron_session` cookie, sent by the browser) plus the
 * `X-CSRF-Token` header on writes; the pages call `api`, `apiFetch`, `login` and `logout`
 * and need not change.
 */

const STORAGE_KEY = "novacron.console.token";

/** An error the API returned (its `error` body), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}

let token: string | null = readStored();
const listeners = new Set<(reason: string | null) => void>();

function readStored(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

function setToken(value: string | null, reason: string | null): void {
  token = value;
  try {
    if (value) sessionStorage.setItem(STORAGE_KEY, value);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage refused (private mode): the login lasts as long as the page.
  }
  for (const l of listeners) l(value ? null : reason);
}

/** True when the console holds credentials (they may still turn out to be revoked). */
export function isLoggedIn(): boolean {
  return token !== null;
}

/** Calls `fn` when the login ends: `reason` says why (null for a login or a deliberate logout). */
export function onAuthChange(fn: (reason: string | null) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Logs in with an API token: kept only if the server accepts it. */
export async function login(secret: string): Promise<void> {
  const candidate = secret.trim();
  if (!candidate) throw new ApiError(400, "NOVA_VALIDATION", "Enter an API token.");
  const res = await send("/v1/hosts", { method: "GET" }, candidate);
  if (!res.ok) throw await errorOf(res);
  setToken(candidate, null);
}

/** Forgets the credentials. */
export function logout(reason: string | null = null): void {
  setToken(null, reason);
}

function send(path: string, init: RequestInit, credential: string | null): Promise<Response> {
  const headers = new Headers(init.headers);
  if (credential) headers.set("authorization", `Bearer ${credential}`);
  return fetch(path, { ...init, headers, credentials: "same-origin", cache: "no-store" });
}

/**
 * A request with the console's credentials. A 401 ends the login (expired or revoked);
 * anything else is the caller's to read.
 */
export async function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  let res: Response;
  try {
    res = await send(path, init, token);
  } catch (err) {
    throw new ApiError(0, "NETWORK", `The server did not answer (${(err as Error).message}).`);
  }
  if (res.status === 401 && token) {
    const e = await errorOf(res);
    logout(e.message);
    throw e;
  }
  return res;
}

/** Calls the API and returns its JSON reply; a refusal throws ApiError with the server's message. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await apiFetch(path, {
    method,
    ...(body === undefined
      ? {}
      : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

async function errorOf(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as {
      error?: { code?: string; message?: string; details?: Record<string, unknown> };
    };
    if (body.error?.message)
      return new ApiError(res.status, body.error.code ?? "UNKNOWN", body.error.message, body.error.details);
  } catch {
    // Not JSON: fall through to the status line.
  }
  return new ApiError(res.status, "HTTP", `The server answered ${res.status} ${res.statusText}.`);
}
