/**
 * The agent's DWCP hello over loopback: a destination accepts a session only with the
 * token it issued, lets a newer session replace one that never started relaying (the
 * source chose QEMU's transport, or restarted), and refuses a second one once relays run.
 * A malformed hello gets the same answer as a wrong token; an unreachable listener makes
 * "auto" fall back to QEMU's transport and "dwcp" fail. Agents talk mutual TLS with
 * certificates of one test CA; a certificate of another CA, a peer without TLS and an
 * agent given neither TLS nor the plaintext opt-in are refused. Across clusters (the real
 * PKI, three CAs): a host of the source cluster gets in for the migration prepared with its
 * CA only, only while it is prepared, and verifies the destination against the destination
 * cluster's CA; the source cluster's server certificate and a third CA's host are refused.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type DialOptions, dialSession } from "../dwcp/amst/dial.js";
import { DwcpListener } from "../dwcp/amst/listen.js";
import { isNovaError } from "../lib/errors.js";
import {
  type CertAndKey,
  createCa,
  HOST_IDENTITY_PREFIX,
  issueWithNewKey,
  SERVER_IDENTITY,
} from "../security/pki.js";
import { haveOpenssl, makeTlsCluster } from "../testing/tls-fixtures.js";
import { AgentDwcp, type AgentDwcpOptions, DWCP_PLAINTEXT_WARNING } from "./dwcp-transport.js";

const log = pino({ level: "silent" });
let dirs: string[] = [];
let agents: AgentDwcp[] = [];
const NAMES = ["a.test", "b.test", "c.test", "peer.test"];
const pki = haveOpenssl() ? makeTlsCluster(NAMES) : null;
const foreign = haveOpenssl() ? makeTlsCluster(["a.test"]) : null;
let next = 0;

function tlsOf(name: string, ca = pki!) {
  return { ca: pki!.ca, ...ca.leaves[name]! };
}

async function agent(opts: Partial<AgentDwcpOptions> = {}): Promise<AgentDwcp> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "nc-agent-dwcp-"));
  dirs.push(dataDir);
  const name = NAMES[next++ % 3]!;
  const a = await AgentDwcp.start({
    dataDir,
    host: "127.0.0.1",
    cacheBytes: 16 * 1024 * 1024,
    log,
    ...(opts.plaintext ? {} : { tls: tlsOf(name) }),
    ...opts,
  });
  agents.push(a);
  return a;
}

/** A hand-made peer of the destination: a cluster certificate, but not an agent. */
function peerTls(): Pick<DialOptions, "tls"> {
  return { tls: { ...tlsOf("peer.test"), checkServerIdentity: () => undefined } };
}

beforeEach(() => {
  dirs = [];
  agents = [];
});

