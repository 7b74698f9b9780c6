/**
 * Users against a real server over TLS (PGlite in a data dir): the first admin user made
 * with the admin token, logins by cookie and by bearer session token, the cookie's
 * attributes, CSRF on every state-changing cookie request, roles, TOTP enrolment and
 * second factors, and each bad input of issue 16 — wrong password, wrong or reused code,
 * a used recovery code, a locked account (kept across a restart), an expired session,
 * a missing or wrong CSRF token, a viewer writing — refused with its code and status and
 * nothing changed.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SessionInfo, User, UserWithPassword } from "../src/api/types/users.js";
import { type ClusterFetch, clusterFetch } from "../src/security/tls-client.js";
import { totpCode } from "../src/security/totp.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";

interface ApiError {
  error: { code: string; message: string; details: Record<string, unknown> };
}
interface Reply<T> {
  status: number;
  body: T & Partial<ApiError>;
  headers: Headers;
}
/** How a call authenticates: an API or session token as bearer, or the session cookie (with or without a CSRF token). */
type Auth = { bearer: string } | { cookie: string; csrf?: string } | null;

const COOKIE = "__Host-novacron_session";
const PASSWORDS = {
  alice: "alice's long passphrase",
  victor: "victor's long passphrase",
  olga: "olga's long passphrase",
};

