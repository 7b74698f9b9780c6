/**
 * Authentication and the authorisation check point. Every /v1 route declares the
 * permission it needs; an onRequest hook — before the body is read, so an unauthenticated
 * caller learns nothing from validation — resolves the caller to a principal — an API token
 * or a user's session token from the bearer header, a user's session from the console's
 * cookie (whose state-changing requests must carry the CSRF token, csrf.ts), or a host or
 * a metrics scraper from the client certificate its TLS connection presented — and asks
 * `authorize`
 * (policy/permissions.ts), which denies by default.
 */
import { TLSSocket } from "node:tls";
import type {} from "@fastify/cookie";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { ReadQueryable } from "../cluster/store/db.js";
import { findHostByCertSerial } from "../cluster/store/hosts.js";
import { isScraperCertRevoked } from "../cluster/store/scraper-certs.js";
import { findToken } from "../cluster/store/tokens.js";
import { SESSION_TOKEN_PREFIX, type SessionRow } from "../cluster/store/user-sessions.js";
import type { UserService } from "../cluster/user-service.js";
import { bearerToken } from "../lib/bearer.js";
import { isNovaError, NovaError } from "../lib/errors.js";
import { authorize, type Permission, type Principal } from "../policy/permissions.js";
import { identityOf, normaliseSerial, urisOf } from "../security/pki.js";
import { assertCsrfToken, needsCsrfToken } from "./csrf.js";

export {
  authorize,
  GRANTABLE_PERMISSIONS,
  type Permission,
  type Principal,
} from "../policy/permissions.js";

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
    credential?: Credential;
  }
}

/** The console's session cookie (`__Host-`: Secure, Path=/, no Domain, so no other host or path can set it). */
export const SESSION_COOKIE = "__Host-novacron_session";

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

/** How a request proved who it is: kept on the request so a long stream can check it again. */
export type Credential =
  | { kind: "token"; secret: string }
  | { kind: "session"; secret: string; via: "cookie" | "bearer" }
  | { kind: "certificate" };

/** What the check point reads principals from. */
export interface AuthSources {
  read: () => ReadQueryable;
  users: UserService;
}

/** What a route requires: a permission, or only that the caller is somebody (`GET /v1/session`). */
export type Requirement = Permission | "authenticated";

/** The principal of a login session: the user, with the role they have now. */
export function sessionPrincipal(session: SessionRow): Principal {
  return {
    kind: "user",
    id: session.userId,
    name: session.username,
    role: session.role,
    sessionId: session.id,
  };
}

function unknownSession(): NovaError {
  return new NovaError(
    "NOVA_UNAUTHENTICATED",
    "Not logged in: this session is unknown (logged out, or the user was deleted or had their password reset). Log in again.",
  );
}

/**
 * Resolves the request's credential to a principal: a bearer header (an API token, or a
 * session token `nvs_…` from `novacron login --user`), else the session cookie (with the
 * CSRF token on state-changing methods), else a client certificate. Throws 401 for a
 * credential that is missing, unknown or ended, 403 for a missing or wrong CSRF token.
 */
export async function authenticate(
  sources: AuthSources,
  request: FastifyRequest,
): Promise<{ principal: Principal; credential: Credential }> {
  if (request.headers.authorization) {
    const secret = bearerToken(request);
    if (secret.startsWith(SESSION_TOKEN_PREFIX)) {
      const session = await sources.users.resolveSession(secret);
      if (!session) throw unknownSession();
      return { principal: sessionPrincipal(session), credential: { kind: "session", secret, via: "bearer" } };
    }
    const principal = await resolvePrincipal(sources.read(), secret);
    if (!principal)
      throw new NovaError(
        "NOVA_UNAUTHENTICATED",
        "Unknown or revoked token. Log in again with a valid token.",
      );
    return { principal, credential: { kind: "token", secret } };
  }
  const cookie = request.cookies?.[SESSION_COOKIE];
  if (cookie) {
    const session = await sources.users.resolveSession(cookie);
    if (!session) throw unknownSession();
    if (needsCsrfToken(request.method)) assertCsrfToken(request, session.csrfToken);
    return {
      principal: sessionPrincipal(session),
      credential: { kind: "session", secret: cookie, via: "cookie" },
    };
  }
  const scraper = scraperFromCertificate(request);
  if (scraper) {
    if (await isScraperCertRevoked(sources.read(), scraper.id))
      throw new NovaError(
        "NOVA_UNAUTHENTICATED",
        `This metrics scraper's certificate (serial ${scraper.id}) was revoked; make new credentials with novacron metrics credentials.`,
      );
    return { principal: scraper, credential: { kind: "certificate" } };
  }
  const host = await hostFromCertificate(sources.read(), request);
  if (host) return { principal: host, credential: { kind: "certificate" } };
  if (verifiedPeerCert(request)) {
    throw new NovaError(
      "NOVA_UNAUTHENTICATED",
      "This client certificate is neither a host's current certificate (the host was removed or replaced: join it again with a new join token) nor a metrics scraper's.",
    );
  }
  throw new NovaError(
    "NOVA_UNAUTHENTICATED",
    "Not authenticated: send 'Authorization: Bearer <token>' (novacron login stores one) or log in (POST /v1/session sets the session cookie).",
  );
}

/**
 * True while a credential still names a principal: an unrevoked token, a live session
 * (checked without counting as use, so an open event stream does not keep an idle
 * session alive). Long streams ask this on every heartbeat.
 */
export async function stillValid(sources: AuthSources, credential: Credential): Promise<boolean> {
  if (credential.kind === "token")
    return (await resolvePrincipal(sources.read(), credential.secret)) !== undefined;
  if (credential.kind === "session") {
    try {
      return (await sources.users.resolveSession(credential.secret, { touch: false })) !== undefined;
    } catch (err) {
      // An ended session is invalid; a database that did not answer decides nothing.
      if (isNovaError(err, "NOVA_SESSION_EXPIRED")) return false;
      throw err;
    }
  }
  return true;
}

/** An onRequest hook that authenticates and checks `requirement`. */
export function requirePermission(sources: AuthSources, requirement: Requirement) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const { principal, credential } = await authenticate(sources, request);
    if (requirement !== "authenticated" && !authorize(principal, requirement)) {
      const who =
        principal.kind === "user"
          ? `User ${principal.name} (role ${principal.role})`
          : `A ${principal.kind} token`;
      throw new NovaError("NOVA_FORBIDDEN", `${who} may not do this (needs ${requirement}).`, {
        details: {
          principal: principal.kind,
          ...(principal.role ? { role: principal.role } : {}),
          needs: requirement,
        },
      });
    }
    request.principal = principal;
    request.credential = credential;
  };
}
