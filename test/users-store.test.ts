// The users store on PostgreSQL and PGlite: accounts, the lock-out counters, the MFA
// state as a compare-and-set, single-use TOTP steps and recovery codes, and sessions
// (hashed, expiring by the database's clock, ending with their user).
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { Store } from "../src/cluster/store/store.js";
import {
  createSession,
  deleteSession,
  deleteUserSessions,
  findSession,
  pruneSessions,
  touchSession,
  trimUserSessions,
} from "../src/cluster/store/user-sessions.js";
import {
  acceptTotpStep,
  beginMfaEnrolment,
  confirmMfaEnrolment,
  deleteUser,
  disableMfa,
  findUserById,
  getUserByName,
  insertUser,
  recordFailedAttempt,
  recordLogin,
  spendRecoveryCode,
  unlockUser,
} from "../src/cluster/store/users.js";
import { USER_SECURITY_DEFAULTS, UserService } from "../src/cluster/user-service.js";
import { hashPassword } from "../src/security/password-hash.js";
import { hashRecoveryCode } from "../src/security/recovery-codes.js";
import { SecretKey } from "../src/security/secret-key.js";
import { totpCode } from "../src/security/totp.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";

const KEY = SecretKey.fromBase64(randomBytes(32).toString("base64"), "test");
const LIMITS = { maxFailures: 5, lockoutMs: 60_000 };
const SESSION = { lifetimeMs: 3_600_000, idleTimeoutMs: 600_000 };

