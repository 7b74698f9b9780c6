/**
 * Image copy between clusters, agent to agent over loopback with the real PKI (two
 * cluster CAs and a third): a host of the destination cluster pulls an offered blob and
 * gets it intact; a second blob that differs in a few pages crosses in a fraction of its
 * size (its other pages are references to the first's); a blob already held costs
 * nothing. A lying source (the offered file's content changed) is refused with
 * NOVA_IMAGE_DIGEST_MISMATCH and nothing is kept; a source sending more than the offered
 * size is cut off (NOVA_REPLY_TOO_LARGE); a bad token, a withdrawn offer and a host of a
 * third cluster get nothing.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ImageStore } from "../../compute/images/image-store.js";
import { waitFor } from "../../lib/wait.js";
import { type CertAndKey, createCa, HOST_IDENTITY_PREFIX, issueWithNewKey } from "../../security/pki.js";
import { haveOpenssl } from "../../testing/tls-fixtures.js";
import { AgentDwcp } from "../dwcp-transport.js";
import type { PullRequest } from "./image-pull.js";

const log = pino({ level: "silent" });
let dirs: string[] = [];
let agents: AgentDwcp[] = [];
const MiB = 1024 * 1024;

type Cluster = { ca: CertAndKey; n: number };
async function cluster(name: string): Promise<Cluster> {
  return { ca: await createCa(`${name}-ca`), n: 0 };
}

async function agent(
  c: Cluster,
  onImageBlobPulled?: (b: { logicalBytes: number; wireBytes: number }) => void,
): Promise<{ dwcp: AgentDwcp; images: ImageStore; dataDir: string }> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "nc-image-copy-"));
  dirs.push(dataDir);
  const n = c.n++;
  const leaf = await issueWithNewKey(c.ca, {
    commonName: `h${n}`,
    uris: [`${HOST_IDENTITY_PREFIX}00000000-0000-4000-8000-00000000000${n}`],
    names: [`h${n}.test`, "127.0.0.1"],
  });
  const images = new ImageStore(path.join(dataDir, "images"));
  const dwcp = await AgentDwcp.start({
    dataDir,
    host: "127.0.0.1",
    cacheBytes: 64 * MiB,
    log,
    tls: { ca: c.ca.certPem, cert: leaf.certPem, key: leaf.keyPem },
    images,
    ...(onImageBlobPulled ? { onImageBlobPulled } : {}),
  });
  agents.push(dwcp);
  return { dwcp, images, dataDir };
}

/** A file of `bytes` random bytes (not page-aligned, so the last page is partial). */
function blobFile(dir: string, name: string, content: Buffer): string {
  const file = path.join(dir, name);
  writeFileSync(file, content);
  return file;
}

let s: Cluster;
let d: Cluster;
let x: Cluster;

beforeAll(async () => {
  [s, d, x] = await Promise.all([cluster("s"), cluster("d"), cluster("x")]);
});

afterEach(async () => {
  for (const a of agents) await a.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs = [];
  agents = [];
});

/** The pull of `offer` that the destination server would ask for. */
function pullOf(id: string, offer: Awaited<ReturnType<AgentDwcp["offerImage"]>>): PullRequest {
  return { id, endpoint: offer.endpoint, token: offer.token, peerCaPem: s.ca.certPem, blobs: offer.blobs };
}

/** A source host of S offering one random blob of `bytes` to D as `id`, and a host of D. */
async function offered(id: string, bytes: number) {
  const src = await agent(s);
  const dst = await agent(d);
  const a = await src.images.importFile(blobFile(src.dataDir, "a", randomBytes(bytes)), "kernel");
  const offer = await src.dwcp.offerImage(id, [a.digest], d.ca.certPem, 60_000);
  return { src, dst, a, offer, req: pullOf(id, offer) };
}

async function pull(dst: AgentDwcp, req: PullRequest) {
  expect(dst.pullImage(req).state).toBe("running");
  return (await dst.imagePulls!.settled(req.id))!;
}

