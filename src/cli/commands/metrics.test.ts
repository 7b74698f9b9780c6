import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCa, issueWithNewKey, SCRAPER_IDENTITY } from "../../security/pki.js";
import { runAgainstStub } from "../stub-api.test-util.js";

describe("novacron metrics credentials", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp("/tmp/wt-metrics-cli-");
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses --days out of range without asking the server", async () => {
    const run = await runAgainstStub(
      ["metrics", "credentials", "--out", path.join(dir, "a"), "--days", "0"],
      {},
    );
    expect(run.code).toBe(2);
    expect(run.requests).toEqual([]);
    expect(run.stderr).toMatch(/--days must be a whole number/);
  });

  it("writes nothing when the certificate returned is not for its key", async () => {
    const ca = await createCa("stub CA");
    const other = await issueWithNewKey(ca, { commonName: "scraper-x", uris: [SCRAPER_IDENTITY] });
    const out = path.join(dir, "b");
    const run = await runAgainstStub(["metrics", "credentials", "--out", out, "--name", "prom"], {
      "POST /v1/metrics/credentials": {
        status: 201,
        body: { certificate: other.certPem, ca: ca.certPem, serial: "1", notAfter: new Date().toISOString() },
      },
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("NOVA_TLS_UNTRUSTED");
    expect(existsSync(out)).toBe(false);
    // It asked with a CSR of its own and the name and lifetime given.
    const body = run.requests[0]!.body as { name: string; csr: string; validDays: number };
    expect(body).toMatchObject({ name: "prom", validDays: 365 });
    expect(body.csr).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----/);
  });
});