afterEach(async () => {
  for (const a of agents) await a.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.skipIf(!haveOpenssl())("AgentDwcp sessions", () => {
  it("lets a newer session replace one that carried nothing, and picks QEMU's transport on loopback", async () => {
    const dst = await agent();
    const src = await agent();
    const ep = dst.expectIncoming("m1", "vm1", { port: 9 }, { port: 9 });
    // A source that said hello and then went quiet (it restarted; its session can look
    // alive at the destination for a while): still open here.
    const stale = await dialSession({ host: ep.host, port: ep.port, ...peerTls() });
    const hello = stale.openChannel("hello");
    await hello.send(Buffer.from(JSON.stringify({ migrationId: "m1", token: ep.token })));
    await hello.end();
    expect(JSON.parse((await hello.read())!.toString("utf8"))).toEqual({ ok: true });
    const chosen = await src.startOutgoing("m1", "vm1", ep, "auto");
    expect(chosen.chosen).toBe("qemu");
    expect(chosen.reason).toMatch(/datacenter-class path/);
    // Decided on the kernel's RTT, which a busy event loop cannot inflate.
    expect(chosen.reason).toMatch(/RTT 0\.\d\d ms \(kernel\)/);
    stale.destroy();
  });

  it("refuses a wrong token and a second session once relays run", async () => {
    const dst = await agent();
    const src = await agent();
    const ep = dst.expectIncoming("m2", "vm2", { port: 9 }, { port: 9 });
    await expect(src.startOutgoing("m2", "vm2", { ...ep, token: "AAAA" }, "dwcp")).rejects.toThrow(
      /unknown migration or bad token/,
    );
    const chosen = await src.startOutgoing("m2", "vm2", ep, "dwcp");
    expect(chosen.chosen).toBe("dwcp");
    const other = await agent();
    await expect(other.startOutgoing("m2", "vm2", ep, "dwcp")).rejects.toThrow(/already has a session/);
  });

  it("answers a malformed hello like a wrong token and keeps the migration open", async () => {
    const dst = await agent();
    const src = await agent();
    const ep = dst.expectIncoming("m3", "vm3", { port: 9 }, { port: 9 });
    for (const bad of ["{not json", JSON.stringify({ migrationId: "m3" }), "x".repeat(5000)]) {
      const peer = await dialSession({ host: ep.host, port: ep.port, ...peerTls() });
      const hello = peer.openChannel("hello");
      await hello.send(Buffer.from(bad));
      await hello.end();
      expect(JSON.parse((await hello.read())!.toString("utf8"))).toEqual({
        ok: false,
        error: "unknown migration or bad token",
      });
      peer.destroy();
    }
    expect((await src.startOutgoing("m3", "vm3", ep, "dwcp")).chosen).toBe("dwcp");
  });

  it("auto falls back to QEMU's transport when the listener is unreachable; dwcp fails", async () => {
    const src = await agent();
    // A port that was just free: nothing listens there.
    const probe = await DwcpListener.listen({ host: "127.0.0.1", port: 0 });
    const port = probe.port;
    await probe.close();
    const to = { host: "127.0.0.1", port, token: "AAAA" };
    const chosen = await src.startOutgoing("m4", "vm4", to, "auto");
    expect(chosen).toMatchObject({ chosen: "qemu", mode: null, rttMs: null, probedMbps: null });
    expect(chosen.reason).toMatch(/^auto: the destination's DWCP listener is unreachable \(/);
    expect(src.outgoingOf("m4")).toBeUndefined();
    await expect(src.startOutgoing("m4", "vm4", to, "dwcp")).rejects.toThrow();
  });

  it("refuses a certificate from another CA both ways, and a peer without TLS", async () => {
    const dst = await agent();
    const ep = dst.expectIncoming("m5", "vm5", { port: 9 }, { port: 9 });
    // A source whose certificate another CA issued: the destination refuses it.
    const intruder = await agent({ tls: { ...tlsOf("a.test", foreign!), ca: pki!.ca } });
    const e1 = await intruder.startOutgoing("m5", "vm5", ep, "dwcp").catch((e) => e);
    expect(isNovaError(e1, "NOVA_DWCP_HANDSHAKE")).toBe(true);
    // A destination with such a certificate: a cluster source refuses it.
    const rogue = await agent({ tls: { ...tlsOf("a.test", foreign!), ca: pki!.ca } });
    const src = await agent();
    const e2 = await src
      .startOutgoing("m6", "vm6", { ...rogue.endpoint, token: "AAAA" }, "dwcp")
      .catch((e) => e);
    expect(isNovaError(e2, "NOVA_DWCP_HANDSHAKE")).toBe(true);
    expect(e2.message).toMatch(/TLS/);
    // No TLS at all.
    const e3 = await dialSession({ host: ep.host, port: ep.port, handshakeTimeoutMs: 2000 }).catch((e) => e);
    expect(isNovaError(e3, "NOVA_DWCP_HANDSHAKE")).toBe(true);
    // The real source still gets in.
    expect((await src.startOutgoing("m5", "vm5", ep, "dwcp")).chosen).toBe("dwcp");
  });

  it("checks the destination's name when serverName gives one", async () => {
    const dst = await agent(); // a.test
    const ep = dst.expectIncoming("m7", "vm7", { port: 9 }, { port: 9 });
    const wrong = await agent({ tls: { ...tlsOf("b.test"), serverName: () => "c.test" } });
    const err = await wrong.startOutgoing("m7", "vm7", ep, "dwcp").catch((e) => e);
    expect(isNovaError(err, "NOVA_DWCP_HANDSHAKE")).toBe(true);
    const right = await agent({ tls: { ...tlsOf("b.test"), serverName: () => "a.test" } });
    expect((await right.startOutgoing("m7", "vm7", ep, "dwcp")).chosen).toBe("dwcp");
  });
});

describe("AgentDwcp without TLS", () => {
  it("refuses to start without TLS material or the plaintext opt-in", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "nc-agent-dwcp-"));
    dirs.push(dataDir);
    const base = { dataDir, host: "127.0.0.1", log };
    for (const o of [base, { ...base, plaintext: false }]) {
      const err = await AgentDwcp.start(o).catch((e) => e);
      expect(isNovaError(err, "NOVA_CONFIG")).toBe(true);
      expect(err.message).toMatch(/TLS material .* or an explicit plaintext opt-in/);
    }
  });

  it("runs plaintext only when asked, and says so loudly", async () => {
    const lines: { level: number; msg: string }[] = [];
    const loud = pino({ level: "warn" }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const dst = await agent({ plaintext: true, log: loud });
    expect(dst.secure).toBe(false);
    expect(lines).toContainEqual(expect.objectContaining({ level: 40, msg: DWCP_PLAINTEXT_WARNING }));
    const src = await agent({ plaintext: true });
    const ep = dst.expectIncoming("m8", "vm8", { port: 9 }, { port: 9 });
    expect((await src.startOutgoing("m8", "vm8", ep, "dwcp")).chosen).toBe("dwcp");
  });
});

describe("AgentDwcp across clusters", () => {
  /** A cluster CA of the real PKI and its hosts' DWCP TLS material (host identity, DNS name). */
  async function cluster(name: string) {
    const ca = await createCa(`${name}-ca`);
    let n = 0;
    const host = async (uris?: string[]) => {
      const leaf = await issueWithNewKey(ca, {
        commonName: `${name}-h${n}`,
        uris: uris ?? [`${HOST_IDENTITY_PREFIX}00000000-0000-4000-8000-00000000000${n++}`],
        names: [`${name}-h${n}.test`, "127.0.0.1"],
      });
      return { ca: ca.certPem, cert: leaf.certPem, key: leaf.keyPem };
    };
    return { ca, host };
  }
  let s: { ca: CertAndKey; host: (uris?: string[]) => Promise<{ ca: string; cert: string; key: string }> };
  let d: typeof s;
  let x: typeof s;

  beforeEach(async () => {
    [s, d, x] = await Promise.all([cluster("s"), cluster("d"), cluster("x")]);
  });

  it("lets a host of the source cluster in for the migration prepared with its CA only, and only while it is prepared", async () => {
    const dst = await agent({ tls: await d.host() });
    const src = await agent({ tls: await s.host() });
    const ep = dst.expectIncoming("x1", "vm1", { port: 9 }, { port: 9 }, s.ca.certPem);
    // The source is told which CA to verify the destination against: the destination cluster's.
    expect(ep.caPem).toBe(d.ca.certPem);
    // A migration of the destination's own cluster, prepared meanwhile: S's CA is trusted at
    // the TLS layer now, but not for this migration.
    const local = dst.expectIncoming("l1", "vm2", { port: 9 }, { port: 9 });
    const wrongMigration = await src
      .startOutgoing("l1", "vm2", { ...local, caPem: d.ca.certPem }, "dwcp")
      .catch((e) => e);
    expect(wrongMigration.message).toMatch(/the client certificate is not accepted for this migration/);
    // The source cluster's server certificate is no host's.
    const server = await agent({ tls: await s.host([SERVER_IDENTITY]) });
    const notHost = await server.startOutgoing("x1", "vm1", ep, "dwcp").catch((e) => e);
    expect(notHost.message).toMatch(/not accepted for this migration/);
    // A host of a third cluster fails TLS, token or not.
    const stranger = await agent({ tls: await x.host() });
    const e3 = await stranger.startOutgoing("x1", "vm1", ep, "dwcp").catch((e) => e);
    expect(isNovaError(e3, "NOVA_DWCP_HANDSHAKE"), String(e3)).toBe(true);
    // The source's own cluster CA does not verify the destination: without ep.caPem it refuses.
    const unpinned = await src
      .startOutgoing("x0", "vm1", { ...ep, caPem: undefined } as typeof ep, "dwcp")
      .catch((e) => e);
    expect(isNovaError(unpinned, "NOVA_DWCP_HANDSHAKE"), String(unpinned)).toBe(true);
    // The real source gets in, over DWCP even though loopback would make auto pick QEMU's.
    const chosen = await src.startOutgoing("x1", "vm1", ep, "dwcp");
    expect(chosen.chosen).toBe("dwcp");
    // Once the migration ended, S's CA is no longer trusted: a later session fails at TLS.
    dst.forgetIncoming("x1");
    const again = dst.expectIncoming("l2", "vm3", { port: 9 }, { port: 9 });
    const late = await (await agent({ tls: await s.host() }))
      .startOutgoing("l2", "vm3", { ...again, caPem: d.ca.certPem }, "dwcp")
      .catch((e) => e);
    expect(isNovaError(late, "NOVA_DWCP_HANDSHAKE"), String(late)).toBe(true);
    // A host of its own cluster still gets in as before.
    expect(
      (await (await agent({ tls: await d.host() })).startOutgoing("l2", "vm3", again, "dwcp")).chosen,
    ).toBe("dwcp");
  });

  it("refuses a peer CA on a plaintext agent and a CA that is none", async () => {
    const plain = await agent({ plaintext: true });
    expect(() => plain.expectIncoming("p1", "vm1", { port: 9 }, { port: 9 }, s.ca.certPem)).toThrow(
      /needs DWCP with TLS/,
    );
    const dst = await agent({ tls: await d.host() });
    const leaf = await s.host();
    expect(() => dst.expectIncoming("p2", "vm1", { port: 9 }, { port: 9 }, leaf.cert)).toThrow(
      /not a CA certificate/,
    );
  });
});
