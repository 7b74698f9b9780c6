import { createServer as createHttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { type AddressInfo, createServer as createTcpServer, type Server } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { createCa, HOST_IDENTITY_PREFIX, issueWithNewKey } from "../security/pki.js";
import { authenticatedOnly, isLoopback, listListeners, probe } from "./port-scan.js";

const servers: Server[] = [];
async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
}
afterAll(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
});

describe("port scan", () => {
  it("tells a listener that acts on unauthenticated bytes from one that needs a certificate", async () => {
    // A raw service that swallows what it gets (like QEMU's incoming migration port).
    const raw = await listen(createTcpServer((s) => s.on("data", () => {})));
    const http = await listen(createHttpServer((_req, res) => res.end("ok")));
    const ca = await createCa("c");
    const leaf = await issueWithNewKey(ca, { commonName: "h", uris: [`${HOST_IDENTITY_PREFIX}h`] });
    const mtls = await listen(
      createHttpsServer(
        { cert: leaf.certPem, key: leaf.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
        (_req, res) => res.end("secret"),
      ),
    );
    const bearer = await listen(
      createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => {
        res.statusCode = 401;
        res.end();
      }),
    );
    const rawResult = await probe("127.0.0.1", raw, 500);
    expect(rawResult.garbage).toBe("kept-open");
    expect(rawResult.tlsWithoutCertificate).toBe("no-tls");
    expect(authenticatedOnly(rawResult)).toBe(false);
    const httpResult = await probe("127.0.0.1", http, 500);
    expect(httpResult.garbage).toBe("answered");
    expect(httpResult.sample).toMatch(/^HTTP\/1\.1 400/);
    expect(authenticatedOnly(httpResult)).toBe(false);
    const mtlsResult = await probe("127.0.0.1", mtls, 500);
    expect(["tls-alert", "closed"]).toContain(mtlsResult.garbage);
    expect(mtlsResult.tlsWithoutCertificate).toBe("refused");
    expect(authenticatedOnly(mtlsResult)).toBe(true);
    expect(await probe("127.0.0.1", bearer, 500)).toMatchObject({ tlsWithoutCertificate: 401 });
    const mine = (await listListeners()).filter((l) => [raw, http, mtls].includes(l.port));
    expect(mine).toHaveLength(3);
    expect(mine.every((l) => l.pids.includes(process.pid) && isLoopback(l.address))).toBe(true);
  });
});