describe.skipIf(!haveOpenssl())("image copy between clusters", () => {
  it("copies a blob intact, the next similar one mostly as references, and a held one not at all", async () => {
    const src = await agent(s);
    // What the destination's metrics are told (agent-metrics.ts counts it).
    const told = { logicalBytes: 0, wireBytes: 0 };
    const dst = await agent(d, (b) => {
      told.logicalBytes += b.logicalBytes;
      told.wireBytes += b.wireBytes;
    });
    const first = randomBytes(8 * MiB + 1234);
    const a = await src.images.importFile(blobFile(src.dataDir, "a", first), "kernel");
    // A second version: 64 KiB changed in the middle, 4 KiB appended.
    const second = Buffer.concat([first, randomBytes(4096)]);
    randomBytes(64 * 1024).copy(second, 3 * MiB);
    const b = await src.images.importFile(blobFile(src.dataDir, "b", second), "kernel");

    const copy = async (id: string, digests: string[]) =>
      pull(dst.dwcp, pullOf(id, await src.dwcp.offerImage(id, digests, d.ca.certPem, 60_000)));
    const st = await copy("11111111-1111-4111-8111-111111111111", [a.digest]);
    expect(st.state, st.message).toBe("done");
    expect(readFileSync(dst.images.pathOf(a.digest)).equals(first)).toBe(true);
    expect(st.logicalBytes).toBe(first.length);
    // Random pages do not compress: the first copy costs about its size.
    expect(st.wireBytes).toBeGreaterThan(first.length * 0.9);

    const st2 = await copy("22222222-2222-4222-8222-222222222222", [b.digest, a.digest]);
    expect(st2.state, st2.message).toBe("done");
    expect(readFileSync(dst.images.pathOf(b.digest)).equals(second)).toBe(true);
    // Only the second blob was fetched (the first is held), and it crossed mostly as references.
    expect(st2.logicalBytes).toBe(second.length);
    expect(st2.wireBytes).toBeLessThan(second.length / 20);
    expect(st2.pagesDeduplicated).toBeGreaterThan(st2.pages * 0.9);
    expect(told).toEqual({
      logicalBytes: st.logicalBytes + st2.logicalBytes,
      wireBytes: st.wireBytes + st2.wireBytes,
    });
  });

  it("refuses a blob whose content is not its digest and keeps nothing of it", async () => {
    const { src, dst, a, req } = await offered("33333333-3333-4333-8333-333333333333", MiB);
    // The source now serves other bytes under the offered digest.
    chmodSync(src.images.pathOf(a.digest), 0o600);
    writeFileSync(src.images.pathOf(a.digest), randomBytes(MiB));
    const st = await pull(dst.dwcp, req);
    expect(st.state).toBe("failed");
    expect(st.code).toBe("NOVA_IMAGE_DIGEST_MISMATCH");
    expect(await dst.images.has(a.digest)).toBe(false);
    expect(readdirSync(path.join(dst.dataDir, "tmp", "image-pulls"))).toEqual([]);
  });

  it("cuts off a source that sends more than the offered size", async () => {
    const { dst, a, offer, req } = await offered("44444444-4444-4444-8444-444444444444", MiB);
    const st = await pull(dst.dwcp, { ...req, blobs: [{ ...offer.blobs[0]!, sizeBytes: 64 * 1024 }] });
    expect(st.state).toBe("failed");
    expect(st.code).toBe("NOVA_REPLY_TOO_LARGE");
    expect(await dst.images.has(a.digest)).toBe(false);
  });

  it("keeps nothing of a pull whose source went away mid-blob, and pulls afresh when asked again", async () => {
    const id = "66666666-6666-4666-8666-666666666666";
    const { src, dst, a, req } = await offered(id, 96 * MiB);
    expect(dst.dwcp.pullImage(req).state).toBe("running");
    // The source agent stops (its offer and sessions with it) while the blob crosses:
    // once the destination's temporary file holds some of it.
    const landing = path.join(dst.dataDir, "tmp", "image-pulls");
    await waitFor(
      () => readdirSync(landing).some((f) => statSync(path.join(landing, f)).size > 0) || undefined,
      { timeoutMs: 30_000, intervalMs: 5, what: "the blob to start arriving" },
    );
    await src.dwcp.close();
    agents = agents.filter((x) => x !== src.dwcp);
    const cut = (await dst.dwcp.imagePulls!.settled(id))!;
    expect(cut.state).toBe("failed");
    expect(await dst.images.has(a.digest)).toBe(false);
    expect(readdirSync(path.join(dst.dataDir, "tmp", "image-pulls"))).toEqual([]);
    // The failure is reported once; a source host that offers again is pulled from afresh.
    expect(dst.dwcp.pullImage(req).state).toBe("failed");
    const again = await agent(s);
    await again.images.importFile(src.images.pathOf(a.digest), "kernel");
    const st = await pull(
      dst.dwcp,
      pullOf(id, await again.dwcp.offerImage(id, [a.digest], d.ca.certPem, 60_000)),
    );
    expect(st.state, st.message).toBe("done");
    expect(await dst.images.has(a.digest)).toBe(true);
  });

  it("gives nothing to a bad token, after a withdrawal, or to a host of a third cluster", async () => {
    const id = "55555555-5555-4555-8555-555555555555";
    const { src, dst, a, req } = await offered(id, 64 * 1024);
    const stranger = await agent(x);
    const bad = await pull(dst.dwcp, { ...req, token: "AAAA" });
    expect(bad.code).toBe("NOVA_FORBIDDEN");
    const third = await pull(stranger.dwcp, req);
    expect(third.code).toBe("NOVA_HOST_UNREACHABLE");
    src.dwcp.withdrawImageOffer(id);
    // The failed pull was reported; asking again starts it afresh, and the offer is gone.
    expect(dst.dwcp.pullImage(req)).toMatchObject({ state: "failed", code: "NOVA_FORBIDDEN" });
    const late = await pull(dst.dwcp, req);
    // The source host no longer trusts the destination cluster's CA either: the handshake fails.
    expect(late).toMatchObject({ state: "failed", code: "NOVA_HOST_UNREACHABLE" });
    expect(await dst.images.has(a.digest)).toBe(false);
  });
});
