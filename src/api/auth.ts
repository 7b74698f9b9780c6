/**
 * Authentication and the authorisation check point. Every /v1 route declares the
 * permission it needs; an onRequest hook — before the body is read, so an unauthenticated
 * caller learns nothing from validation — resolves the caller to a principal — an API token
 * from the bearer header, or a host from the client certificate its TLS connection
 * presented — and asks `authorize` (policy/permissions.ts), which denies by default.
 */
import { TLSSocket } from "node:tls";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { ReadQueryable } from "../cluster/store/db.js";
import { findHostByCertSerial } from "../cluster/store/hosts.js";
import { findToken } from "../cluster/store/tokens.js";
import { bearerToken } from "../lib/bearer.js";
import { NovaError } from "../lib/errors.js";
import { authorize, type Permission, type Principal } from "../policy/permissions.js";
import { identityOf, normaliseSerial, urisOf } from "../security/pki.js";

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

/** Resolves an API token to a principal; undefined when unknown or revoked. */
export async function resolvePrincipal(q: ReadQueryable, token: string): Promise<Principal | undefined> {
  const record = await findToken(q, token);
  if (record) return { kind: record.kind, id: record.id, name: record.name, grants: record.grants };
  return undefined;
}

/** The client certificate the request's TLS connection presented and the TLS layer verified against the cluster CA. */
export function verifiedPeerCert(request: FastifyRequest): { serial: string; uris: string[] } | undefined {
  const socket = request.raw.socket;
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const cert = socket.getPeerCertificate();
  if (!cert?.serialNumber) return undefined;
  return { serial: normaliseSerial(cert.serialNumber), uris: urisOf(cert.subjectaltname) };
}

/**
 * The host a request's client certificate names, if that certificate is the host's
 * current one: a replaced or removed host's old certificate chains to the CA but names
 * no host any more, so it is refused like an unknown one.
 */
export async function hostFromCertificate(
  q: ReadQueryable,
  request: FastifyRequest,
): Promise<Principal | undefined> {
  const cert = verifiedPeerCert(request);
  if (!cert) return undefined;
  const identity = identityOf(cert.uris);
  if (identity.role !== "host") return undefined;
  const host = await findHostByCertSerial(q, cert.serial);
  if (!host || host.id !== identity.hostId) return undefined;
  return { kind: "host", id: host.id, name: host.name };
}

/**
 * The metrics scraper a request's client certificate names (`novacron metrics
 * credentials`): any certificate of the cluster CA with the scraper identity. Its only
 * permission is metrics:read.
 */
export function scraperFromCertificate(request: FastifyRequest): Principal | undefined {
  const cert = verifiedPeerCert(request);
  if (!cert || identityOf(cert.uris).role !== "scraper") return undefined;
  return { kind: "scraper", id: cert.serial, name: `scraper ${cert.serial}` };
}

/** An onRequest hook that authenticates and checks `permission`. */
export function requirePermission(q: () => ReadQueryable, permission: Permission) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const principal = request.headers.authorization
      ? await resolvePrincipal(q(), bearerToken(request))
      : (scraperFromCertificate(request) ?? (await hostFromCertificate(q(), request)));
    if (!principal) {
      if (!request.headers.authorization && verifiedPeerCert(request)) {
        throw new NovaError(
          "NOVA_UNAUTHENTICATED",
          "This client certificate is neither a host's current certificate (the host was removed or replaced: join it again with a new join token) nor a metrics scraper's.",
        );
      }
      if (!request.headers.authorization) bearerToken(request); // throws the "missing bearer token" error
      throw new NovaError(
        "NOVA_UNAUTHENTICATED",
        "Unknown or revoked token. Log in again with a valid token.",
      );
    }
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
