/**
 * The permission policy: what a principal may do. Every /v1 route and the execution
 * system's run-time check ask `authorize`, which denies by default. The principals: admin
 * tokens (everything), hosts, known by their client certificate (heartbeat), metrics
 * scrapers, known by theirs (`/metrics` only), and users,
 * logged in with a password (and a second factor), whose role decides
 * (`PERMISSIONS_BY_ROLE`). The `join` kind is the API join token of old (migration 000006
 * revoked them all; agents join with one-time host-bound tokens,
 * cluster/store/join-tokens.ts). A leaf: it imports nothing of ours beyond lib and
 * api/types.
 */
import type { Role } from "../api/types/users.js";

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
  | "alerts:read"
  | "placement:read"
  | "placement:write"
  | "users:read"
  | "users:write"
  | "agent:heartbeat";

/** Who is calling. */
export interface Principal {
  kind: "admin" | "join" | "host" | "scraper" | "user";
  /** The token's, host's, scraper certificate's or user's id. */
  id: string;
  name: string;
  /** A user's role (kind "user" only). */
  role?: Role;
  /** The login session a user's request came with (kind "user" only). */
  sessionId?: string;
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
  "alerts:read",
  "placement:read",
  "placement:write",
  "users:read",
  "users:write",
];

const PERMISSIONS_BY_KIND: Record<Exclude<Principal["kind"], "user">, readonly Permission[]> = {
  admin: ALL,
  // Old API join tokens hold nothing: agents register with one-time host tokens.
  join: [],
  host: ["agent:heartbeat"],
  // A scraper certificate (novacron metrics credentials) reads /metrics and nothing else.
  scraper: ["metrics:read"],
};

const READ: readonly Permission[] = [
  "hosts:read",
  "images:read",
  "vms:read",
  "events:read",
  "executions:read",
  "federation:read",
  "metrics:read",
  "alerts:read",
  "placement:read",
];

/**
 * What each user role may do. An operator runs the fleet: hosts (cordon, drain, join
 * tokens, removal), images, VMs and their migrations, executions (submit, cancel, approve
 * others'), placement groups, and reads the federation. Only an admin manages tokens, users, secrets and
 * peers, and runs the step kinds that reach beyond NovaCron: `host.command` (a command
 * as root on a host) and `http` (the server calling out), which is why hosts:exec and
 * executions:http are an admin's. A viewer reads what an operator sees and changes
 * nothing.
 */
export const PERMISSIONS_BY_ROLE: Record<Role, readonly Permission[]> = {
  admin: ALL,
  operator: [
    ...READ,
    "hosts:write",
    "images:write",
    "vms:write",
    "placement:write",
    "executions:write",
    "executions:approve",
    "secrets:use",
  ],
  viewer: READ,
};

/** Every permission `principal` holds (for `GET /v1/session`, so a UI can hide what it may not do). */
export function permissionsOf(principal: Principal): Permission[] {
  const all: Permission[] = [...ALL, ...GRANTABLE_PERMISSIONS, "agent:heartbeat"];
  return all.filter((p) => authorize(principal, p));
}

/** True when `principal` holds `permission` by its kind (a user: its role) or by a grant. Unknown kinds hold nothing. */
export function authorize(principal: Principal, permission: Permission): boolean {
  if (principal.kind === "user")
    return (
      principal.role !== undefined && (PERMISSIONS_BY_ROLE[principal.role]?.includes(permission) ?? false)
    );
  if (PERMISSIONS_BY_KIND[principal.kind]?.includes(permission)) return true;
  // Grants only ever add the grantable permissions, and only to token kinds that exist.
  return (
    principal.kind in PERMISSIONS_BY_KIND &&
    (GRANTABLE_PERMISSIONS as readonly string[]).includes(permission) &&
    (principal.grants?.includes(permission) ?? false)
  );
}