describe("users and sessions over the real API", () => {
  let dir: string;
  let server: RunningServer;
  let fetchTls: ClusterFetch;
  let admin: string;

  const start = async () => {
    server = await startServer({
      dataDir: dir,
      port: 0,
      execWorkers: false,
      userSecurity: { maxFailures: 3, lockoutMs: 600_000 },
      logger: pino({ level: "silent" }),
    });
    fetchTls = clusterFetch({ caPem: server.caPem }, { role: "server" });
  };

  const call = async <T = Record<string, unknown>>(
    method: string,
    route: string,
    auth: Auth,
    body?: unknown,
  ): Promise<Reply<T>> => {
    const headers: Record<string, string> = {};
    if (auth && "bearer" in auth) headers.authorization = `Bearer ${auth.bearer}`;
    if (auth && "cookie" in auth) {
      headers.cookie = `${COOKIE}=${auth.cookie}`;
      if (auth.csrf !== undefined) headers["x-csrf-token"] = auth.csrf;
    }
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetchTls(`${server.url}${route}`, {
      method,
      headers,
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await res.text();
    return {
      status: res.status,
      body: (text ? JSON.parse(text) : {}) as T & Partial<ApiError>,
      headers: res.headers,
    };
  };
  const asAdmin = { bearer: "" };

  /** Logs in with a cookie; the cookie's value and the CSRF token. */
  const login = async (username: string, password: string, extra: Record<string, string> = {}) => {
    const res = await call<SessionInfo>("POST", "/v1/session", null, { username, password, ...extra });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const setCookie = res.headers.getSetCookie().find((c) => c.startsWith(`${COOKIE}=`));
    const cookie = /^[^=]+=([^;]+)/.exec(setCookie ?? "")?.[1];
    if (!cookie) throw new Error(`no session cookie in ${JSON.stringify(res.headers.getSetCookie())}`);
    return { cookie, csrf: res.body.session!.csrfToken, info: res.body, setCookie: setCookie! };
  };
  const expectError = (res: Reply<unknown>, status: number, code: string) => {
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    expect(res.body.error?.code).toBe(code);
    expect(res.body.error?.message.length).toBeGreaterThan(10);
  };
  const tokenCount = async () =>
    (await call<{ tokens: unknown[] }>("GET", "/v1/tokens", asAdmin)).body.tokens.length;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-users-api-"));
    await start();
    admin = server.created.admin!;
    asAdmin.bearer = admin;
  });
  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("lets the admin token create the first admin user, with a one-time password when none is given", async () => {
    const created = await call<UserWithPassword>("POST", "/v1/users", asAdmin, {
      username: "alice",
      role: "admin",
    });
    expect(created.status).toBe(201);
    expect(created.body.user).toMatchObject({
      username: "alice",
      role: "admin",
      mfa: "off",
      lockedUntil: null,
    });
    expect(created.body.password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    // The generated password logs in; then alice sets her own.
    const first = await login("alice", created.body.password!);
    const changed = await call("POST", "/v1/session/password", first, {
      currentPassword: created.body.password,
      newPassword: PASSWORDS.alice,
    });
    expect(changed.status).toBe(200);
    await login("alice", PASSWORDS.alice);
    for (const [username, role] of [
      ["victor", "viewer"],
      ["olga", "operator"],
    ] as const) {
      const res = await call<UserWithPassword>("POST", "/v1/users", first, {
        username,
        role,
        password: PASSWORDS[username],
      });
      // alice's first session made the change with its CSRF token.
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body.password).toBeUndefined();
    }
    const list = await call<{ users: User[] }>("GET", "/v1/users", asAdmin);
    expect(list.body.users.map((u) => [u.username, u.role])).toEqual([
      ["alice", "admin"],
      ["olga", "operator"],
      ["victor", "viewer"],
    ]);
    expect(JSON.stringify(list.body)).not.toMatch(/scrypt|password_hash|passwordHash/);
    // A duplicate name and a too-short password are refused.
    expectError(
      await call("POST", "/v1/users", asAdmin, { username: "olga", role: "viewer" }),
      409,
      "NOVA_CONFLICT",
    );
    expectError(
      await call("POST", "/v1/users", asAdmin, { username: "short", role: "viewer", password: "short" }),
      400,
      "NOVA_BAD_REQUEST",
    );
  });

  it("sets the session cookie Secure, HttpOnly, SameSite=Strict for /, and says who is logged in", async () => {
    const s = await login("victor", PASSWORDS.victor);
    expect(s.setCookie).toMatch(/^__Host-novacron_session=nvs_[A-Za-z0-9_-]{43};/);
    const attrs = s.setCookie.split(";").map((a) => a.trim().toLowerCase());
    expect(attrs).toEqual(expect.arrayContaining(["path=/", "secure", "httponly", "samesite=strict"]));
    expect(attrs.some((a) => a.startsWith("domain="))).toBe(false);
    expect(s.info).toMatchObject({
      principal: { kind: "user", name: "victor", role: "viewer" },
      mfa: "off",
    });
    expect(s.info.permissions).toContain("vms:read");
    expect(s.info.permissions).not.toContain("vms:write");
    const me = await call<SessionInfo>("GET", "/v1/session", { cookie: s.cookie });
    expect(me.status).toBe(200);
    expect(me.body.session?.csrfToken).toBe(s.csrf);
    expect(me.body.session!.idleExpiresAt <= me.body.session!.expiresAt).toBe(true);
    // An API token is somebody too: GET /v1/session names it.
    const tokenMe = await call<SessionInfo>("GET", "/v1/session", asAdmin);
    expect(tokenMe.body.principal).toMatchObject({ kind: "admin" });
    expect(tokenMe.body.permissions).toContain("users:write");
    expect(tokenMe.body.session).toBeUndefined();
    // The OpenAPI document names the login, and the cookie as a way to authenticate.
    const openapi = await call<{ paths: Record<string, unknown>; components: { securitySchemes: unknown } }>(
      "GET",
      "/v1/openapi.json",
      { cookie: s.cookie },
    );
    expect(Object.keys(openapi.body.paths)).toEqual(
      expect.arrayContaining(["/v1/session", "/v1/users/{name}"]),
    );
    expect(openapi.body.components.securitySchemes).toMatchObject({
      session: { type: "apiKey", in: "cookie", name: "__Host-novacron_session" },
    });
  });

  it("answers every /v1 read to the cookie without a CSRF token", async () => {
    const s = await login("victor", PASSWORDS.victor);
    for (const route of ["/v1/vms", "/v1/hosts", "/v1/images", "/v1/migrations", "/v1/executions"])
      expect((await call("GET", route, { cookie: s.cookie })).status, route).toBe(200);
  });

  it("refuses a state-changing cookie request without the CSRF token, or with a wrong one, changing nothing", async () => {
    const s = await login("alice", PASSWORDS.alice);
    const before = await tokenCount();
    const missing = await call("POST", "/v1/tokens", { cookie: s.cookie }, { name: "csrf-victim" });
    expectError(missing, 403, "NOVA_CSRF_REJECTED");
    expect(missing.body.error?.details).toMatchObject({ reason: "missing" });
    const wrong = await call(
      "POST",
      "/v1/tokens",
      { cookie: s.cookie, csrf: `${s.csrf.slice(0, -1)}${s.csrf.endsWith("A") ? "B" : "A"}` },
      { name: "csrf-victim" },
    );
    expectError(wrong, 403, "NOVA_CSRF_REJECTED");
    expect(wrong.body.error?.details).toMatchObject({ reason: "mismatch" });
    // Another session's token is as wrong as a made-up one.
    const other = await login("alice", PASSWORDS.alice);
    expectError(
      await call("POST", "/v1/tokens", { cookie: s.cookie, csrf: other.csrf }, { name: "csrf-victim" }),
      403,
      "NOVA_CSRF_REJECTED",
    );
    expectError(await call("DELETE", "/v1/session", { cookie: s.cookie }), 403, "NOVA_CSRF_REJECTED");
    expect(await tokenCount()).toBe(before);
    expect((await call("GET", "/v1/session", { cookie: s.cookie })).status).toBe(200);
    // With it, the same request works.
    const ok = await call("POST", "/v1/tokens", s, { name: "made-by-alice" });
    expect(ok.status).toBe(201);
    expect(await tokenCount()).toBe(before + 1);
  });

  it("lets the CLI log in for a bearer session token, which needs no CSRF token and sets no cookie", async () => {
    const res = await call<SessionInfo>("POST", "/v1/session", null, {
      username: "olga",
      password: PASSWORDS.olga,
      delivery: "token",
    });
    expect(res.status).toBe(200);
    expect(res.headers.getSetCookie()).toEqual([]);
    expect(res.body.token).toMatch(/^nvs_/);
    const jt = await call<{ token: string }>(
      "POST",
      "/v1/join-tokens",
      { bearer: res.body.token! },
      { name: "h-olga" },
    );
    expect(jt.status, JSON.stringify(jt.body)).toBe(200);
    expect(
      (await call<SessionInfo>("GET", "/v1/session", { bearer: res.body.token! })).body.principal.name,
    ).toBe("olga");
  });

  it("refuses a viewer's write with 403 naming the permission, and changes nothing", async () => {
    const s = await login("victor", PASSWORDS.victor);
    const joinTokens = async () =>
      (await call<{ tokens: unknown[] }>("GET", "/v1/join-tokens", asAdmin)).body;
    const before = JSON.stringify(await joinTokens());
    const res = await call("POST", "/v1/join-tokens", s, { name: "h-victor" });
    expectError(res, 403, "NOVA_FORBIDDEN");
    expect(res.body.error?.message).toContain("victor");
    expect(res.body.error?.details).toMatchObject({
      principal: "user",
      role: "viewer",
      needs: "hosts:write",
    });
    expect(JSON.stringify(await joinTokens())).toBe(before);
    expectError(await call("GET", "/v1/users", s), 403, "NOVA_FORBIDDEN");
    expectError(
      await call("POST", "/v1/users", s, { username: "eve", role: "admin" }),
      403,
      "NOVA_FORBIDDEN",
    );
    expect((await call("GET", "/v1/users/eve", asAdmin)).status).toBe(404);
    // An operator may not manage users or tokens either.
    const o = await login("olga", PASSWORDS.olga);
    expectError(await call("POST", "/v1/users/victor/role", o, { role: "admin" }), 403, "NOVA_FORBIDDEN");
    expectError(await call("POST", "/v1/tokens", o, { name: "olga-token" }), 403, "NOVA_FORBIDDEN");
    expect((await call<User>("GET", "/v1/users/victor", asAdmin)).body.role).toBe("viewer");
  });

  it("lets an operator drain a host and refuses a viewer (hosts:write), who may still read drains", async () => {
    const v = await login("victor", PASSWORDS.victor);
    const o = await login("olga", PASSWORDS.olga);
    for (const [method, body] of [
      ["POST", {}],
      ["DELETE", undefined],
    ] as const) {
      const res = await call(method, "/v1/hosts/no-such-host/drain", v, body);
      expectError(res, 403, "NOVA_FORBIDDEN");
      expect(res.body.error?.details).toMatchObject({ role: "viewer", needs: "hosts:write" });
      // The operator passes the permission check and meets the unknown host.
      expectError(await call(method, "/v1/hosts/no-such-host/drain", o, body), 404, "NOVA_NOT_FOUND");
    }
    expectError(await call("GET", "/v1/hosts/no-such-host/drain", v), 404, "NOVA_NOT_FOUND");
  });

  it("lets a user submit an execution but not approve it; a viewer may not approve, another user may", async () => {
    const plan = {
      name: "needs-eyes",
      sla: "fast",
      approval: "required",
      steps: [{ kind: "wait", seconds: 0 }],
    };
    const o = await login("olga", PASSWORDS.olga);
    const submitted = await call<{ id: string; state: string; actor: string }>("POST", "/v1/executions", o, {
      plan,
    });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
    expect(submitted.body).toMatchObject({ state: "pending_approval", actor: "user:olga" });
    const approve = `/v1/executions/${submitted.body.id}/approve`;
    const self = await call("POST", approve, o, {});
    expectError(self, 403, "NOVA_EXEC_SELF_APPROVAL");
    expect(self.body.error?.message).toContain("submitted by you (user olga)");
    expectError(
      await call("POST", approve, await login("victor", PASSWORDS.victor), {}),
      403,
      "NOVA_FORBIDDEN",
    );
    const state = async () =>
      (await call<{ state: string }>("GET", `/v1/executions/${submitted.body.id}`, asAdmin)).body.state;
    expect(await state()).toBe("pending_approval");
    const approved = await call<{ state: string }>(
      "POST",
      approve,
      await login("alice", PASSWORDS.alice),
      {},
    );
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(approved.body.state).toBe("queued");
  });

  it("applies a role change to the user's next request", async () => {
    const s = await login("victor", PASSWORDS.victor);
    expectError(await call("POST", "/v1/join-tokens", s, { name: "h-v2" }), 403, "NOVA_FORBIDDEN");
    expect((await call("POST", "/v1/users/victor/role", asAdmin, { role: "operator" })).status).toBe(200);
    expect((await call("POST", "/v1/join-tokens", s, { name: "h-v2" })).status).toBe(200);
    expect((await call("POST", "/v1/users/victor/role", asAdmin, { role: "viewer" })).status).toBe(200);
    expectError(await call("POST", "/v1/join-tokens", s, { name: "h-v3" }), 403, "NOVA_FORBIDDEN");
  });

  it("refuses a wrong password and an unknown user alike, with no session", async () => {
    const wrong = await call("POST", "/v1/session", null, {
      username: "victor",
      password: "not victor's password",
    });
    const unknown = await call("POST", "/v1/session", null, {
      username: "nobody",
      password: "not anybody's password",
    });
    for (const res of [wrong, unknown]) {
      expectError(res, 401, "NOVA_LOGIN_FAILED");
      expect(res.headers.getSetCookie()).toEqual([]);
    }
    expect(wrong.body.error?.message).toBe(unknown.body.error?.message);
    expect((await call<User>("GET", "/v1/users/victor", asAdmin)).body.failedAttempts).toBe(1);
    await login("victor", PASSWORDS.victor); // and a success forgets the failure
    expect((await call<User>("GET", "/v1/users/victor", asAdmin)).body.failedAttempts).toBe(0);
  });

  it("enrols TOTP (confirmed by one code), then asks for a code, refusing wrong and reused codes and used recovery codes", async () => {
    const s = await login("olga", PASSWORDS.olga);
    const enrol = await call<{ secret: string; uri: string }>("POST", "/v1/session/mfa", s);
    expect(enrol.status).toBe(200);
    expect(enrol.body.uri).toMatch(/^otpauth:\/\/totp\/NovaCron:olga\?/);
    const secret = enrol.body.secret;
    // Not required until confirmed: the password alone still logs in.
    await login("olga", PASSWORDS.olga);
    expectError(
      await call("POST", "/v1/session/mfa/confirm", s, {
        totp: "000000" === totpCode(secret) ? "111111" : "000000",
      }),
      401,
      "NOVA_MFA_INVALID",
    );
    const t = Date.now();
    const confirmCode = totpCode(secret, t);
    const confirmed = await call<{ mfa: string; recoveryCodes: string[] }>(
      "POST",
      "/v1/session/mfa/confirm",
      s,
      {
        totp: confirmCode,
      },
    );
    expect(confirmed.status).toBe(200);
    expect(confirmed.body.recoveryCodes).toHaveLength(10);
    expect((await call<User>("GET", "/v1/users/olga", asAdmin)).body.mfa).toBe("on");

    const password = { username: "olga", password: PASSWORDS.olga };
    const needs = await call("POST", "/v1/session", null, password);
    expectError(needs, 401, "NOVA_MFA_REQUIRED");
    expect(needs.headers.getSetCookie()).toEqual([]);
    expect(needs.body.error?.details).toMatchObject({ accepts: ["totp", "recoveryCode"] });

    const wrongCode = totpCode(secret, t - 10 * 60_000);
    expectError(
      await call("POST", "/v1/session", null, { ...password, totp: wrongCode }),
      401,
      "NOVA_MFA_INVALID",
    );
    expectError(
      await call("POST", "/v1/session", null, { ...password, totp: confirmCode }),
      401,
      "NOVA_MFA_REUSED",
    );
    // This server locks at 3 failures (the next test's subject): start the count again.
    await call("POST", "/v1/users/olga/unlock", asAdmin);
    // A wrong password with a right code is still a wrong password.
    expectError(
      await call("POST", "/v1/session", null, {
        username: "olga",
        password: "not olga's password",
        totp: totpCode(secret, t + 30_000),
      }),
      401,
      "NOVA_LOGIN_FAILED",
    );
    await login("olga", PASSWORDS.olga, { totp: totpCode(secret, t + 30_000) });
    const recovery = confirmed.body.recoveryCodes[3]!;
    await login("olga", PASSWORDS.olga, { recoveryCode: recovery });
    const used = await call("POST", "/v1/session", null, { ...password, recoveryCode: recovery });
    expectError(used, 401, "NOVA_MFA_REUSED");
    expect(used.body.error?.message).toContain("already used");
    expectError(
      await call("POST", "/v1/session", null, { ...password, recoveryCode: "AAAA-BBBB-CCCC-DDDD" }),
      401,
      "NOVA_MFA_INVALID",
    );
    await call("POST", "/v1/users/olga/unlock", asAdmin);
    // Turning it off needs a current code (or an admin).
    const s2 = await login("olga", PASSWORDS.olga, { recoveryCode: confirmed.body.recoveryCodes[4]! });
    expectError(await call("POST", "/v1/session/mfa/disable", s2, {}), 401, "NOVA_MFA_REQUIRED");
    expectError(
      await call("POST", "/v1/session/mfa/disable", s2, { totp: wrongCode }),
      401,
      "NOVA_MFA_INVALID",
    );
    expect((await call<User>("GET", "/v1/users/olga", asAdmin)).body.mfa).toBe("on");
    const off = await call("POST", "/v1/session/mfa/disable", s2, {
      recoveryCode: confirmed.body.recoveryCodes[5]!,
    });
    expect(off.status, JSON.stringify(off.body)).toBe(200);
    expect((await call<User>("GET", "/v1/users/olga", asAdmin)).body.mfa).toBe("off");
    await call("POST", "/v1/users/olga/unlock", asAdmin);
  });

  it("locks an account after repeated failures, names when it unlocks, keeps it locked across a restart; an admin unlocks it", async () => {
    const wrong = { username: "victor", password: "not victor's password" };
    expectError(await call("POST", "/v1/session", null, wrong), 401, "NOVA_LOGIN_FAILED");
    expectError(await call("POST", "/v1/session", null, wrong), 401, "NOVA_LOGIN_FAILED");
    const third = await call("POST", "/v1/session", null, wrong);
    expectError(third, 423, "NOVA_ACCOUNT_LOCKED");
    const unlocksAt = String(third.body.error?.details.unlocksAt);
    const retryAfter = Number(third.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(590);
    expect(retryAfter).toBeLessThanOrEqual(600);
    expect(new Date(unlocksAt).getTime()).toBeGreaterThan(Date.now() + 500_000);
    expect(third.body.error?.message).toContain(unlocksAt);
    // The right password does not get in while locked, and gets no session.
    const right = await call("POST", "/v1/session", null, { username: "victor", password: PASSWORDS.victor });
    expectError(right, 423, "NOVA_ACCOUNT_LOCKED");
    expect(right.headers.getSetCookie()).toEqual([]);

    await server.close();
    await start();
    expectError(
      await call("POST", "/v1/session", null, { username: "victor", password: PASSWORDS.victor }),
      423,
      "NOVA_ACCOUNT_LOCKED",
    );
    expect((await call<User>("GET", "/v1/users/victor", asAdmin)).body.lockedUntil).toBe(unlocksAt);
    const unlocked = await call<User>("POST", "/v1/users/victor/unlock", asAdmin);
    expect(unlocked.body).toMatchObject({ lockedUntil: null, failedAttempts: 0 });
    await login("victor", PASSWORDS.victor);
  });

  it("answers an expired session 401 NOVA_SESSION_EXPIRED, saying whether it idled out or reached its lifetime", async () => {
    const idle = await login("victor", PASSWORDS.victor);
    const lifetime = await login("victor", PASSWORDS.victor);
    await server.store.db.query(
      "UPDATE user_sessions SET last_seen_at = now() - interval '31 minutes' WHERE id = $1",
      [idle.info.session!.id],
    );
    await server.store.db.query(
      "UPDATE user_sessions SET created_at = now() - interval '13 hours', expires_at = now() - interval '1 hour' WHERE id = $1",
      [lifetime.info.session!.id],
    );
    const a = await call("GET", "/v1/vms", { cookie: idle.cookie });
    expectError(a, 401, "NOVA_SESSION_EXPIRED");
    expect(a.body.error?.details).toMatchObject({ reason: "idle" });
    const b = await call("POST", "/v1/join-tokens", lifetime, { name: "h-expired" });
    expectError(b, 401, "NOVA_SESSION_EXPIRED");
    expect(b.body.error?.details).toMatchObject({ reason: "lifetime" });
    const jt = (await call<{ tokens: { hostName: string }[] }>("GET", "/v1/join-tokens", asAdmin)).body
      .tokens;
    expect(jt.some((t) => t.hostName === "h-expired")).toBe(false);
  });

  it("logs out: the cookie is cleared, the session is gone and its event streams end at once", async () => {
    const s = await login("victor", PASSWORDS.victor);
    const controller = new AbortController();
    const stream = await fetchTls(`${server.url}/v1/events`, {
      headers: { cookie: `${COOKIE}=${s.cookie}` },
      signal: controller.signal,
    });
    expect(stream.status).toBe(200);
    expect(stream.headers.get("content-type")).toContain("text/event-stream");
    const reader = stream.body!.getReader();
    const out = await call("DELETE", "/v1/session", s);
    expect(out.status).toBe(204);
    expect(out.headers.getSetCookie().join()).toMatch(
      /__Host-novacron_session=;.*(Expires=Thu, 01 Jan 1970|Max-Age=0)/,
    );
    let text = "";
    const deadline = Date.now() + 5000;
    for (;;) {
      const r = await Promise.race([
        reader.read(),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), Math.max(0, deadline - Date.now()))),
      ]);
      if (r === null) throw new Error(`the stream did not end; got ${JSON.stringify(text)}`);
      if (r.done) break;
      text += new TextDecoder().decode(r.value);
    }
    controller.abort();
    expect(text).toContain(": closed: logged out");
    expectError(await call("GET", "/v1/vms", { cookie: s.cookie }), 401, "NOVA_UNAUTHENTICATED");
  });

  it("ends every session of a user whose password an admin reset, or who was deleted", async () => {
    const s = await login("olga", PASSWORDS.olga);
    const reset = await call<UserWithPassword>("POST", "/v1/users/olga/password", asAdmin);
    expect(reset.status).toBe(200);
    expect(reset.body.password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expectError(await call("GET", "/v1/vms", { cookie: s.cookie }), 401, "NOVA_UNAUTHENTICATED");
    expectError(
      await call("POST", "/v1/session", null, { username: "olga", password: PASSWORDS.olga }),
      401,
      "NOVA_LOGIN_FAILED",
    );
    const again = await login("olga", reset.body.password!);
    expect((await call("DELETE", "/v1/users/olga", asAdmin)).status).toBe(204);
    expectError(await call("GET", "/v1/vms", { cookie: again.cookie }), 401, "NOVA_UNAUTHENTICATED");
    expect((await call("GET", "/v1/users/olga", asAdmin)).status).toBe(404);
  });

  it("counts failed logins against the address's failed-authentication budget", async () => {
    // Unknown users: no account to lock, only the address's budget (30, refilling slowly).
    let limited: Reply<unknown> | undefined;
    for (let i = 0; i < 40 && !limited; i++) {
      const res = await call("POST", "/v1/session", null, {
        username: `nobody-${i}`,
        password: "not anybody's password",
      });
      if (res.status === 429) limited = res;
      else expectError(res, 401, "NOVA_LOGIN_FAILED");
    }
    expect(limited, "no 429 after 40 failed logins").toBeDefined();
    expectError(limited!, 429, "NOVA_RATE_LIMITED");
    expect(limited!.body.error?.details).toMatchObject({ limit: "auth-failures" });
    // Even the right password waits now, like a valid token from this address does.
    expectError(
      await call("POST", "/v1/session", null, { username: "victor", password: PASSWORDS.victor }),
      429,
      "NOVA_RATE_LIMITED",
    );
    expectError(await call("GET", "/v1/vms", asAdmin), 429, "NOVA_RATE_LIMITED");
  });
});

