import { X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  certInfo,
  createCa,
  createCsr,
  HOST_IDENTITY_PREFIX,
  identityOf,
  issueFromCsr,
  issueWithNewKey,
  SERVER_IDENTITY,
  verifyIssued,
} from "./pki.js";

describe("cluster PKI", () => {
  it("issues a host certificate from the agent's CSR, naming the host and chaining to the CA", async () => {
    const ca = await createCa("test cluster CA");
    const { csrPem, keyPem } = await createCsr("ignored-name");
    const certPem = await issueFromCsr(ca, csrPem, {
      commonName: "h1",
      uris: [`${HOST_IDENTITY_PREFIX}0b6c7a5e-0000-4000-8000-000000000001`],
      names: ["h1", "10.1.2.3"],
      validDays: 30,
    });
    expect(verifyIssued(certPem, ca.certPem, keyPem)).toBe(true);
    const info = certInfo(certPem);
    expect(info.commonName).toBe("h1");
    expect(identityOf(info.uris)).toEqual({ role: "host", hostId: "0b6c7a5e-0000-4000-8000-000000000001" });
    expect(info.notAfter.getTime() - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect(info.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    const x = new X509Certificate(certPem);
    expect(x.subjectAltName).toContain("DNS:h1");
    expect(x.subjectAltName).toContain("IP Address:10.1.2.3");
    expect(x.ca).toBe(false);
    expect(new X509Certificate(ca.certPem).ca).toBe(true);
  });

  it("refuses a CSR whose signature does not verify, and tells a foreign CA's certificate apart", async () => {
    const ca = await createCa("a");
    const other = await createCa("b");
    const { csrPem } = await createCsr("x");
    // Flip a byte inside the signature (the end of the DER).
    const lines = csrPem.trim().split("\n");
    const body = Buffer.from(lines.slice(1, -1).join(""), "base64");
    body[body.length - 3] = body[body.length - 3]! ^ 0xff;
    const bad = `${lines[0]}\n${body.toString("base64")}\n${lines.at(-1)}\n`;
    await expect(issueFromCsr(ca, bad, { commonName: "x", uris: [] })).rejects.toMatchObject({
      code: "NOVA_BAD_REQUEST",
    });
    const server = await issueWithNewKey(ca, { commonName: "server", uris: [SERVER_IDENTITY] });
    expect(verifyIssued(server.certPem, ca.certPem, server.keyPem)).toBe(true);
    expect(verifyIssued(server.certPem, other.certPem)).toBe(false);
    expect(identityOf(certInfo(server.certPem).uris)).toEqual({ role: "server" });
    expect(identityOf([])).toEqual({ role: "unknown" });
  });
});
