/**
 * The permission policy: what a principal may do. Every /v1 route and the execution
 * system's run-time check ask `authorize`, which denies by default. Today's principals:
 * admin tokens (everything), hosts, known by their client certificate (heartbeat), and
 * metrics scrapers, known by theirs (`/metrics` only).
 * The `join` kind is the API join token of old (migration 000006 revoked them all; agents
 * join with one-time host-bound tokens, cluster/store/join-tokens.ts). RBAC roles replace the table in `PERMISSIONS_BY_KIND` later without
 * touching the routes. A leaf: it imports nothing of ours beyond lib and api/types.
 */

/** What a route may require. */
export type Permission =
  | "hosts:read"
  | "hosts:write"
  | "images:read"
  | "images:write"
  | "vms:read"
  | "vms:write"
  | "events:read"
  | "executions:read"
  | "executions:write"
  | "executions:approve"
  | "executions:approve-own"
  | "executions:http"
  | "hosts:exec"
  | "secrets:read"
  | "secrets:write"
  | "secrets:use"
  | "tokens:read"
  | "tokens:write"
  | "federation:read"
  | "federation:write"
  | "metrics:read"
  | "metrics:credentials"
  | "agent:heartbeat";

/** Who is calling. */
export interface Principal {
  kind: "admin" | "join" | "host" | "scraper";
  id: string;
  name: string;
  /** Permissions granted to this token beyond its kind's (api_tokens.grants). */
  grants?: readonly string[];
}

/**
 * Permissions no kind holds by default; a token holds one only when it was granted
 * explicitly (`novacron token create NAME --grant …`). executions:approve-own lets a token
 * approve executions it submitted itself: without it, approving needs a second person.
 */
export const GRANTABLE_PERMISSIONS = ["executions:approve-own"] as const satisfies readonly Permission[];

const ALL: readonly Permission[] = [
  "hosts:read",
  "hosts:write",
  "images:read",
  "images:write",
  "vms:read",
  "vms:write",
  "events:read",
  "executions:read",
  "executions:write",
  "executions:approve",
  "executions:http",
  "hosts:exec",
  "secrets:read",
  "secrets:write",
  "secrets:use",
  "tokens:read",
  "tokens:write",
  "federation:read",
  "federation:write",
  "metrics:read",
  "metrics:credentials",
];

const PERMISSIONS_BY_KIND: Record<Principal["kind"], readonly Permission[]> = {
  admin: ALL,
  // Old API join tokens hold nothing: agents register with one-time host tokens.
  join: [],
  host: ["agent:heartbeat"],
  // A scraper certificate (novacron metrics credentials) reads /metrics and nothing else.
  scraper: ["metrics:read"],
};

/** True when `principal` holds `permission` by its kind or by a grant. Unknown kinds hold nothing. */
export function authorize(principal: Principal, permission: Permission): boolean {
  if (PERMISSIONS_BY_KIND[principal.kind]?.includes(permission)) return true;
  // Grants only ever add the grantable permissions, and only to token kinds that exist.
  return (
    principal.kind in PERMISSIONS_BY_KIND &&
    (GRANTABLE_PERMISSIONS as readonly string[]).includes(permission) &&
    (principal.grants?.includes(permission) ?? false)
  );
}
