/**
 * Authentication and the authorisation check point. Every /v1 route declares the
 * permission it needs; a preHandler resolves the bearer token to a principal and asks
 * `authorize`, which denies by default. Today's principals: admin tokens (everything),
 * join tokens (register an agent), host credentials (heartbeat). RBAC roles replace the
 * table in `PERMISSIONS_BY_KIND` later without touching the routes.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Queryable } from "../cluster/store/db.js";
import { findHostByToken } from "../cluster/store/hosts.js";
import { findToken } from "../cluster/store/tokens.js";
import { bearerToken } from "../lib/bearer.js";
import { NovaError } from "../lib/errors.js";

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
  | "agent:register"
  | "agent:heartbeat";

/** Who is calling. */
export interface Principal {
  kind: "admin" | "join" | "host";
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
];

const PERMISSIONS_BY_KIND: Record<Principal["kind"], readonly Permission[]> = {
  admin: ALL,
  join: ["agent:register"],
  host: ["agent:heartbeat"],
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

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** Resolves a token to a principal: API tokens first, then host credentials. */
export async function resolvePrincipal(q: Queryable, token: string): Promise<Principal | undefined> {
  const record = await findToken(q, token);
  if (record) return { kind: record.kind, id: record.id, name: record.name, grants: record.grants };
  if (token.startsWith("nvh_")) {
    const host = await findHostByToken(q, token);
    if (host) return { kind: "host", id: host.id, name: host.name };
  }
  return undefined;
}

/** A preHandler that authenticates and checks `permission`. */
export function requirePermission(q: () => Queryable, permission: Permission) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const token = bearerToken(request);
    const principal = await resolvePrincipal(q(), token);
    if (!principal)
      throw new NovaError(
        "NOVA_UNAUTHENTICATED",
        "Unknown or revoked token. Log in again with a valid token.",
      );
    if (!authorize(principal, permission)) {
      throw new NovaError(
        "NOVA_FORBIDDEN",
        `A ${principal.kind} token may not do this (needs ${permission}).`,
        {
          details: { principal: principal.kind, needs: permission },
        },
      );
    }
    request.principal = principal;
  };
}
