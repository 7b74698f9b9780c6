// Fencing end to end (docs/federation.md §10, "Why at most one copy runs"): a real server,
// a real agent and a real QEMU guest (TCG). The agent is handed a token naming another
// cluster at a higher epoch, as the hand-off does when it releases a VM; from then on no
// path to QEMU runs the VM on that host: `vm start` through the API fails with
// NOVA_ACP_FENCED and no QEMU starts.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { issueWithNewKey, SERVER_IDENTITY } from "../src/security/pki.js";
import { type ClusterFetch, clusterFetch } from "../src/security/tls-client.js";
import { guestImageManifest, qemuPidsUnder, TestCluster } from "./helpers/cluster.js";

const SERVER_PORT = 17720;
const AGENT_PORT = 17821;
const AGENT_FLAGS = ["--memory", "1024", "--stop-grace", "20"];
/** The cluster the VM is released to (no such cluster runs here: only its id matters). */
const ELSEWHERE = "c0000000-0000-4000-8000-0000000000e2";

interface VmBody {
  id: string;
  state: string;
  stateReason: string;
}

describe("an agent fenced by a newer token naming another cluster", { timeout: 240_000 }, () => {
  let c: TestCluster;
  /** Calls the agent as the server does: a certificate from the cluster CA naming the server. */
  let asServer: ClusterFetch;
  let identity: { hostId: string; clusterId?: string };
  const agentUrl = `https://127.0.0.1:${AGENT_PORT}`;

  beforeAll(async () => {
    const manifest = await guestImageManifest();
    c = await TestCluster.create(SERVER_PORT);
    await c.startServer(["--heartbeat-timeout", "6"]);
    await c.startAgent("f1", AGENT_PORT, AGENT_FLAGS);
    const res = await c.cli(["image", "import", "guest", "--manifest", manifest]);
    expect(res.code, res.stderr).toBe(0);
    identity = JSON.parse(await readFile(path.join(c.agentDir("f1"), "pki", "identity.json"), "utf8"));
    const ca = {
      certPem: c.caPem,
      keyPem: await readFile(path.join(c.dir, "server", "pki", "ca.key"), "utf8"),
    };
    const server = await issueWithNewKey(ca, { commonName: "novacron-server", uris: [SERVER_IDENTITY] });
    asServer = clusterFetch(
      { caPem: c.caPem, certPem: server.certPem, keyPem: server.keyPem },
      { role: "host", hostId: identity.hostId },
    );
  }, 180_000);

  afterAll(async () => {
    await c?.destroy();
  });

  const vmDir = (id: string) => path.join(c.agentDir("f1"), "vms", id);

  it("learned its cluster's id when it joined", () => {
    expect(identity.clusterId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("keeps the VM stopped: vm start fails with NOVA_ACP_FENCED and no QEMU runs", async () => {
    const created = await c.api<VmBody>("POST", "/v1/vms", {
      name: "fenced",
      image: "guest",
      memoryMiB: 256,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const vm = created.body;
    await c.waitVmState("fenced", "running");
    expect(await qemuPidsUnder(vmDir(vm.id))).toHaveLength(1);

    // The hand-off's release: another cluster owns the VM at epoch 2.
    const fence = await asServer(`${agentUrl}/agent/v1/vms/${vm.id}/fence`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ owner: ELSEWHERE, epoch: 2 }),
    });
    expect(fence.status).toBe(200);
    expect(await fence.json()).toEqual({ held: { owner: ELSEWHERE, epoch: 2 } });
    // The fence does not touch the power state; stopping is never refused.
    expect(await qemuPidsUnder(vmDir(vm.id))).toHaveLength(1);
    expect((await c.api("POST", "/v1/vms/fenced/stop")).status).toBe(202);
    await c.waitVmState("fenced", "stopped");
    await waitFor(async () => (await qemuPidsUnder(vmDir(vm.id))).length === 0, {
      timeoutMs: 30_000,
      what: "the VM's QEMU to exit",
    });

    // The server still thinks it owns the VM at epoch 1: its start is refused by the agent.
    expect((await c.api("POST", "/v1/vms/fenced/start")).status).toBe(202);
    const failed = (await c.waitVmState("fenced", "failed")) as unknown as VmBody;
    expect(failed.stateReason).toContain("NOVA_ACP_FENCED");
    expect(failed.stateReason).toContain(`(owner ${ELSEWHERE}, epoch 2)`);
    expect(failed.stateReason).toContain(`(owner ${identity.clusterId}, epoch 1)`);
    expect(await qemuPidsUnder(vmDir(vm.id))).toEqual([]);

    // Across an agent restart too: the token is on disk, and a start is refused again.
    await c.stop("f1");
    expect(
      JSON.parse(await readFile(path.join(c.agentDir("f1"), "fences", `${vm.id}.json`), "utf8")),
    ).toEqual({
      owner: ELSEWHERE,
      epoch: 2,
    });
    await c.startAgent("f1", AGENT_PORT, AGENT_FLAGS);
    const put = await asServer(`${agentUrl}/agent/v1/vms/${vm.id}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        name: "fenced",
        generation: 100,
        vcpus: 1,
        memoryMiB: 256,
        kernelArgs: "",
        image: {
          diskDigest: `sha256:${"0".repeat(64)}`,
          diskFormat: "qcow2",
          kernelDigest: null,
          initrdDigest: null,
          cmdline: "",
        },
        power: "running",
        fence: { owner: identity.clusterId, epoch: 1 },
      }),
    });
    expect(put.status).toBe(409);
    expect(((await put.json()) as { error: { code: string } }).error.code).toBe("NOVA_ACP_FENCED");
    expect(await qemuPidsUnder(vmDir(vm.id))).toEqual([]);
  });
});
