// The hand-off tables on PostgreSQL and PGlite: both sides move only by compare-and-set
// along their state machines, one active outgoing hand-off per VM, statements kept by kind,
// and a VM's owner moved only forward in epoch and only from the owner it had.
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { SignedStatement, StatementKind } from "../src/api/types/acp.js";
import {
  addOutgoingStatement,
  createIncoming,
  createOutgoing,
  findIncoming,
  getOutgoing,
  listUnsettledIncoming,
  listUnsettledOutgoing,
  moveVmOwnership,
  outgoingAgeMs,
  settleHandoff,
  transitionIncoming,
  transitionOutgoing,
  vmOwnership,
} from "../src/cluster/store/acp.js";
import { insertImage } from "../src/cluster/store/images.js";
import type { Store } from "../src/cluster/store/store.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";

const S = "00000000-0000-4000-8000-00000000000a";
const D = "00000000-0000-4000-8000-00000000000b";

function statement(kind: StatementKind, handoff: string, vm: string, epoch = 2): SignedStatement {
  return { kind, handoff, vm, source: S, target: D, epoch, issuedAt: "t", sig: `sig-${kind}` };
}

describe.each(ENGINES)("hand-off store on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  async function vm(name: string): Promise<string> {
    const imageId = await insertImage(store.db, {
      name: `img-${name}`,
      diskDigest: `sha256:${name}`,
      diskFormat: "qcow2",
      diskVirtualBytes: 1,
      kernelDigest: null,
      initrdDigest: null,
      cmdline: "",
      minMemoryMiB: 16,
    });
    const id = randomUUID();
    await store.db.query(
      `INSERT INTO vms (id, name, image_id, vcpus, memory_mib, desired_state, state) VALUES ($1, $2, $3, 1, 64, 'running', 'running')`,
      [id, name, imageId],
    );
    return id;
  }

  it("moves the source side along its machine, by compare-and-set, keeping every statement", async () => {
    const vmId = await vm("src1");
    const id = randomUUID();
    await store.write(async (tx) => {
      await createOutgoing(tx, {
        id,
        vmId,
        vmName: "src1",
        migrationId: null,
        targetClusterId: D,
        fromEpoch: 1,
        prepare: statement("prepare", id, vmId),
      });
    });
    const h = await getOutgoing(store.read, id);
    expect(h).toMatchObject({ state: "preparing", fromEpoch: 1, targetClusterId: D });
    expect(Object.keys(h.statements)).toEqual(["prepare"]);
    // Its age by the database's clock, which the prepare's authorisation is measured by.
    await store.db.query("UPDATE acp_outgoing SET created_at = now() - interval '90 seconds' WHERE id = $1", [
      id,
    ]);
    const age = await outgoingAgeMs(store.read, id);
    expect(age).toBeGreaterThanOrEqual(90_000);
    expect(age).toBeLessThan(150_000);
    expect(await outgoingAgeMs(store.read, randomUUID())).toBeUndefined();
    await store.db.query("UPDATE acp_outgoing SET created_at = now() WHERE id = $1", [id]);

    await store.write((tx) =>
      transitionOutgoing(tx, h, "transferring", "prepared", { prepared: statement("prepared", id, vmId) }),
    );
    // A second writer holding the old record changes nothing.
    await expect(store.write((tx) => transitionOutgoing(tx, h, "aborting", "late"))).rejects.toMatchObject({
      code: "NOVA_STATE_CHANGED",
    });
    const t = await getOutgoing(store.read, id);
    // An edge the machine lacks is refused before the database is asked.
    await expect(transitionOutgoing(store.db, t, "completed", "skip")).rejects.toMatchObject({
      code: "NOVA_ILLEGAL_STATE",
    });
    await store.write((tx) =>
      transitionOutgoing(tx, t, "released", "sent", { release: statement("release", id, vmId) }),
    );
    await addOutgoingStatement(store.db, id, statement("owned", id, vmId));
    const r = await getOutgoing(store.read, id);
    expect(r.state).toBe("released");
    expect(Object.keys(r.statements).sort()).toEqual(["owned", "prepare", "prepared", "release"]);
    expect(r.statements.release?.sig).toBe("sig-release");
    expect((await listUnsettledOutgoing(store.read)).map((x) => x.id)).toContain(id);
    // Only a final state settles; a final one stays listed until its effects are done.
    await expect(settleHandoff(store.db, "source", id, "released")).rejects.toMatchObject({
      code: "NOVA_INTERNAL",
    });
    await store.write((tx) => transitionOutgoing(tx, r, "completed", "owned"));
    expect((await listUnsettledOutgoing(store.read)).map((x) => x.id)).toContain(id);
    await settleHandoff(store.db, "source", id, "completed");
    expect((await listUnsettledOutgoing(store.read)).map((x) => x.id)).not.toContain(id);
  });

  it("allows one active outgoing hand-off per VM, and a new one once it ended", async () => {
    const vmId = await vm("src2");
    const first = randomUUID();
    const make = (id: string) =>
      store.write((tx) =>
        createOutgoing(tx, {
          id,
          vmId,
          vmName: "src2",
          migrationId: null,
          targetClusterId: D,
          fromEpoch: 1,
          prepare: statement("prepare", id, vmId),
        }),
      );
    await make(first);
    await expect(make(randomUUID())).rejects.toMatchObject({ code: "NOVA_ACP_OWNER_UNCERTAIN" });
    const h = await getOutgoing(store.read, first);
    await store.write((tx) => transitionOutgoing(tx, h, "aborting", "cancelled"));
    await expect(make(randomUUID())).rejects.toMatchObject({ code: "NOVA_ACP_OWNER_UNCERTAIN" });
    await store.write(async (tx) =>
      transitionOutgoing(tx, await getOutgoing(tx, first, true), "aborted", "acked"),
    );
    await make(randomUUID());
  });

  it("records the destination side prepared or aborted, and moves it once", async () => {
    const vmId = randomUUID();
    const id = randomUUID();
    await store.write((tx) =>
      createIncoming(tx, {
        id,
        vmId,
        vmName: "arriving1",
        sourceClusterId: S,
        fromEpoch: 1,
        state: "prepared",
        reason: "paused copy on h1",
        hostId: null,
        statements: { prepare: statement("prepare", id, vmId), prepared: statement("prepared", id, vmId) },
      }),
    );
    const h = (await findIncoming(store.read, id))!;
    expect(h).toMatchObject({ state: "prepared", sourceClusterId: S });
    expect((await listUnsettledIncoming(store.read)).map((x) => x.id)).toContain(id);
    await store.write((tx) =>
      transitionIncoming(tx, h, "resuming", "released to us", { release: statement("release", id, vmId) }),
    );
    const r = (await findIncoming(store.read, id))!;
    await store.write((tx) =>
      transitionIncoming(tx, r, "owned", "runs here", { owned: statement("owned", id, vmId) }),
    );
    await expect(
      store.write((tx) => transitionIncoming(tx, h, "aborted", "late abort")),
    ).rejects.toMatchObject({
      code: "NOVA_STATE_CHANGED",
    });
    expect((await findIncoming(store.read, id))!.state).toBe("owned");

    // An abort of a hand-off never prepared is kept, so that a late prepare is refused.
    const never = randomUUID();
    await store.write((tx) =>
      createIncoming(tx, {
        id: never,
        vmId,
        vmName: "arriving1",
        sourceClusterId: S,
        fromEpoch: 1,
        state: "aborted",
        reason: "aborted before it was prepared",
        hostId: null,
        statements: { abort: statement("abort", never, vmId) },
      }),
    );
    expect((await findIncoming(store.read, never))!.state).toBe("aborted");
    await expect(
      store.write((tx) =>
        createIncoming(tx, {
          id: randomUUID(),
          vmId,
          vmName: "x",
          sourceClusterId: S,
          fromEpoch: 1,
          state: "owned",
          reason: "",
          hostId: null,
          statements: {},
        }),
      ),
    ).rejects.toMatchObject({ code: "NOVA_INTERNAL" });
  });

  it("moves a VM's owner only forward, and only from the owner it has", async () => {
    const vmId = await vm("owned1");
    expect(await vmOwnership(store.read, vmId)).toEqual({ ownerClusterId: null, epoch: 1 });
    await store.write((tx) =>
      moveVmOwnership(tx, vmId, { ownerClusterId: null, epoch: 1 }, { ownerClusterId: D, epoch: 2 }),
    );
    expect(await vmOwnership(store.read, vmId)).toEqual({ ownerClusterId: D, epoch: 2 });
    // A stale writer (it still thinks epoch 1) changes nothing.
    await expect(
      store.write((tx) =>
        moveVmOwnership(tx, vmId, { ownerClusterId: null, epoch: 1 }, { ownerClusterId: null, epoch: 3 }),
      ),
    ).rejects.toMatchObject({ code: "NOVA_STATE_CHANGED" });
    await expect(
      store.write((tx) =>
        moveVmOwnership(tx, vmId, { ownerClusterId: D, epoch: 2 }, { ownerClusterId: null, epoch: 2 }),
      ),
    ).rejects.toMatchObject({ code: "NOVA_INTERNAL" });
    await store.write((tx) =>
      moveVmOwnership(tx, vmId, { ownerClusterId: D, epoch: 2 }, { ownerClusterId: null, epoch: 3 }),
    );
    expect(await vmOwnership(store.read, vmId)).toEqual({ ownerClusterId: null, epoch: 3 });
    expect(await vmOwnership(store.read, randomUUID())).toBeUndefined();
  });
});
