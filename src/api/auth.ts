/**
 * Authentication and the authorisation check point. Every /v1 route declares the
 * permission it needs; a preHandler resolves the bearer token to a principal and asks
 * `authorize` (policy/permissions.ts), which denies by default.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { ReadQueryable } from "../cluster/store/db.js";
import { findHostByToken } from "../cluster/store/hosts.js";
import { findToken } from "../cluster/store/tokens.js";
import { bearerToken } from "../lib/bearer.js";
import { NovaError } from "../lib/errors.js";
import { authorize, type Permission, type Principal } from "../policy/permissions.js";

export {
  authorize,
  GRANTABLE_PERMISSIONS,
  type Permission,
  type Principal,
} from "../policy/permissions.js";

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** Resolves a token to a principal: API tokens first, then host credentials. */
export async function resolvePrincipal(q: ReadQueryable, token: string): Promise<Principal | undefined> {
  const record = await findToken(q, token);
  if (record) return { kind: record.kind, id: record.id, name: record.name, grants: record.grants };
  if (token.startsWith("nvh_")) {
    const host = await findHostByToken(q, token);
    if (host) return { kind: "host", id: host.id, name: host.name };
  }
  return undefined;
}

/** A preHandler that authenticates and checks `permission`. */
export function requirePermission(q: () => ReadQueryable, permission: Permission) {
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