describe.each(ENGINES)("users store on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });
  let n = 0;
  const newUser = (role: "admin" | "operator" | "viewer" = "viewer") =>
    insertUser(store.db, { username: `user-${++n}`, role, passwordHash: "$scrypt$ln=15,r=8,p=3$AAAA$AAAA" });

  it("stores a user once by name; another with that name is a conflict", async () => {
    const u = await newUser("operator");
    expect(u).toMatchObject({ role: "operator", mfaState: "off", failedAttempts: 0, locked: false });
    await expect(
      insertUser(store.db, { username: u.username, role: "viewer", passwordHash: "x" }),
    ).rejects.toMatchObject({ code: "NOVA_CONFLICT" });
    expect((await getUserByName(store.db, u.username)).role).toBe("operator");
    await expect(getUserByName(store.db, "nobody")).rejects.toMatchObject({ code: "NOVA_NOT_FOUND" });
  });

  it("refuses usernames and roles the schema does not allow", async () => {
    for (const [username, role] of [
      ["Upper", "viewer"],
      ["-dash", "viewer"],
      ["ok-name", "root"],
    ] as const) {
      await expect(
        store.db.query(
          "INSERT INTO users (id, username, role, password_hash) VALUES (gen_random_uuid(), $1, $2, 'x')",
          [username, role],
        ),
      ).rejects.toMatchObject({ code: "NOVA_STORE" });
    }
  });

  it("locks an account at the fifth failure within the window, until the lock-out ends", async () => {
    const u = await newUser();
    for (let i = 1; i <= 4; i++) {
      expect(await recordFailedAttempt(store.db, u.id, LIMITS)).toEqual({
        failedAttempts: i,
        lockedUntil: null,
      });
    }
    const fifth = await recordFailedAttempt(store.db, u.id, LIMITS);
    expect(fifth.failedAttempts).toBe(5);
    expect(fifth.lockedUntil!.getTime()).toBeGreaterThan(Date.now() + 50_000);
    expect((await getUserByName(store.db, u.username)).locked).toBe(true);
    // The lock ends by the database's clock.
    await store.db.query("UPDATE users SET locked_until = now() - interval '1 second' WHERE id = $1", [u.id]);
    expect((await getUserByName(store.db, u.username)).locked).toBe(false);
  });

  it("forgets failures older than the window, and a login or an unlock clears them", async () => {
    const u = await newUser();
    for (let i = 0; i < 4; i++) await recordFailedAttempt(store.db, u.id, LIMITS);
    await store.db.query("UPDATE users SET last_failed_at = now() - interval '2 minutes' WHERE id = $1", [
      u.id,
    ]);
    expect(await recordFailedAttempt(store.db, u.id, LIMITS)).toEqual({
      failedAttempts: 1,
      lockedUntil: null,
    });
    await recordLogin(store.db, u.id);
    expect((await getUserByName(store.db, u.username)).failedAttempts).toBe(0);
    for (let i = 0; i < 5; i++) await recordFailedAttempt(store.db, u.id, LIMITS);
    expect((await getUserByName(store.db, u.username)).locked).toBe(true);
    await unlockUser(store.db, u.id);
    expect(await getUserByName(store.db, u.username)).toMatchObject({ locked: false, failedAttempts: 0 });
  });

  it("moves MFA off → pending → on as compare-and-sets, refusing a stale writer", async () => {
    const u = await newUser();
    await beginMfaEnrolment(store.db, u, "JBSWY3DPEHPK3PXP");
    const pending = await getUserByName(store.db, u.username);
    expect(pending).toMatchObject({ mfaState: "pending", totpSecret: "JBSWY3DPEHPK3PXP" });
    await confirmMfaEnrolment(store.db, pending, 100, [hashRecoveryCode("AAAA-BBBB-CCCC-DDDD")]);
    expect(await getUserByName(store.db, u.username)).toMatchObject({ mfaState: "on", totpLastStep: 100 });
    // A writer holding the pending row lost the race.
    await expect(confirmMfaEnrolment(store.db, pending, 101, [])).rejects.toMatchObject({
      code: "NOVA_STATE_CHANGED",
    });
    await expect(
      beginMfaEnrolment(store.db, await getUserByName(store.db, u.username), "X"),
    ).rejects.toMatchObject({
      code: "NOVA_ILLEGAL_STATE",
    });
    // The schema holds a secret exactly when MFA is not off.
    await expect(
      store.db.query("UPDATE users SET totp_secret = NULL WHERE id = $1", [u.id]),
    ).rejects.toMatchObject({
      code: "NOVA_STORE",
    });
    await disableMfa(store.db, await getUserByName(store.db, u.username));
    expect(await getUserByName(store.db, u.username)).toMatchObject({ mfaState: "off", totpSecret: null });
    expect(await spendRecoveryCode(store.db, u.id, hashRecoveryCode("AAAA-BBBB-CCCC-DDDD"))).toBe("unknown");
  });

  it("accepts each TOTP time step once and never an earlier one", async () => {
    const u = await newUser();
    await beginMfaEnrolment(store.db, u, "JBSWY3DPEHPK3PXP");
    await confirmMfaEnrolment(store.db, await getUserByName(store.db, u.username), 1000, []);
    expect(await acceptTotpStep(store.db, u.id, 1000)).toBe(false);
    expect(await acceptTotpStep(store.db, u.id, 1001)).toBe(true);
    expect(await acceptTotpStep(store.db, u.id, 1001)).toBe(false);
    expect(await acceptTotpStep(store.db, u.id, 999)).toBe(false);
    expect((await findUserById(store.db, u.id))?.totpLastStep).toBe(1001);
  });

  it("uses a recovery code once, telling a used code from an unknown one; only hashes are stored", async () => {
    const u = await newUser();
    await beginMfaEnrolment(store.db, u, "JBSWY3DPEHPK3PXP");
    const codes = ["AAAA-BBBB-CCCC-DDDD", "EEEE-FFFF-GGGG-HHHH"];
    await confirmMfaEnrolment(
      store.db,
      await getUserByName(store.db, u.username),
      1,
      codes.map(hashRecoveryCode),
    );
    expect(await spendRecoveryCode(store.db, u.id, hashRecoveryCode(codes[0]!))).toBe("used");
    expect(await spendRecoveryCode(store.db, u.id, hashRecoveryCode(codes[0]!))).toBe("already-used");
    expect(await spendRecoveryCode(store.db, u.id, hashRecoveryCode("ZZZZ-ZZZZ-ZZZZ-ZZZZ"))).toBe("unknown");
    const { rows } = await store.db.query<{ code_hash: string }>(
      "SELECT code_hash FROM user_recovery_codes WHERE user_id = $1",
      [u.id],
    );
    expect(rows).toHaveLength(2);
    expect(rows.every((r) => /^[0-9a-f]{64}$/.test(r.code_hash))).toBe(true);
  });

  it("keeps sessions as hashes and ends them at their lifetime or idle timeout, by the database's clock", async () => {
    const u = await newUser("admin");
    const { token, id } = await createSession(store.db, u.id, SESSION);
    expect(token).toMatch(/^nvs_[A-Za-z0-9_-]{43}$/);
    const { rows } = await store.db.query<{ token_hash: string }>(
      "SELECT token_hash FROM user_sessions WHERE id = $1",
      [id],
    );
    expect(rows[0]!.token_hash).not.toContain(token.slice(4));
    const live = await findSession(store.db, token);
    expect(live).toMatchObject({
      id,
      userId: u.id,
      username: u.username,
      role: "admin",
      expired: false,
      stale: false,
    });
    expect(live!.csrfToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await findSession(store.db, `${token}x`)).toBeUndefined();

    // Idle: last use longer ago than the idle timeout.
    await store.db.query(
      "UPDATE user_sessions SET last_seen_at = now() - interval '11 minutes' WHERE id = $1",
      [id],
    );
    expect((await findSession(store.db, token))?.expired).toBe(true);
    await touchSession(store.db, id); // an ended session is not revived by use
    expect((await findSession(store.db, token))?.expired).toBe(true);

    // Lifetime: expired whatever the last use.
    const second = await createSession(store.db, u.id, SESSION);
    await store.db.query(
      "UPDATE user_sessions SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 second' WHERE id = $1",
      [second.id],
    );
    expect((await findSession(store.db, second.token))?.expired).toBe(true);

    // A live session used over a minute ago is stale (to be touched); touching restarts it.
    const third = await createSession(store.db, u.id, SESSION);
    await store.db.query(
      "UPDATE user_sessions SET last_seen_at = now() - interval '5 minutes' WHERE id = $1",
      [third.id],
    );
    expect((await findSession(store.db, third.token))?.stale).toBe(true);
    await touchSession(store.db, third.id);
    expect((await findSession(store.db, third.token))?.stale).toBe(false);

    // Ended over a day ago: pruned.
    await store.db.query(
      "UPDATE user_sessions SET created_at = now() - interval '3 days', expires_at = now() - interval '2 days', last_seen_at = now() - interval '3 days' WHERE id = $1",
      [second.id],
    );
    expect(await pruneSessions(store.db)).toBeGreaterThanOrEqual(1);
    expect(await findSession(store.db, second.token)).toBeUndefined();

    // At most `keep` sessions per user: the oldest end first.
    const extra = [];
    for (let i = 0; i < 3; i++) extra.push(await createSession(store.db, u.id, SESSION));
    await store.db.query(
      "UPDATE user_sessions SET created_at = created_at - interval '1 minute' WHERE id = $1",
      [third.id],
    );
    const trimmed = await trimUserSessions(store.db, u.id, 3);
    expect(trimmed.sort()).toEqual([id, third.id].sort());
    for (const s of extra) expect(await findSession(store.db, s.token)).toBeDefined();
    expect(await findSession(store.db, third.token)).toBeUndefined();
    for (const s of extra) await deleteSession(store.db, s.id);
    expect(await deleteSession(store.db, third.id)).toBe(false);
    expect(await findSession(store.db, third.token)).toBeUndefined();
    const ends = await createSession(store.db, u.id, SESSION);
    const others = await createSession(store.db, u.id, SESSION);
    expect(await deleteUserSessions(store.db, u.id, others.id)).toEqual([ends.id]);
    expect(await findSession(store.db, others.token)).toBeDefined();
    await deleteUser(store.db, u.id);
    expect(await findSession(store.db, others.token)).toBeUndefined();
  });

  it("records use of a session with a short idle timeout often enough to keep it alive", async () => {
    const u = await newUser();
    const s = await createSession(store.db, u.id, { lifetimeMs: 3_600_000, idleTimeoutMs: 8000 });
    await store.db.query(
      "UPDATE user_sessions SET last_seen_at = now() - interval '3 seconds' WHERE id = $1",
      [s.id],
    );
    // A quarter of 8 s has passed: the next use is recorded, well before the 8 s run out.
    expect(await findSession(store.db, s.token)).toMatchObject({ stale: true, expired: false });
  });

  it("re-hashes a password stored under weaker parameters at its next login", async () => {
    const svc = new UserService(store, KEY);
    const u = await insertUser(store.db, {
      username: "old-hash",
      role: "viewer",
      passwordHash: await hashPassword("an old long password", { ln: 12, r: 8, p: 1 }),
    });
    await svc.login({ username: u.username, password: "an old long password" });
    const now = (await getUserByName(store.db, u.username)).passwordHash;
    expect(now).toMatch(/^\$scrypt\$ln=15,r=8,p=3\$/);
    await svc.login({ username: u.username, password: "an old long password" });
  });

  it("runs a bounded number of password hashes and refuses logins beyond the bounded queue at once", async () => {
    const svc = new UserService(store, KEY, { concurrentHashes: 1, hashWaiters: 1 });
    await svc.create({ username: "bounded", role: "viewer", password: "a long enough password" });
    const outcomes = await Promise.all(
      [1, 2, 3].map((i) =>
        svc.login({ username: "bounded", password: `wrong password ${i}` }).then(
          () => "in",
          (err: { code: string; details: Record<string, unknown> }) =>
            err.code === "NOVA_RATE_LIMITED" ? `429 ${String(err.details.limit)}` : err.code,
        ),
      ),
    );
    // One hashing, one waiting, the third refused without being hashed or counted.
    expect(outcomes.sort()).toEqual(["429 password-hashing", "NOVA_LOGIN_FAILED", "NOVA_LOGIN_FAILED"]);
    expect((await svc.get("bounded")).failedAttempts).toBe(2);
    // The slots are free again afterwards.
    await svc.login({ username: "bounded", password: "a long enough password" });
  });

  it("keeps a lock-out across a new service on the same database (a restarted server)", async () => {
    const first = new UserService(store, KEY, { ...USER_SECURITY_DEFAULTS, maxFailures: 2 });
    const { user } = await first.create({
      username: "restart-me",
      role: "viewer",
      password: "a long enough password",
    });
    for (let i = 0; i < 2; i++)
      await expect(
        first.login({ username: user.username, password: "wrong password here" }),
      ).rejects.toBeDefined();
    const second = new UserService(store, KEY, { ...USER_SECURITY_DEFAULTS, maxFailures: 2 });
    await expect(
      second.login({ username: user.username, password: "a long enough password" }),
    ).rejects.toMatchObject({ code: "NOVA_ACCOUNT_LOCKED", details: { user: "restart-me" } });
    await second.unlock(user.username);
    const { session } = await second.login({ username: user.username, password: "a long enough password" });
    expect(session.token).toMatch(/^nvs_/);
  });

  it("asks an enrolled user for a code, accepts a current one once, and a recovery code once", async () => {
    const svc = new UserService(store, KEY);
    const { user } = await svc.create({
      username: "mfa-user",
      role: "operator",
      password: "a long enough password",
    });
    const { secret } = await svc.beginEnrolment(user.username);
    const t = Date.now();
    const confirmCode = totpCode(secret, t);
    const codes = await svc.confirmEnrolment(user.username, confirmCode);
    expect(codes).toHaveLength(10);
    const login = { username: "MFA-User", password: "a long enough password" };
    await expect(svc.login(login)).rejects.toMatchObject({ code: "NOVA_MFA_REQUIRED" });
    // The code confirming the enrolment was accepted: it cannot log in as well.
    await expect(svc.login({ ...login, totp: confirmCode })).rejects.toMatchObject({
      code: "NOVA_MFA_REUSED",
    });
    const next = totpCode(secret, t + 30_000);
    await svc.login({ ...login, totp: next });
    await expect(svc.login({ ...login, totp: next })).rejects.toMatchObject({ code: "NOVA_MFA_REUSED" });
    await svc.login({ ...login, recoveryCode: codes[0]!.toLowerCase() });
    await expect(svc.login({ ...login, recoveryCode: codes[0]! })).rejects.toMatchObject({
      code: "NOVA_MFA_REUSED",
    });
    // Each refusal counted; each success started the count again.
    expect((await svc.get(user.username)).failedAttempts).toBe(1);
  });

  it("stores the TOTP secret sealed under the server's key, bound to its user", async () => {
    const svc = new UserService(store, KEY);
    const { user } = await svc.create({
      username: "sealed",
      role: "viewer",
      password: "a long enough password",
    });
    const { secret } = await svc.beginEnrolment(user.username);
    const t = Date.now();
    await svc.confirmEnrolment(user.username, totpCode(secret, t));
    const stored = (await getUserByName(store.db, "sealed")).totpSecret ?? "";
    expect(stored).toMatch(/^v1\./);
    expect(stored).not.toContain(secret);
    const login = { username: "sealed", password: "a long enough password" };
    await svc.login({ ...login, totp: totpCode(secret, t + 30_000) });
    // A server with another key cannot use it, and says why.
    const other = new UserService(store, SecretKey.fromBase64(randomBytes(32).toString("base64"), "other"));
    await expect(other.login({ ...login, totp: totpCode(secret, t + 60_000) })).rejects.toMatchObject({
      code: "NOVA_SECRET",
    });
    // Nor can the sealed value serve another user: it is bound to this one.
    const { user: thief } = await svc.create({
      username: "thief",
      role: "viewer",
      password: "a long enough password",
    });
    await store.db.query("UPDATE users SET mfa_state = 'on', totp_secret = $2 WHERE id = $1", [
      thief.id,
      stored,
    ]);
    await expect(
      svc.login({
        username: "thief",
        password: "a long enough password",
        totp: totpCode(secret, t + 60_000),
      }),
    ).rejects.toMatchObject({ code: "NOVA_SECRET" });
  });

  it("seals at start a TOTP secret an older server stored in clear, and it keeps working", async () => {
    const svc = new UserService(store, KEY);
    const { user } = await svc.create({
      username: "clear",
      role: "viewer",
      password: "a long enough password",
    });
    const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const row = await getUserByName(store.db, "clear");
    await beginMfaEnrolment(store.db, row, secret);
    const t = Date.now();
    await confirmMfaEnrolment(
      store.db,
      await getUserByName(store.db, "clear"),
      Math.floor(t / 30_000) - 2,
      [],
    );
    expect((await getUserByName(store.db, "clear")).totpSecret).toBe(secret);
    // Read in clear until sealed, so no user is locked out meanwhile.
    await svc.login({
      username: user.username,
      password: "a long enough password",
      totp: totpCode(secret, t),
    });
    expect(await svc.sealClearTotpSecrets()).toBeGreaterThanOrEqual(1);
    expect((await getUserByName(store.db, "clear")).totpSecret).toMatch(/^v1\./);
    expect(await svc.sealClearTotpSecrets()).toBe(0);
    await svc.login({
      username: user.username,
      password: "a long enough password",
      totp: totpCode(secret, t + 30_000),
    });
  });
});
