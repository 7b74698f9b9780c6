import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { certInfo, createCa, HOST_IDENTITY_PREFIX, issueWithNewKey } from "../security/pki.js";
import { AgentIdentityFiles, shouldRenew } from "./agent-identity.js";

describe("agent identity files", () => {
  let dir = "";
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("renews when a third of the certificate's life is left", async () => {
    const ca = await createCa("c");
    const leaf = await issueWithNewKey(ca, { commonName: "h", uris: [], validDays: 90 });
    const { notBefore, notAfter } = certInfo(leaf.certPem);
    const life = notAfter.getTime() - notBefore.getTime();
    expect(shouldRenew(leaf.certPem)).toBe(false);
    expect(shouldRenew(leaf.certPem, notBefore.getTime() + life * 0.6)).toBe(false);
    expect(shouldRenew(leaf.certPem, notBefore.getTime() + life * 0.7)).toBe(true);
  });

  it("saves generations, loads only a matching key, certificate and CA for the same server", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-identity-"));
    const files = new AgentIdentityFiles(dir);
    const ca = await createCa("c");
    const one = await issueWithNewKey(ca, { commonName: "h", uris: [`${HOST_IDENTITY_PREFIX}1`] });
    const two = await issueWithNewKey(ca, { commonName: "h", uris: [`${HOST_IDENTITY_PREFIX}1`] });
    const id = { serverUrl: "https://s:1", hostId: "1", caPem: ca.certPem };
    await files.save({ ...id, ...one });
    await files.save({ ...id, ...two });
    expect((await files.load("https://s:1"))?.certPem).toBe(two.certPem);
    expect(await files.load("https://other:1")).toBeUndefined();
    expect((await readdir(files.dir)).filter((f) => f.endsWith(".key"))).toHaveLength(1);
    // A key that is not the certificate's (a damaged or mixed-up file) is no identity.
    const meta = JSON.parse(await readFile(path.join(files.dir, "identity.json"), "utf8")) as { key: string };
    await writeFile(path.join(files.dir, meta.key), one.keyPem);
    expect(await files.load("https://s:1")).toBeUndefined();
  });
});
