/**
 * The console's one link to the API and the only module that knows how it authenticates:
 * a user's login session. `POST /v1/session` sets the `__Host-novacron_session` cookie
 * (HttpOnly: no script of the page can read it; the browser sends it with every
 * same-origin request) and answers with the session's CSRF token, which is kept here in
 * memory only — never in sessionStorage or localStorage — and sent as `X-CSRF-Token` with
 * every request that is not a GET. A reload asks `GET /v1/session` for it again. A 401
 * from any call ends the login here, with the server's reason for the login page.
 */
import type { SessionInfo, SessionPost } from "../../api/types/users.js";

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

/** Where the login stands: being restored after a reload, logged in, or logged out. */
export type AuthState = "restoring" | "in" | "out";

let state: AuthState = "restoring";
let current: SessionInfo | null = null;
const listeners = new Set<(reason: string | null) => void>();

function set(next: SessionInfo | null, reason: string | null): void {
  current = next;
  state = next ? "in" : "out";
  for (const l of listeners) l(next ? null : reason);
}

/** The login's state. */
export function authState(): AuthState {
  return state;
}

/** Who is logged in, their role, permissions and MFA state; null when logged out. */
export function whoAmI(): SessionInfo | null {
  return current;
}

/** True when the logged-in user may do `permission` (the API decides anyway). */
export function may(permission: string): boolean {
  return current?.permissions.includes(permission) ?? false;
}

/** Calls `fn` when the login changes: `reason` says why it ended (null for a login, a refresh or a deliberate logout). */
export function onAuthChange(fn: (reason: string | null) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/**
 * Restores the login after a page load from the cookie, if the browser holds a live one.
 * An ended session's reason is shown; no cookie at all is simply "logged out".
 */
export async function restoreLogin(): Promise<void> {
  try {
    set(await api<SessionInfo>("GET", "/v1/session"), null);
  } catch (err) {
    const expired = err instanceof ApiError && err.code === "NOVA_SESSION_EXPIRED";
    set(null, expired || (err instanceof ApiError && err.status !== 401) ? (err as ApiError).message : null);
  }
}

/** Reads the session again (after the user changed their own MFA or password). */
export async function refreshLogin(): Promise<void> {
  set(await api<SessionInfo>("GET", "/v1/session"), null);
}

/**
 * Logs in with a username and password, plus a TOTP or recovery code when the account
 * has a second factor. A refusal throws the API's error: `NOVA_MFA_REQUIRED` means "ask
 * for the code and send it all again".
 */
export async function login(credentials: Omit<SessionPost, "delivery">): Promise<void> {
  const res = await send("/v1/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...credentials, delivery: "cookie" }),
  });
  if (!res.ok) throw await errorOf(res);
  set((await res.json()) as SessionInfo, null);
}

/** Ends the session on the server (which clears the cookie), then here whatever the answer. */
export async function logout(): Promise<void> {
  try {
    await send("/v1/session", { method: "DELETE" });
  } finally {
    set(null, null);
  }
}

function send(path: string, init: RequestInit): Promise<Response> {
  const headers = new Headers(init.headers);
  const method = (init.method ?? "GET").toUpperCase();
  if (method !== "GET" && method !== "HEAD" && current?.session)
    headers.set("x-csrf-token", current.session.csrfToken);
  return fetch(path, { ...init, headers, credentials: "same-origin", cache: "no-store" }).catch((err) => {
    throw new ApiError(0, "NETWORK", `The server did not answer (${(err as Error).message}).`);
  });
}

/**
 * A request with the console's session. A 401 saying the session is gone (it expired, was
 * logged out elsewhere, or its user was deleted or had their password reset) ends the
 * login with the server's message; any other 401 is thrown, and other statuses are the
 * caller's to read.
 */
export async function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  const res = await send(path, init);
  if (res.status === 401 && state === "in") {
    // A 401 that rejects a secret typed on a page (a wrong current password or TOTP code)
    // is that form's error; only these two say the session itself is gone.
    const e = await errorOf(res);
    if (e.code === "NOVA_SESSION_EXPIRED" || e.code === "NOVA_UNAUTHENTICATED") set(null, e.message);
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
