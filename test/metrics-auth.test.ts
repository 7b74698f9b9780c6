// The server's /metrics and scraper credentials against a real server over its TLS
// (PGlite): no byte of metrics without a token holding metrics:read or a scraper
// certificate of the cluster CA; a scraper certificate reads /metrics and nothing else;
// the credentials route is admin-only and signs only a well-formed CSR.
import { mkdtemp, rm } from "node:fs/promises";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MetricsCredentials } from "../src/api/types/metrics.js";
import {
  certInfo,
  createCa,
  createCsr,
  issueWithNewKey,
  SCRAPER_IDENTITY,
  verifyIssued,
} from "../src/security/pki.js";
import { type ClusterFetch, clusterFetch } from "../src/security/tls-client.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";

const PORT = 18450;

describe("the server's /metrics and scraper credentials", () => {
  let dir: string;
  let server: RunningServer;
  let admin: string;
  let anonymous: ClusterFetch;
  const url = `https://127.0.0.1:${PORT}`;

  const issue = async (body: unknown, token: string | null = admin) => {
    const res = await anonymous(`${url}/v1/metrics/credentials`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as MetricsCredentials };
  };

  beforeAll(async () => {
    dir = await mkdtemp("/tmp/wt-metrics-auth-");
    server = await startServer({
      dataDir: dir,
      port: PORT,
      execWorkers: false,
      logger: pino({ level: "silent" }),
    });
    admin = server.created.admin!;
    anonymous = clusterFetch({ caPem: server.caPem }, { role: "server" });
  });
  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses /metrics without credentials or with an unknown token, and serves it to an admin token", async () => {
    expect((await anonymous(`${url}/metrics`)).status).toBe(401);
    const wrong = await anonymous(`${url}/metrics`, { headers: { authorization: "Bearer nc_nope" } });
    expect(wrong.status).toBe(401);
    // A VM by a name that is no VM: its route pattern, not the name, labels the request.
    await anonymous(`${url}/v1/vms/not-a-vm-name`, { headers: { authorization: `Bearer ${admin}` } });
    const res = await anonymous(`${url}/metrics`, { headers: { authorization: `Bearer ${admin}` } });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/^novacron_certificate_expiry_timestamp_seconds\{certificate="ca"\} \d+$/m);
    expect(text).toMatch(/^novacron_certificate_expiry_timestamp_seconds\{certificate="server"\} \d+$/m);
    expect(text).toMatch(/^novacron_migrations_active\{state="transferring"\} 0$/m);
    expect(text).toMatch(/^novacron_server_process_cpu_seconds_total /m);
    expect(text).toContain('route="/v1/vms/:id"');
    expect(text).not.toContain("not-a-vm-name");
  });

  it("signs a scraper's CSR for an admin only; the certificate names the scraper and chains to the cluster CA", async () => {
    const { csrPem } = await createCsr("scraper-prom");
    expect((await issue({ name: "prom", csr: csrPem }, null)).status).toBe(401);
    expect((await issue({ name: "prom", csr: "not a csr" })).status).toBe(400);
    expect((await issue({ name: "prom", csr: csrPem, validDays: 0 })).status).toBe(400);
    expect((await issue({ name: "Not A Name", csr: csrPem })).status).toBe(400);
    const ok = await issue({ name: "prom", csr: csrPem, validDays: 30 });
    expect(ok.status).toBe(201);
    expect(ok.body.ca).toBe(server.caPem);
    expect(verifyIssued(ok.body.certificate, server.caPem)).toBe(true);
    const info = certInfo(ok.body.certificate);
    expect(info.uris).toEqual([SCRAPER_IDENTITY]);
    expect(info.notAfter.getTime() - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect(info.notAfter.getTime() - Date.now()).toBeLessThan(31 * 86_400_000);
  });

  it("lets a scraper certificate read /metrics and nothing else; one from another CA is refused", async () => {
    const { csrPem, keyPem } = await createCsr("scraper-prom");
    const { body } = await issue({ name: "prom", csr: csrPem });
    const scraper = clusterFetch(
      { caPem: server.caPem, certPem: body.certificate, keyPem },
      { role: "server" },
    );
    const metrics = await scraper(`${url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain("novacron_vms{");
    const vms = await scraper(`${url}/v1/vms`);
    expect(vms.status).toBe(403);
    expect(((await vms.json()) as { error: { code: string } }).error.code).toBe("NOVA_FORBIDDEN");
    const again = await scraper(`${url}/v1/metrics/credentials`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "more", csr: csrPem }),
    });
    expect(again.status).toBe(403);

    const otherCa = await createCa("not this cluster");
    const forged = await issueWithNewKey(otherCa, { commonName: "scraper-x", uris: [SCRAPER_IDENTITY] });
    const stranger = clusterFetch(
      { caPem: server.caPem, certPem: forged.certPem, keyPem: forged.keyPem },
      { role: "server" },
    );
    expect((await stranger(`${url}/metrics`)).status).toBe(401);
  });

  it("lists the scraper certificates it issued and refuses a revoked one at once, another still served", async () => {
    const kept = await createCsr("scraper-kept");
    const gone = await createCsr("scraper-gone");
    const keptCert = (await issue({ name: "kept", csr: kept.csrPem })).body;
    const goneCert = (await issue({ name: "gone", csr: gone.csrPem })).body;
    const as = (cert: string, keyPem: string) =>
      clusterFetch({ caPem: server.caPem, certPem: cert, keyPem }, { role: "server" });
    const keptFetch = as(keptCert.certificate, kept.keyPem);
    const goneFetch = as(goneCert.certificate, gone.keyPem);
    expect((await goneFetch(`${url}/metrics`)).status).toBe(200);

    const adminCall = (route: string, method = "GET") =>
      anonymous(`${url}${route}`, {
        method,
        headers: {
          authorization: `Bearer ${admin}`,
          ...(method === "POST" ? { "content-type": "application/json" } : {}),
        },
        ...(method === "POST" ? { body: "{}" } : {}),
      });
    const list = (await (await adminCall("/v1/metrics/scrapers")).json()) as {
      scrapers: { serial: string; name: string; revokedAt: string | null }[];
    };
    expect(list.scrapers.find((c) => c.serial === goneCert.serial)).toMatchObject({
      name: "gone",
      revokedAt: null,
    });
    // A scraper may not list or revoke them.
    expect((await goneFetch(`${url}/v1/metrics/scrapers`)).status).toBe(403);

    const revoked = await adminCall(`/v1/metrics/scrapers/${goneCert.serial}/revoke`, "POST");
    expect(revoked.status).toBe(200);
    expect(((await revoked.json()) as { revokedAt: string | null }).revokedAt).not.toBeNull();
    const refused = await goneFetch(`${url}/metrics`);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain("was revoked");
    expect((await keptFetch(`${url}/metrics`)).status).toBe(200);

    const twice = await adminCall(`/v1/metrics/scrapers/${goneCert.serial}/revoke`, "POST");
    expect(twice.status).toBe(409);
    const unknown = await adminCall("/v1/metrics/scrapers/abcdef0123/revoke", "POST");
    expect(unknown.status).toBe(404);
    expect((await adminCall("/v1/metrics/scrapers/not-hex/revoke", "POST")).status).toBe(400);
  });
});