describe("a session's event stream, re-checked at every heartbeat", () => {
  let dir: string;
  let server: RunningServer;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-users-sse-"));
    process.env.NOVACRON_API_LIMITS = JSON.stringify({ sseHeartbeatMs: 200 });
    try {
      server = await startServer({
        dataDir: dir,
        port: 0,
        execWorkers: false,
        logger: pino({ level: "silent" }),
      });
    } finally {
      delete process.env.NOVACRON_API_LIMITS;
    }
  });
  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("stays open while the session lives and does not keep it alive, then ends once it idled out", async () => {
    const f = clusterFetch({ caPem: server.caPem }, { role: "server" });
    const admin = server.created.admin!;
    await f(`${server.url}/v1/users`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify({ username: "sse", role: "viewer", password: "a long enough password" }),
    });
    const res = await f(`${server.url}/v1/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: "sse", password: "a long enough password" }),
    });
    const cookie = /^[^=]+=([^;]+)/.exec(res.headers.getSetCookie()[0] ?? "")![1]!;
    const session = ((await res.json()) as SessionInfo).session!;
    const controller = new AbortController();
    const stream = await f(`${server.url}/v1/events`, {
      headers: { cookie: `${COOKIE}=${cookie}` },
      signal: controller.signal,
    });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    let text = "";
    /** Reads until the stream ends (true) or `ms` pass (false). */
    const endsWithin = async (ms: number) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const r = await Promise.race([
          reader.read(),
          new Promise<null>((resolve) => setTimeout(() => resolve(null), Math.max(0, deadline - Date.now()))),
        ]);
        if (r === null) return false;
        if (r.done) return true;
        text += new TextDecoder().decode(r.value);
      }
    };
    // Last used 5 minutes ago: alive, and due to have its next use recorded.
    await server.store.db.query(
      "UPDATE user_sessions SET last_seen_at = now() - interval '5 minutes' WHERE id = $1",
      [session.id],
    );
    // Several heartbeats pass: the live session keeps its stream ...
    expect(await endsWithin(1000)).toBe(false);
    expect(text.match(/: keep-alive/g)?.length ?? 0).toBeGreaterThanOrEqual(3);
    // ... and the heartbeats' checks did not count as use of it.
    const { rows } = await server.store.db.query<{ idle: boolean }>(
      "SELECT last_seen_at < now() - interval '4 minutes' AS idle FROM user_sessions WHERE id = $1",
      [session.id],
    );
    expect(rows[0]?.idle).toBe(true);
    await server.store.db.query(
      "UPDATE user_sessions SET last_seen_at = now() - interval '31 minutes' WHERE id = $1",
      [session.id],
    );
    expect(await endsWithin(5000)).toBe(true);
    controller.abort();
    expect(text).toContain(": closed: session ended");
  });
});
