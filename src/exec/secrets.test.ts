import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { lockOrder } from "../cluster/store/exec-locks.js";
import { canonicalJson, idempotencyKey } from "./idempotency.js";
import { SecretKey, secretRef, secretRefs } from "./secrets.js";

describe("secret encryption", () => {
  const key = SecretKey.fromBase64(randomBytes(32).toString("base64"), "test");

  it("round-trips and never stores the clear value", () => {
    const sealed = key.seal("db-pass", "correct horse battery staple");
    expect(JSON.stringify(sealed)).not.toContain("horse");
    expect(key.open("db-pass", sealed)).toBe("correct horse battery staple");
  });

  it("refuses a row moved to another name, a tampered row and a wrong key", () => {
    const sealed = key.seal("a", "value-1234");
    expect(() => key.open("b", sealed)).toThrow(/cannot be decrypted/);
    const flipped = Buffer.from(sealed.ciphertext, "base64");
    flipped[0]! ^= 1;
    expect(() => key.open("a", { ...sealed, ciphertext: flipped.toString("base64") })).toThrow(
      /NOVA|decrypted/,
    );
    const other = SecretKey.fromBase64(randomBytes(32).toString("base64"), "other");
    expect(() => other.open("a", sealed)).toThrow(/not the one it was stored with/);
  });

  it("creates a 0600 key file on first use and reuses it; the environment wins", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "nc-key-"));
    try {
      const file = path.join(dir, "secrets.key");
      const k1 = await SecretKey.load(file, {});
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      const k2 = await SecretKey.load(file, {});
      expect(k2.open("x", k1.seal("x", "same-key"))).toBe("same-key");
      const envKey = randomBytes(32).toString("base64");
      const k3 = await SecretKey.load(file, { NOVACRON_SECRETS_KEY: envKey });
      expect(() => k3.open("x", k1.seal("x", "same-key"))).toThrow();
      expect((await readFile(file, "utf8")).trim()).not.toBe(envKey);
      expect(() => SecretKey.fromBase64("c2hvcnQ=", "env")).toThrow(/32 bytes/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("finds references in nested plan fields", () => {
    expect(
      [
        ...secretRefs({ a: [`x ${secretRef("one")} y`], b: { c: `${secretRef("two")}${secretRef("one")}` } }),
      ].sort(),
    ).toEqual(["one", "two"]);
  });
});

describe("idempotency keys", () => {
  it("are equal for the same plan whatever the key order, and differ by tenant, actor and plan", () => {
    const a = { steps: [{ kind: "wait", seconds: 1 }], name: "x" };
    const b = { name: "x", steps: [{ seconds: 1, kind: "wait" }] };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    const k = (plan: unknown, tenant = "t", actor = "admin:1") => idempotencyKey({ plan, tenant, actor });
    expect(k(a)).toBe(k(b));
    expect(k(a, "u")).not.toBe(k(a));
    expect(k(a, "t", "admin:2")).not.toBe(k(a));
    expect(k({ ...a, name: "y" })).not.toBe(k(a));
    expect(idempotencyKey({ plan: a, tenant: "t", actor: "x", clientKey: "k1" })).not.toBe(
      idempotencyKey({ plan: b, tenant: "t", actor: "x", clientKey: "k2" }),
    );
  });
});

describe("mutex order", () => {
  it("is one total order regardless of how the plan lists its assets", () => {
    expect(lockOrder(["vm:b", "host:a", "vm:a", "vm:b"])).toEqual(["host:a", "vm:a", "vm:b"]);
    expect(lockOrder(["vm:a", "host:a"])).toEqual(lockOrder(["host:a", "vm:a"]));
  });
});
