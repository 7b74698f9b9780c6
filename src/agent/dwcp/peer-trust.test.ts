import { beforeAll, describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import {
  type CertAndKey,
  createCa,
  HOST_IDENTITY_PREFIX,
  issueWithNewKey,
  SERVER_IDENTITY,
} from "../../security/pki.js";
import { judgeSessionCert, MAX_PEER_CAS, PeerCaTrust, parsePeerCa } from "./peer-trust.js";

let own: CertAndKey;
let peer: CertAndKey;
let third: CertAndKey;
const hostOf = async (ca: CertAndKey) => {
  const c = await issueWithNewKey(ca, {
    commonName: "h",
    uris: [`${HOST_IDENTITY_PREFIX}0b5e7a3e-1111-4222-8333-444455556666`],
    names: ["h.test"],
  });
  return {
    pem: c.certPem,
    subjectaltname: `URI:${HOST_IDENTITY_PREFIX}0b5e7a3e-1111-4222-8333-444455556666, DNS:h.test`,
  };
};

beforeAll(async () => {
  [own, peer, third] = await Promise.all([createCa("own"), createCa("peer"), createCa("third")]);
});

describe("parsePeerCa", () => {
  it("takes a CA certificate and refuses anything else with NOVA_BAD_REQUEST", async () => {
    expect(parsePeerCa(`\n${peer.certPem}\n\n`)).toBe(peer.certPem);
    const leaf = await hostOf(peer);
    for (const bad of ["not a certificate", leaf.pem]) {
      const err = (() => {
        try {
          parsePeerCa(bad);
        } catch (e) {
          return e;
        }
      })();
      expect(isNovaError(err, "NOVA_BAD_REQUEST"), bad.slice(0, 20)).toBe(true);
    }
    expect(() => parsePeerCa(leaf.pem)).toThrow(/not a CA certificate/);
  });
});

describe("PeerCaTrust", () => {
  it("lists each CA once, for as long as one of its migrations is prepared", () => {
    const t = new PeerCaTrust();
    t.add("m1", "A");
    t.add("m2", "A");
    t.add("m1", "A"); // repeated prepare
    t.add("m3", "B");
    expect(t.list()).toEqual(["A", "B"]);
    expect(t.of("m2")).toBe("A");
    expect(t.remove("m1")).toBe(false); // m2 still trusts A
    expect(t.remove("m2")).toBe(true);
    expect(t.remove("m2")).toBe(false);
    expect(t.list()).toEqual(["B"]);
    expect(t.of("m2")).toBeUndefined();
  });

  it(`refuses a ${MAX_PEER_CAS + 1}th distinct CA with NOVA_NO_CAPACITY and changes nothing`, () => {
    const t = new PeerCaTrust();
    for (let i = 0; i < MAX_PEER_CAS; i++) t.add(`m${i}`, `CA${i}`);
    const err = (() => {
      try {
        t.add("extra", "CA-new");
      } catch (e) {
        return e;
      }
    })();
    expect(isNovaError(err, "NOVA_NO_CAPACITY")).toBe(true);
    expect(t.list()).toHaveLength(MAX_PEER_CAS);
    expect(t.of("extra")).toBeUndefined();
    // A CA already trusted costs nothing more; nor may one shared CA be swapped past the bound.
    t.add("extra", "CA3");
    expect(() => t.add("extra", "CA-new")).toThrow(/already trusts 8 other clusters' CAs/);
    expect(t.of("extra")).toBe("CA3");
    // Once a migration ended, its CA's place is free.
    t.remove("m0");
    t.add("later", "CA-new");
    expect(t.list()).toHaveLength(MAX_PEER_CAS);
  });
});

describe("judgeSessionCert", () => {
  it("lets in this cluster's certificates for any migration, as before", async () => {
    const cert = await hostOf(own);
    expect(judgeSessionCert({ cert, ownCaPem: own.certPem, peerCaPem: undefined })).toEqual({
      ok: true,
      via: "own-ca",
    });
    expect(judgeSessionCert({ cert, ownCaPem: own.certPem, peerCaPem: peer.certPem }).ok).toBe(true);
  });

  it("lets in a host certificate of the migration's peer CA", async () => {
    const cert = await hostOf(peer);
    expect(judgeSessionCert({ cert, ownCaPem: own.certPem, peerCaPem: peer.certPem })).toEqual({
      ok: true,
      via: "peer-ca",
    });
  });

  it("refuses a peer CA's certificate for a migration prepared without it (trusted for another)", async () => {
    const cert = await hostOf(peer);
    const v = judgeSessionCert({ cert, ownCaPem: own.certPem, peerCaPem: undefined });
    expect(v).toEqual({ ok: false, reason: expect.stringMatching(/trusts no other/) });
    const other = judgeSessionCert({ cert, ownCaPem: own.certPem, peerCaPem: third.certPem });
    expect(other).toEqual({ ok: false, reason: expect.stringMatching(/neither from this cluster's CA/) });
  });

  it("refuses a peer CA's certificate that is not a host's (the source cluster's server)", async () => {
    const server = await issueWithNewKey(peer, { commonName: "s", uris: [SERVER_IDENTITY] });
    const v = judgeSessionCert({
      cert: { pem: server.certPem, subjectaltname: `URI:${SERVER_IDENTITY}` },
      ownCaPem: own.certPem,
      peerCaPem: peer.certPem,
    });
    expect(v).toEqual({ ok: false, reason: "the source cluster's certificate is not a host certificate" });
  });

  it("refuses a session without a client certificate", () => {
    expect(judgeSessionCert({ cert: null, ownCaPem: own.certPem, peerCaPem: peer.certPem })).toEqual({
      ok: false,
      reason: "no client certificate",
    });
  });
});
