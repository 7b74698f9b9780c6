import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { AgentVmPut } from "../api/types/agent.js";
import { ImageStore } from "../compute/images/image-store.js";
import { isNovaError, type NovaError } from "../lib/errors.js";
import { FenceStore } from "./fence-store.js";
import { VmManager } from "./vm-manager.js";

const VM = "11111111-2222-4333-8444-555555555555";
const HERE = "c0000000-0000-4000-8000-00000000000a";
const THERE = "c0000000-0000-4000-8000-00000000000b";

const spec = (power: "running" | "stopped", fence: { owner: string; epoch: number }): AgentVmPut => ({
  name: "vm1",
  generation: 1,
  vcpus: 1,
  memoryMiB: 64,
  kernelArgs: "",
  image: {
    diskDigest: `sha256:${"a".repeat(64)}`,
    diskFormat: "qcow2",
    kernelDigest: null,
    initrdDigest: null,
    cmdline: "",
  },
  power,
  fence,
});

async function rejection(p: Promise<unknown>): Promise<NovaError> {
  try {
    await p;
  } catch (err) {
    return err as NovaError;
  }
  throw new Error("expected a rejection");
}

/** An agent's fence store and VM manager over `dataDir`, as the agent process builds them at start. */
async function agentState(dataDir: string, own: string | null = HERE) {
  const fences = new FenceStore({ dataDir, ownClusterWaitMs: 20 });
  await fences.init();
  if (own) fences.setOwnCluster(own);
  const vms = new VmManager({
    dataDir,
    images: new ImageStore(path.join(dataDir, "images")),
    accel: "tcg",
    fences,
    log: pino({ level: "silent" }),
    onChange: () => {},
  });
  await vms.init();
  return { fences, vms };
}

describe("the agent's fencing tokens", () => {
  let dir = "";
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("keeps a VM's token across an agent restart and the VM's removal, and refuses a later start with the old one", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-fence-"));
    const first = await agentState(dir);
    expect((await first.vms.put(VM, spec("stopped", { owner: HERE, epoch: 1 }))).state).toBe("stopped");
    // The hand-off released the VM to another cluster at epoch 2 and fenced this host's copy.
    expect(await first.fences.admit(VM, { owner: THERE, epoch: 2 }, "record")).toEqual({
      owner: THERE,
      epoch: 2,
    });
    // The copy is removed, its directory with it.
    await first.vms.delete(VM);
    await expect(stat(path.join(dir, "vms", VM))).rejects.toThrow();
    expect(JSON.parse(await readFile(path.join(dir, "fences", `${VM}.json`), "utf8"))).toEqual({
      owner: THERE,
      epoch: 2,
    });

    const restarted = await agentState(dir);
    expect(restarted.fences.heldFor(VM)).toEqual({ owner: THERE, epoch: 2 });
    const err = await rejection(restarted.vms.put(VM, spec("running", { owner: HERE, epoch: 1 })));
    expect(isNovaError(err, "NOVA_ACP_FENCED")).toBe(true);
    expect(err.status).toBe(409);
    expect(err.message).toContain(`(owner ${THERE}, epoch 2)`);
    expect(err.message).toContain(`(owner ${HERE}, epoch 1)`);
    // Refused before anything was recorded: no VM, no directory.
    expect(restarted.vms.list()).toEqual([]);
    await expect(stat(path.join(dir, "vms", VM))).rejects.toThrow();
    // The new owner's own token does not run it here either: it names another cluster.
    expect(
      isNovaError(
        await rejection(restarted.vms.put(VM, spec("running", { owner: THERE, epoch: 2 }))),
        "NOVA_ACP_FENCED",
      ),
    ).toBe(true);
    // Stopping is never refused, whatever the token.
    expect((await restarted.vms.put(VM, spec("stopped", { owner: HERE, epoch: 1 }))).state).toBe("stopped");
  });

  it("lets a VM signed back at a higher epoch run here again", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-fence-"));
    const { fences } = await agentState(dir);
    await fences.admit(VM, { owner: THERE, epoch: 2 }, "record");
    expect(await fences.admit(VM, { owner: HERE, epoch: 3 }, "run")).toEqual({ owner: HERE, epoch: 3 });
    expect(() => fences.checkOwnStart(VM)).not.toThrow();
    const restarted = await agentState(dir);
    expect(restarted.fences.heldFor(VM)).toEqual({ owner: HERE, epoch: 3 });
  });

  it("never lowers a held token: an older fence call answers with the newer token it holds", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-fence-"));
    const { fences } = await agentState(dir);
    await fences.admit(VM, { owner: THERE, epoch: 5 }, "record");
    expect(await fences.admit(VM, { owner: THERE, epoch: 4 }, "record")).toEqual({ owner: THERE, epoch: 5 });
    expect(
      isNovaError(await rejection(fences.admit(VM, { owner: HERE, epoch: 5 }, "record")), "NOVA_ACP_FENCED"),
    ).toBe(true);
    expect((await agentState(dir)).fences.heldFor(VM)).toEqual({ owner: THERE, epoch: 5 });
    // Only the token file, no temporary left behind.
    expect(await readdir(path.join(dir, "fences"))).toEqual([`${VM}.json`]);
  });

  it("ignores a token file that was never completed", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-fence-"));
    await agentState(dir);
    await writeFile(path.join(dir, "fences", `${VM}.json`), '{"owner": "c0000000');
    expect((await agentState(dir)).fences.heldFor(VM)).toBeUndefined();
  });

  it("refuses to run while the agent has not learned its cluster, and runs once it has", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-fence-"));
    const { fences } = await agentState(dir, null);
    const err = await rejection(fences.admit(VM, { owner: HERE, epoch: 1 }, "run"));
    expect(isNovaError(err, "NOVA_ACP_FENCED")).toBe(true);
    expect(err.retryable).toBe(true);
    expect(err.details.refusal).toBe("unknown-cluster");
    // A request waiting when the registration reply arrives goes through.
    const waiting = fences.admit(VM, { owner: HERE, epoch: 1 }, "run");
    fences.setOwnCluster(HERE);
    expect(await waiting).toEqual({ owner: HERE, epoch: 1 });
  });
});
