// A live migration between two clusters' hosts (docs/migration.md, "Across clusters"): two
// real servers, so two cluster CAs, each with one agent, and a busy guest (TCG). The test
// drives the agents' migration APIs as the two servers would during a hand-off
// (docs/federation.md §10), each agent called with a server certificate of its own
// cluster's CA: prepare incoming on D's agent with S's CA, start the mirror and memory
// steps on S's agent with the endpoints and D's CA, wait for QEMU to complete, fence S's
// paused copy with D's token, finish on D with that token (D's cluster, epoch 2), release
// S's copy. The guest keeps running on D with its memory and disk intact; a host
// certificate of a third, unrelated CA is refused by D's DWCP listener; QEMU's own
// transport is refused across clusters; each step's copy state reads as ACP expects.
//
// D's server does not know the VM: its heartbeat handling ignores VMs it did not place and
// its reconciler only walks its own rows, so it leaves the copy alone (asserted at the end:
// D's QEMU still runs, once). S's server still has its row; after the release the fence
// keeps any start of it on S refused.
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type {
  AgentCopyState,
  AgentIncomingEndpoints,
  AgentOutgoingStatus,
  AgentVmSpec,
} from "../src/api/types/agent.js";
import { dialSession } from "../src/dwcp/amst/dial.js";
import { isNovaError } from "../src/lib/errors.js";
import { waitFor } from "../src/lib/wait.js";
import { createCa, HOST_IDENTITY_PREFIX, issueWithNewKey, SERVER_IDENTITY } from "../src/security/pki.js";
import { type ClusterFetch, clusterFetch } from "../src/security/tls-client.js";
import { guestImageManifest, qemuPidsUnder, TestCluster } from "./helpers/cluster.js";

const S_PORTS = { server: 17700, agent: 17801 };
const D_PORTS = { server: 17705, agent: 17806 };
const AGENT_FLAGS = ["--memory", "1024", "--stop-grace", "10"];
const SEED = 31;
const WORKLOAD = `nc.pattern_seed=${SEED} nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2 nc.dirty_mb=32 nc.dirty_rate_mbps=2`;
const TUNING = { downtimeLimitMs: 300, autoConverge: true, postcopy: false };

interface Identity {
  hostId: string;
  clusterId: string;
}

/** One cluster of the test: its server and its one agent, called as its server calls it. */
interface Side {
  c: TestCluster;
  agent: string;
  url: string;
  identity: Identity;
  asServer: ClusterFetch;
}

async function side(name: string, ports: { server: number; agent: number }, manifest: string): Promise<Side> {
  const c = await TestCluster.create(ports.server);
  await c.startServer(["--heartbeat-timeout", "6"]);
  await c.startAgent(name, ports.agent, AGENT_FLAGS);
  const res = await c.cli(["image", "import", "guest", "--manifest", manifest]);
  expect(res.code, res.stderr).toBe(0);
  const identity = JSON.parse(await readFile(path.join(c.agentDir(name), "pki", "identity.json"), "utf8"));
  const ca = {
    certPem: c.caPem,
    keyPem: await readFile(path.join(c.dir, "server", "pki", "ca.key"), "utf8"),
  };
  const server = await issueWithNewKey(ca, { commonName: "novacron-server", uris: [SERVER_IDENTITY] });
  const asServer = clusterFetch(
    { caPem: c.caPem, certPem: server.certPem, keyPem: server.keyPem },
    { role: "host", hostId: identity.hostId },
  );
  return { c, agent: name, url: `https://127.0.0.1:${ports.agent}`, identity, asServer };
}

