import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { AgentIncomingEndpoints } from "../api/types/agent.js";
import type { QemuProcess } from "../compute/qemu/process.js";
import type { QmpEvent } from "../compute/qemu/qmp-wire.js";
import { isNovaError, NovaError } from "../lib/errors.js";
import { FenceStore } from "./fence-store.js";
import { MigrationService } from "./migration-service.js";
import type { VmManager } from "./vm-manager.js";

const VM = "11111111-2222-3333-4444-555555555555";
const MIG = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";
const JOB = "mig-0a1b2c3d4e5f";
const ENDPOINTS: AgentIncomingEndpoints = {
  migrateUri: "tcp:127.0.0.1:4444",
  nbd: { host: "127.0.0.1", port: 10809, exportName: JOB },
};
const LOG = { debug: () => {}, warn: () => {} };
const HERE = "c0000000-0000-4000-8000-000000000001";
const ELSEWHERE = "c0000000-0000-4000-8000-000000000002";
/** The VM's current token while this cluster owns it. */
const FENCE = { owner: HERE, epoch: 1 };
const dataDirs: string[] = [];
afterAll(() => {
  for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
});

/** A QEMU that answers the queries from `state` and records every command. */
function fakeQemu() {
  const state = {
    runStatus: "running",
    migration: { status: "none" } as Record<string, unknown>,
    jobs: [] as Array<Record<string, unknown>>,
  };
  const commands: string[] = [];
  const args: Record<string, Record<string, unknown> | undefined> = {};
  const qmp = {
    closed: false,
    onEvent: (_: (ev: QmpEvent) => void) => () => {},
    async execute(name: string, a?: Record<string, unknown>): Promise<unknown> {
      commands.push(name);
      args[name] = a;
      switch (name) {
        case "query-status":
          return { status: state.runStatus, running: state.runStatus === "running" };
        case "query-migrate":
          return state.migration;
        case "query-jobs":
          return state.jobs;
        case "query-block":
          return [{ device: "drive-vda", inserted: { "node-name": "#block123" } }];
        case "blockdev-del":
          throw new NovaError("NOVA_QEMU_ERROR", `no node ${String(a?.["node-name"])}`);
        case "qom-list":
          return [];
        case "migrate-continue":
          // Let the second caller in while this one is still "in QEMU".
          await new Promise((r) => setTimeout(r, 5));
          state.migration = { status: "device" };
          return {};
        default:
          return {};
      }
    },
  };
  return { state, commands, args, proc: { qmp } as unknown as QemuProcess };
}

function fakeVms(proc: QemuProcess | undefined, outgoing?: string) {
  const vms = {
    released: 0,
    processOf: (id: string) => (id === VM ? proc : undefined),
    outgoingOf: (id: string) => (id === VM ? outgoing : undefined),
    incomingOf: () => undefined,
    async release() {
      vms.released++;
      return true;
    },
  };
  return vms;
}

