// The scraper certificates store on PostgreSQL and PGlite: issued certificates recorded and
// listed, a revocation as a compare-and-set (once; unknown serials refused), and the list
// agents get naming only revoked certificates that have not expired.
import { describe, expect, it } from "vitest";
import {
  isScraperCertRevoked,
  listScraperCerts,
  recordScraperCert,
  revokedScraperSerials,
  revokeScraperCert,
} from "../src/cluster/store/scraper-certs.js";
import type { Store } from "../src/cluster/store/store.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";

describe.each(ENGINES)("scraper certificates store on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  it("records, revokes once, and lists only unexpired revoked serials for agents", async () => {
    const day = 86_400_000;
    await recordScraperCert(store.db, { serial: "a1", name: "prom", notAfter: new Date(Date.now() + day) });
    await recordScraperCert(store.db, { serial: "b2", name: "prom", notAfter: new Date(Date.now() + day) });
    await recordScraperCert(store.db, { serial: "c3", name: "old", notAfter: new Date(Date.now() - day) });
    expect((await listScraperCerts(store.read)).map((c) => c.serial).sort()).toEqual(["a1", "b2", "c3"]);
    expect(await isScraperCertRevoked(store.read, "a1")).toBe(false);

    const revoked = await revokeScraperCert(store.db, "a1");
    expect(revoked).toMatchObject({ serial: "a1", name: "prom" });
    expect(revoked.revokedAt).not.toBeNull();
    await revokeScraperCert(store.db, "c3");
    await expect(revokeScraperCert(store.db, "a1")).rejects.toMatchObject({ code: "NOVA_CONFLICT" });
    await expect(revokeScraperCert(store.db, "ff")).rejects.toMatchObject({ code: "NOVA_NOT_FOUND" });

    expect(await isScraperCertRevoked(store.read, "a1")).toBe(true);
    expect(await isScraperCertRevoked(store.read, "b2")).toBe(false);
    // c3 is revoked but expired: no TLS handshake accepts it, so agents need not carry it.
    expect(await revokedScraperSerials(store.read)).toEqual(["a1"]);
  });

  it("refuses a malformed serial", async () => {
    await expect(
      recordScraperCert(store.db, { serial: "NOT-HEX", name: "x", notAfter: new Date() }),
    ).rejects.toBeDefined();
  });
});