/** Calls an agent's API as its server does; the status and the JSON answer. */
async function call<T>(
  s: Side,
  method: string,
  route: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await s.asServer(`${s.url}${route}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
}

async function ok<T>(s: Side, method: string, route: string, body?: unknown): Promise<T> {
  const res = await call<T>(s, method, route, body);
  expect(res.status, `${method} ${route}: ${JSON.stringify(res.body)}`).toBe(200);
  return res.body;
}

const heartbeats = (lines: string[]) =>
  lines.map((l) => Number(/^NC-HEARTBEAT seq=(\d+)/.exec(l)?.[1] ?? Number.NaN)).filter(Number.isFinite);
const verified = (lines: string[]) =>
  lines.map((l) => Number(new RegExp(`NC-VERIFY PASS seed=${SEED} .*round=(\\d+)`).exec(l)?.[1] ?? 0));

describe("live migration between hosts of two clusters over DWCP", { timeout: 300_000 }, () => {
  let s: Side;
  let d: Side;
  let vmId: string;

  beforeAll(async () => {
    const manifest = await guestImageManifest();
    s = await side("xs", S_PORTS, manifest);
    d = await side("xd", D_PORTS, manifest);
    const created = await s.c.api<{ id: string }>("POST", "/v1/vms", {
      name: "traveller",
      image: "guest",
      memoryMiB: 256,
      kernelArgs: WORKLOAD,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    vmId = created.body.id;
    await s.c.waitVmState("traveller", "running");
    await s.c.waitConsole("traveller", new RegExp(`NC-VERIFY PASS seed=${SEED} .*round=1`));
  }, 240_000);

  afterAll(async () => {
    await s?.c.destroy();
    await d?.c.destroy();
  });

  const copy = (at: Side) => ok<AgentCopyState>(at, "GET", `/agent/v1/vms/${vmId}/copy`);
  const qemus = async (at: Side) =>
    (await qemuPidsUnder(path.join(at.c.agentDir(at.agent), "vms", vmId))).length;

  it("belongs to two clusters with two CAs", () => {
    expect(s.c.caPem).not.toBe(d.c.caPem);
    expect(s.identity.clusterId).not.toBe(d.identity.clusterId);
  });

  it("moves the running guest to the other cluster's host, memory and disk intact, and refuses a third CA", async () => {
    const migrationId = randomUUID();
    const vmFile = JSON.parse(
      await readFile(path.join(s.c.agentDir("xs"), "vms", vmId, "vm.json"), "utf8"),
    ) as {
      spec: AgentVmSpec;
    };
    const spec = { ...vmFile.spec, generation: vmFile.spec.generation + 1, power: "running" as const };
    expect(await copy(s)).toMatchObject({ state: "running", qemu: { runState: "running" } });
    expect(await copy(d)).toEqual({ state: "gone", reason: "no QEMU for this VM on this host", qemu: null });

    // QEMU's own transport stays inside a cluster: refused before anything starts.
    const other = randomUUID();
    const refused = await call<{ error: { code: string; message: string } }>(
      d,
      "POST",
      `/agent/v1/vms/${other}/incoming`,
      { migrationId: randomUUID(), spec, tuning: TUNING, transport: "qemu", peerCaPem: s.c.caPem },
    );
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe("NOVA_UNPROCESSABLE");
    expect(refused.body.error.message).toMatch(/QEMU's own transport stays inside a cluster/);
    expect((await copy(d)).state).toBe("gone");

    // D's server prepares its agent, trusting S's CA for this migration.
    const endpoints = await ok<AgentIncomingEndpoints>(d, "POST", `/agent/v1/vms/${vmId}/incoming`, {
      migrationId,
      spec,
      tuning: TUNING,
      transport: "dwcp",
      peerCaPem: s.c.caPem,
    });
    expect(endpoints.tls).toBeUndefined();
    expect(endpoints.migrateUri).toMatch(/^tcp:127\.0\.0\.1:/);
    expect(endpoints.dwcp).toMatchObject({ name: "xd", caPem: d.c.caPem });
    expect(await copy(d)).toMatchObject({
      state: "incomplete",
      qemu: { runState: "inmigrate" },
      incomingMigrationId: migrationId,
    });

    // A host certificate of an unrelated CA is refused by D's listener; the same dial with a
    // host certificate of S's CA gets through TLS (the control: only the CA differs, and
    // this client checks nothing of D's certificate but its chain).
    const dialAs = async (ca: { certPem: string; keyPem: string }) => {
      const host = await issueWithNewKey(ca, {
        commonName: "visitor",
        uris: [`${HOST_IDENTITY_PREFIX}${randomUUID()}`],
        names: ["visitor", "127.0.0.1"],
      });
      return dialSession({
        host: endpoints.dwcp!.host,
        port: endpoints.dwcp!.port,
        handshakeTimeoutMs: 5000,
        tls: { ca: d.c.caPem, cert: host.certPem, key: host.keyPem, checkServerIdentity: () => undefined },
      }).then(
        (session) => {
          session.destroy();
          return "connected";
        },
        (err: unknown) => err,
      );
    };
    const intruder = await dialAs(await createCa("unrelated-ca"));
    expect(isNovaError(intruder, "NOVA_DWCP_HANDSHAKE"), String(intruder)).toBe(true);
    const sKey = await readFile(path.join(s.c.dir, "server", "pki", "ca.key"), "utf8");
    expect(await dialAs({ certPem: s.c.caPem, keyPem: sKey })).toBe("connected");
    expect((await copy(d)).state).toBe("incomplete");

    // S's server hands the endpoints to its agent, naming D's CA as it pinned it.
    const beforeSeq = heartbeats(await s.c.console("traveller", 200)).at(-1) ?? 0;
    const to = { ...endpoints, dwcp: { ...endpoints.dwcp!, caPem: d.c.caPem } };
    const mirror = await ok<AgentOutgoingStatus>(s, "POST", `/agent/v1/vms/${vmId}/outgoing`, {
      migrationId,
      step: "mirror",
      endpoints: to,
      tuning: TUNING,
      transport: "dwcp",
    });
    expect(mirror.transport?.chosen).toBe("dwcp");
    await ok(s, "POST", `/agent/v1/vms/${vmId}/outgoing`, {
      migrationId,
      step: "memory",
      endpoints: to,
      tuning: TUNING,
      autoSwitchover: true,
    });
    const done = await waitFor(
      async () => {
        const st = await ok<AgentOutgoingStatus>(
          s,
          "GET",
          `/agent/v1/vms/${vmId}/outgoing?migrationId=${migrationId}`,
        );
        const status = st.memory?.status;
        if (status === "failed" || status === "cancelled" || st.mirror?.error)
          throw new Error(`the migration ended ${status}: ${st.memory?.errorDesc ?? st.mirror?.error ?? ""}`);
        return status === "completed" ? st : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 250, what: "the source QEMU to complete the migration" },
    );
    expect(done.transport?.relay?.logicalBytes).toBeGreaterThan(0);

    // Both copies hold the whole VM, paused: the state in which S releases it.
    expect(await copy(s)).toMatchObject({ state: "paused", qemu: { runState: "postmigrate" } });
    await waitFor(async () => ((await copy(d)).state === "paused" ? true : undefined), {
      timeoutMs: 30_000,
      what: "the destination to have loaded the VM",
    });

    // The release: S's copy is fenced with D's token, then D resumes its copy with it.
    const token = { owner: d.identity.clusterId, epoch: 2 };
    expect(await ok(s, "PUT", `/agent/v1/vms/${vmId}/fence`, token)).toEqual({ held: token });
    const resumed = await ok<{ state: string; resumedAt?: number }>(
      d,
      "POST",
      `/agent/v1/vms/${vmId}/incoming/finish`,
      { migrationId, generation: spec.generation, fence: token },
    );
    expect(resumed.state).toBe("running");
    expect(await copy(d)).toMatchObject({ state: "running", qemu: { runState: "running" } });
    expect((await copy(d)).incomingMigrationId).toBeUndefined();
    expect(await ok(s, "POST", `/agent/v1/vms/${vmId}/outgoing/release`, {})).toEqual({ released: true });
    expect((await copy(s)).state).toBe("gone");

    // The guest goes on at D where it was: a later verification round of its memory and
    // disk pattern, no reboot, no failed check, heartbeats in sequence after S's last.
    const dConsole = async () =>
      (await ok<{ lines: string[] }>(d, "GET", `/agent/v1/vms/${vmId}/console?lines=400`)).lines;
    await waitFor(async () => (Math.max(0, ...verified(await dConsole())) > 0 ? true : undefined), {
      timeoutMs: 90_000,
      what: "the guest to verify its pattern at D",
    });
    const lines = await dConsole();
    expect(lines.filter((l) => l.startsWith("NC-READY") || l.includes("NC-VERIFY FAIL"))).toEqual([]);
    const seqs = heartbeats(lines);
    expect(seqs.length, lines.slice(-20).join("\n")).toBeGreaterThan(0);
    expect(seqs[0]).toBeGreaterThan(beforeSeq);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe(seqs[i - 1]! + 1);

    // Exactly one copy, at D; D's server never knew the VM and left it running.
    expect(await qemus(s)).toBe(0);
    expect(await qemus(d)).toBe(1);
    expect((await d.c.api("GET", `/v1/vms/${vmId}`)).status).toBe(404);
    expect((await copy(d)).state).toBe("running");
  });
});
