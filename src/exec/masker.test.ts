import { describe, expect, it } from "vitest";
import { TRUNCATED, truncate } from "../lib/truncate.js";
import { maskBatch } from "./exec-log.js";
import { MASK, Masker } from "./masker.js";

const SECRET = "hunter2-Sup3r$ecret!";

describe("the log masker", () => {
  const m = new Masker([SECRET]);

  it("hides a known secret value wherever it appears", () => {
    expect(m.mask(`connecting with ${SECRET} now`)).toBe(`connecting with ${MASK} now`);
    expect(m.mask(`${SECRET}${SECRET}`)).not.toContain("hunter2");
  });

  it("hides a secret split across lines", () => {
    const out = m.mask(`first part hunter2-Sup3\nr$ecret! second`);
    expect(out).not.toContain("hunter2");
    expect(out).not.toContain("r$ecret!");
  });

  it("hides the secret base64-encoded at any alignment, including inside Basic auth", () => {
    for (const prefix of ["", "a", "ab", "user:"]) {
      const enc = Buffer.from(`${prefix}${SECRET}`).toString("base64");
      const out = m.mask(`payload=${enc}`);
      expect(out, `prefix ${JSON.stringify(prefix)}`).not.toContain(enc.slice(8, 20));
    }
    const url = Buffer.from(SECRET).toString("base64url");
    expect(m.mask(`t=${url}`)).not.toContain(url.slice(0, 12));
  });

  it("hides the secret URL-encoded, JSON-escaped and hex-encoded", () => {
    expect(m.mask(`https://x/?q=${encodeURIComponent(SECRET)}`)).not.toContain(encodeURIComponent(SECRET));
    const quoted = new Masker(['pa"ss\\word']);
    expect(quoted.mask(JSON.stringify({ v: 'pa"ss\\word' }))).not.toContain("ss\\\\word");
    expect(m.mask(Buffer.from(SECRET).toString("hex"))).toBe(MASK);
  });

  it("masks credential-looking text it was never told about", () => {
    expect(m.mask("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345")).not.toContain("abcdefghij");
    expect(m.mask("password=swordfish123 user=bob")).toBe(`password=${MASK} user=bob`);
    expect(m.mask('{"api_key": "k-123456789"}')).not.toContain("k-123456789");
    expect(m.mask("token nva_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA used")).not.toContain("nva_AAAA");
    expect(m.mask("postgres://admin:s3cr3tpw@db:5432/x")).toBe(`postgres://admin:${MASK}@db:5432/x`);
    const key =
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
    expect(m.mask(`key:\n${key}\ndone`)).toBe(`key:\n${MASK}\ndone`);
    expect(
      m.mask("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N"),
    ).not.toContain("eyJ");
  });

  it("leaves ordinary text alone", () => {
    const text = "step 3/5 (restart web-1) completed in 1200 ms; VM web-1 is running";
    expect(m.mask(text)).toBe(text);
  });

  it("masks values inside structured results, keeping keys", () => {
    expect(m.maskValue({ body: `got ${SECRET}`, n: 3, nested: [{ password: "x" }] })).toEqual({
      body: `got ${MASK}`,
      n: 3,
      nested: [{ password: MASK }],
    });
  });

  it("catches a secret split across separately logged lines in one batch", () => {
    const lines = [
      { step: 0, level: "info", message: "out: hunter2-Sup" },
      { step: 0, level: "info", message: "3r$ecret! tail" },
      { step: 0, level: "info", message: "next" },
    ];
    const { lines: out, consumed } = maskBatch(m, lines, false);
    const text = out.map((l) => l.message).join("\n");
    expect(text).not.toContain("hunter2-Sup");
    expect(text).not.toContain("3r$ecret");
    expect(consumed).toBeGreaterThanOrEqual(2);
  });

  it("catches a split at the batch edge thanks to the held-back line", () => {
    const lines = [
      { step: 0, level: "info", message: "ok" },
      { step: 0, level: "info", message: "x hunter2-Sup" },
      { step: 0, level: "info", message: "3r$ecret!" },
    ];
    const { lines: out, consumed } = maskBatch(m, lines, false);
    expect(out.map((l) => l.message).join("\n")).not.toMatch(/hunter2|ecret!/);
    expect(consumed).toBe(3);
  });

  it("masks before truncating: a secret cut at the limit leaks no prefix", () => {
    const text = `token is ${SECRET} and more`;
    for (let cut = "token is ".length + 1; cut < "token is ".length + SECRET.length; cut++) {
      const out = m.maskTruncated(text, cut);
      expect(out, `cut at ${cut}`).not.toContain("hu");
      expect(out.length).toBeLessThanOrEqual(cut + TRUNCATED.length);
    }
  });

  it("hides a secret's prefix right before a truncation mark made without the masker", () => {
    const text = `token is ${SECRET} and more`;
    for (let keep = 1; keep < SECRET.length; keep++) {
      const out = m.mask(truncate(text, "token is ".length + keep));
      expect(out, `keeping ${keep} characters`).toBe(`token is ${MASK}${TRUNCATED}`);
    }
    const b64 = Buffer.from(SECRET).toString("base64");
    expect(m.mask(truncate(`auth ${b64}`, "auth ".length + 10))).toBe(`auth ${MASK}${TRUNCATED}`);
    // Ordinary text before a mark stays.
    expect(m.mask(truncate("plain words here", 11))).toBe(`plain words${TRUNCATED}`);
  });

  it("hides trivially transformed copies: spaced, dashed, reversed, split into quoted parts", () => {
    const spaced = [...SECRET].join(" ");
    expect(m.mask(`x ${spaced} y`)).toBe(`x ${MASK} y`);
    expect(m.mask(`x ${[...SECRET].join("-")} y`)).toBe(`x ${MASK} y`);
    const reversed = [...SECRET].reverse().join("");
    expect(m.mask(`x ${reversed} y`)).toBe(`x ${MASK} y`);
    expect(m.mask(`x "hunter2-Su" + "p3r$ecret!" y`)).not.toMatch(/hunter2|ecret!/);
    expect(m.mask("hunter2- Sup3r $ecret!")).toBe(MASK);
    // Text that merely shares the secret's characters stays.
    expect(m.mask("hunter2 was here; Sup3r results")).toBe("hunter2 was here; Sup3r results");
  });
});
