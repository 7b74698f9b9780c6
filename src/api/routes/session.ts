/**
 * Routes: /v1/session — logging in and out, who is calling, and the logged-in user's own
 * second factor and password. Logging in answers with the session as the
 * `__Host-novacron_session` cookie (the console) or, with `delivery: "token"`, as a bearer
 * token in the body (the CLI); either way with the CSRF token the console must send back
 * in X-CSRF-Token. Failed logins spend the address's failed-authentication budget, like
 * a bad token does.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { SessionRow } from "../../cluster/store/user-sessions.js";
import { isNovaError, NovaError } from "../../lib/errors.js";
import { type Principal, permissionsOf } from "../../policy/permissions.js";
import { SESSION_COOKIE, sessionPrincipal } from "../auth.js";
import { rateLimited } from "../limits.js";
import {
  MfaConfirmed,
  MfaConfirmPost,
  MfaEnrolment,
  MfaProof,
  SessionInfo,
  SessionPasswordPost,
  SessionPost,
} from "../types/users.js";
import type { RouteDeps } from "./deps.js";

/** The errors that mean "a wrong secret was tried": each spends the address's failed-authentication budget. */
const FAILED_AUTH = [
  "NOVA_LOGIN_FAILED",
  "NOVA_MFA_INVALID",
  "NOVA_MFA_REUSED",
  "NOVA_ACCOUNT_LOCKED",
] as const;

/** The cookie's attributes: sent only over HTTPS, never to scripts, never on cross-site requests. */
const COOKIE_OPTIONS = { path: "/", secure: true, httpOnly: true, sameSite: "strict" } as const;

/** The session part of SessionInfo. */
function sessionView(s: SessionRow): NonNullable<SessionInfo["session"]> {
  return {
    id: s.id,
    createdAt: s.createdAt.toISOString(),
    expiresAt: s.expiresAt.toISOString(),
    idleExpiresAt: s.idleExpiresAt.toISOString(),
    csrfToken: s.csrfToken,
  };
}

/** Who `principal` is and what they may do. */
function info(principal: Principal, session?: SessionRow): SessionInfo {
  return {
    principal: {
      kind: principal.kind,
      id: principal.id,
      name: principal.name,
      ...(principal.role ? { role: principal.role } : {}),
    },
    permissions: permissionsOf(principal),
    ...(session ? { mfa: session.mfaState, session: sessionView(session) } : {}),
  };
}

/** The logged-in user of a request; 403 for a token, which has no password or second factor of its own. */
function loggedInUser(req: FastifyRequest): Principal & { sessionId: string } {
  const p = req.principal;
  if (p?.kind !== "user" || !p.sessionId)
    throw new NovaError(
      "NOVA_FORBIDDEN",
      "Only a logged-in user has a password and a second factor of their own; this request carries an API token (log in with novacron login --user NAME).",
      { details: { principal: p?.kind ?? null } },
    );
  return p as Principal & { sessionId: string };
}

/** Session routes. */
export const sessionRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (
  app,
  { users, guard, streams, authFailures },
) => {
  /** Runs a step that checks a secret; a wrong one spends the caller's failed-authentication budget. */
  const checkingSecrets = async <T>(req: FastifyRequest, reply: FastifyReply, fn: () => Promise<T>) => {
    const blocked = authFailures.peek(req.ip);
    if (blocked > 0) throw rateLimited(reply, "auth-failures", blocked);
    try {
      return await fn();
    } catch (err) {
      if (FAILED_AUTH.some((code) => isNovaError(err, code))) authFailures.take(req.ip);
      if (isNovaError(err, "NOVA_ACCOUNT_LOCKED")) {
        const left = Date.parse(String(err.details.unlocksAt)) - Date.now();
        reply.header("retry-after", String(Math.max(1, Math.ceil(left / 1000))));
      }
      if (isNovaError(err, "NOVA_RATE_LIMITED")) reply.header("retry-after", "1");
      throw err;
    }
  };

  /** The caller's live session (for its view), re-read after a change. */
  const currentSession = async (req: FastifyRequest) =>
    req.credential?.kind === "session"
      ? await users.resolveSession(req.credential.secret, { touch: false })
      : undefined;

  app.post(
    "/v1/session",
    {
      schema: {
        tags: ["session"],
        security: [],
        body: SessionPost,
        response: { 200: SessionInfo },
      },
    },
    async (req, reply) => {
      const { user, session, ended } = await checkingSecrets(req, reply, () => users.login(req.body));
      for (const id of ended) streams.revoke(id, "session ended: too many sessions");
      const row = await users.resolveSession(session.token, { touch: false });
      if (!row)
        throw new NovaError("NOVA_INTERNAL", `Session of ${user.username} vanished right after login`);
      const body = info(sessionPrincipal(row), row);
      if (req.body.delivery === "token") return { ...body, token: session.token };
      reply.setCookie(SESSION_COOKIE, session.token, COOKIE_OPTIONS);
      return body;
    },
  );

  app.get(
    "/v1/session",
    { schema: { tags: ["session"], response: { 200: SessionInfo } }, onRequest: guard("authenticated") },
    async (req) => info(req.principal!, await currentSession(req)),
  );

  app.delete(
    "/v1/session",
    { schema: { tags: ["session"] }, onRequest: guard("authenticated") },
    async (req, reply) => {
      const user = loggedInUser(req);
      await users.logout(user.sessionId);
      streams.revoke(user.sessionId, "logged out");
      if (req.credential?.kind === "session" && req.credential.via === "cookie")
        reply.clearCookie(SESSION_COOKIE, COOKIE_OPTIONS);
      return reply.status(204).send();
    },
  );

  app.post(
    "/v1/session/mfa",
    { schema: { tags: ["session"], response: { 200: MfaEnrolment } }, onRequest: guard("authenticated") },
    async (req) => users.beginEnrolment(loggedInUser(req).name),
  );

  app.post(
    "/v1/session/mfa/confirm",
    {
      schema: { tags: ["session"], body: MfaConfirmPost, response: { 200: MfaConfirmed } },
      onRequest: guard("authenticated"),
    },
    async (req) => ({
      mfa: "on" as const,
      recoveryCodes: await users.confirmEnrolment(loggedInUser(req).name, req.body.totp),
    }),
  );

  app.post(
    "/v1/session/mfa/disable",
    {
      schema: { tags: ["session"], body: Type.Optional(MfaProof), response: { 200: SessionInfo } },
      // The body is optional: a pending enrolment is cancelled without a code.
      preValidation: async (req: { body: unknown }) => {
        req.body ??= {};
      },
      onRequest: guard("authenticated"),
    },
    async (req, reply) => {
      const user = loggedInUser(req);
      await checkingSecrets(req, reply, () => users.disableOwnMfa(user.name, req.body ?? {}));
      return info(user, await currentSession(req));
    },
  );

  app.post(
    "/v1/session/password",
    {
      schema: { tags: ["session"], body: SessionPasswordPost, response: { 200: SessionInfo } },
      onRequest: guard("authenticated"),
    },
    async (req, reply) => {
      const user = loggedInUser(req);
      const ended = await checkingSecrets(req, reply, () =>
        users.changeOwnPassword(user.name, req.body.currentPassword, req.body.newPassword, user.sessionId),
      );
      for (const id of ended) streams.revoke(id, "password changed");
      return info(user, await currentSession(req));
    },
  );
};