function service(
  proc: QemuProcess | undefined,
  outgoing?: string,
  security: { qemuTls?: { dir: string }; qemuPlaintext?: boolean } = { qemuPlaintext: true },
) {
  const vms = fakeVms(proc, outgoing);
  const dataDir = mkdtempSync(path.join(tmpdir(), "nc-migsvc-"));
  dataDirs.push(dataDir);
  const fences = new FenceStore({ dataDir });
  fences.setOwnCluster(HERE);
  return {
    vms,
    fences,
    migrations: new MigrationService({
      vms: vms as unknown as VmManager,
      fences,
      listenHost: "127.0.0.1",
      hostName: "test-host",
      ...security,
      dwcp: null,
      switchoverEstimate: "qemu",
    }),
  };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

describe("MigrationService (destination)", () => {
  it("refuses to expose QEMU's listeners with neither TLS credentials nor the plaintext opt-in, before launching QEMU", async () => {
    const { migrations } = service(undefined, undefined, {});
    const err = await rejection(
      migrations.prepareIncoming(VM, {
        migrationId: MIG,
        spec: {} as never,
        tuning: { downtimeLimitMs: 300, autoConverge: false, postcopy: false },
      }),
    );
    expect(isNovaError(err, "NOVA_MIGRATION_INSECURE")).toBe(true);
  });
});

describe("MigrationService (destination), fenced", () => {
  it("does not resume the incoming copy with a token naming another cluster, and keeps the newer token", async () => {
    const q = fakeQemu();
    q.state.runStatus = "inmigrate";
    const { migrations, fences } = service(q.proc);
    const other = { owner: ELSEWHERE, epoch: 3 };
    const err = await rejection(
      migrations.finishIncoming(VM, { migrationId: MIG, generation: 2, fence: other }),
    );
    expect(isNovaError(err, "NOVA_ACP_FENCED")).toBe(true);
    expect(q.commands).toEqual([]);
    expect(fences.heldFor(VM)).toEqual(other);
    // This cluster's token at the old epoch is now stale too.
    const stale = await rejection(
      migrations.finishIncoming(VM, { migrationId: MIG, generation: 2, fence: FENCE }),
    );
    expect(isNovaError(stale, "NOVA_ACP_FENCED")).toBe(true);
    expect(q.commands).toEqual([]);
  });
});

describe("MigrationService (source)", () => {
  it("mirror step without DWCP: QEMU's transport, recorded and reported, after clearing a stale target node", async () => {
    const q = fakeQemu();
    const { migrations } = service(q.proc);
    const status = await migrations.outgoingStep(
      VM,
      { migrationId: MIG, step: "mirror", endpoints: ENDPOINTS },
      LOG,
    );
    expect(status.transport).toEqual({
      chosen: "qemu",
      mode: null,
      reason: "auto: DWCP is not available between these hosts",
    });
    const mutating = q.commands.filter((c) => !c.startsWith("query-"));
    expect(mutating).toEqual(["blockdev-del", "blockdev-add", "blockdev-mirror"]);
  });

  it("mirror step to a destination that requires TLS: loads this host's credentials and checks the destination's name", async () => {
    const q = fakeQemu();
    const { migrations } = service(q.proc, undefined, { qemuTls: { dir: "/etc/nc/qemu-tls" } });
    await migrations.outgoingStep(
      VM,
      { migrationId: MIG, step: "mirror", endpoints: { ...ENDPOINTS, tls: { hostname: "host-b" } } },
      LOG,
    );
    expect(q.args["object-add"]).toEqual({
      "qom-type": "tls-creds-x509",
      id: `nc-tls-client-${JOB}`,
      dir: "/etc/nc/qemu-tls",
      endpoint: "client",
      "verify-peer": true,
    });
    expect(q.args["blockdev-add"]).toMatchObject({
      "tls-creds": `nc-tls-client-${JOB}`,
      "tls-hostname": "host-b",
    });
  });

  it("refuses QEMU's transport when the two agents disagree on TLS, before touching the block layer", async () => {
    const tlsDest = { ...ENDPOINTS, tls: { hostname: "host-b" } };
    for (const [security, endpoints] of [
      [{ qemuPlaintext: true }, tlsDest],
      [{ qemuTls: { dir: "/etc/nc/qemu-tls" } }, ENDPOINTS],
    ] as const) {
      const q = fakeQemu();
      const { migrations } = service(q.proc, undefined, security);
      const err = await rejection(
        migrations.outgoingStep(VM, { migrationId: MIG, step: "mirror", endpoints }, LOG),
      );
      expect(isNovaError(err, "NOVA_MIGRATION_INSECURE")).toBe(true);
      expect(q.commands).not.toContain("blockdev-add");
    }
  });

  it("refuses transport dwcp on an agent without DWCP before touching QEMU's block layer", async () => {
    const q = fakeQemu();
    const { migrations } = service(q.proc);
    const err = await rejection(
      migrations.outgoingStep(
        VM,
        { migrationId: MIG, step: "mirror", endpoints: ENDPOINTS, transport: "dwcp" },
        LOG,
      ),
    );
    expect(isNovaError(err, "NOVA_UNPROCESSABLE")).toBe(true);
    expect(q.commands.every((c) => c.startsWith("query-"))).toBe(true);
  });

  it("switches over once when asked twice at pre-switchover", async () => {
    const q = fakeQemu();
    q.state.runStatus = "finish-migrate";
    q.state.migration = { status: "pre-switchover" };
    const { migrations } = service(q.proc, MIG);
    await Promise.all([
      migrations.outgoingStep(VM, { migrationId: MIG, step: "switchover" }, LOG),
      migrations.outgoingStep(VM, { migrationId: MIG, step: "switchover" }, LOG),
    ]);
    expect(q.commands.filter((c) => c === "migrate-continue")).toHaveLength(1);
  });

  it("refuses a switch-over before pre-switchover", async () => {
    const q = fakeQemu();
    q.state.migration = { status: "active" };
    const { migrations } = service(q.proc, MIG);
    const err = await rejection(migrations.outgoingStep(VM, { migrationId: MIG, step: "switchover" }, LOG));
    expect(isNovaError(err, "NOVA_ILLEGAL_STATE")).toBe(true);
    expect(q.commands).not.toContain("migrate-continue");
  });

  it("refuses to resume the source after a completed transfer unless the target is gone", async () => {
    const q = fakeQemu();
    q.state.runStatus = "postmigrate";
    q.state.migration = { status: "completed" };
    const { migrations } = service(q.proc, MIG);
    const err = await rejection(migrations.cancelOutgoing(VM, MIG, false, FENCE));
    expect(isNovaError(err, "NOVA_ILLEGAL_STATE")).toBe(true);
    expect(q.commands.every((c) => c.startsWith("query-"))).toBe(true);
  });

  it("cancel after a failed transfer only resumes the paused source", async () => {
    const q = fakeQemu();
    q.state.runStatus = "paused";
    q.state.migration = { status: "failed" };
    const { migrations } = service(q.proc, MIG);
    await migrations.cancelOutgoing(VM, MIG, false, FENCE);
    expect(q.commands.filter((c) => !c.startsWith("query-"))).toEqual(["cont"]);
  });

  it("does not resume a paused source with a token older than the one it holds, or another cluster's", async () => {
    const q = fakeQemu();
    q.state.runStatus = "paused";
    q.state.migration = { status: "failed" };
    const { migrations, fences } = service(q.proc, MIG);
    // The hand-off released the VM to another cluster at epoch 2 and fenced this copy.
    await fences.admit(VM, { owner: ELSEWHERE, epoch: 2 }, "record");
    for (const stale of [FENCE, { owner: ELSEWHERE, epoch: 2 }]) {
      const err = await rejection(migrations.cancelOutgoing(VM, MIG, true, stale));
      expect(isNovaError(err, "NOVA_ACP_FENCED")).toBe(true);
    }
    expect(q.commands).toEqual([]);
  });

  it("reports an absent VM without asking QEMU", async () => {
    const { migrations } = service(undefined);
    expect(await migrations.outgoingStatus(VM, MIG)).toEqual({
      vmStatus: "absent",
      mirror: null,
      memory: null,
    });
    expect(await migrations.cancelOutgoing(VM, MIG, true, FENCE)).toEqual({
      vmStatus: "absent",
      mirror: null,
      memory: null,
    });
  });

  it("forgets a migration's transport decision when the VM is released", async () => {
    const q = fakeQemu();
    const { migrations, vms } = service(q.proc, MIG);
    await migrations.outgoingStep(
      VM,
      { migrationId: MIG, step: "mirror", endpoints: ENDPOINTS, transport: "qemu" },
      LOG,
    );
    expect((await migrations.outgoingStatus(VM, MIG)).transport?.reason).toBe("requested");
    expect(await migrations.releaseOutgoing(VM)).toBe(true);
    expect(vms.released).toBe(1);
    expect(await migrations.outgoingStatus(VM, MIG)).not.toHaveProperty("transport");
  });

  it("keeps each service's migrations to itself", async () => {
    const q = fakeQemu();
    const a = service(q.proc, MIG).migrations;
    const b = service(q.proc, MIG).migrations;
    await a.outgoingStep(
      VM,
      { migrationId: MIG, step: "mirror", endpoints: ENDPOINTS, transport: "qemu" },
      LOG,
    );
    expect((await a.outgoingStatus(VM, MIG)).transport?.chosen).toBe("qemu");
    expect(await b.outgoingStatus(VM, MIG)).not.toHaveProperty("transport");
  });
});
