/**
 * The agent's VMs: for each one, the spec and power state the server asked for (kept in
 * `vms/<id>/vm.json` so an agent restart knows them), the QEMU process running it, and
 * what the agent observes. `put` records the request and converges in the background,
 * one operation at a time per VM; every observed change is reported through `onChange`.
 * On start the manager re-adopts the QEMU processes a previous agent left running, so an
 * agent restart never kills or duplicates a VM.
 *
 * Fencing (fence.ts, fence-store.ts): a request to run a VM is admitted only with its
 * current token, and every start the manager makes — including one it converges to after
 * a fence overtook the request — needs a held token naming this agent's own cluster.
 * Re-adopting a QEMU after an agent restart starts and resumes nothing.
 *
 * HA VMs (spec `ha`, disk in a shared storage pool): started only under a current HA lease
 * (ha-lease.ts), each with a fence watchdog process (fence-watchdog.ts) that kills its
 * QEMU when the lease runs out unrenewed; a VM so killed is reported failed with a
 * `self-fenced` reason and never started again by the agent itself. A pool VM's disk is
 * `<pool>/vms/<id>/disk.qcow2` on a base image copied into `<pool>/images/`; only deleting
 * the VM removes it, never releasing this host's copy.
 */
import { spawn } from "node:child_process";
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import type {
  AgentIncomingEndpoints,
  AgentVmPut,
  AgentVmSpec,
  FenceToken,
  ObservedVm,
} from "../api/types/agent.js";
import type { ImageStore } from "../compute/images/image-store.js";
import type { MachineConfig } from "../compute/qemu/machine.js";
import { vmRunPaths } from "../compute/qemu/machine.js";
import { type LaunchOptions, QemuProcess } from "../compute/qemu/process.js";
import { createOverlay } from "../compute/qemu/qemu-img.js";
import { describeError, NovaError } from "../lib/errors.js";
import { machineTypeSupport, type QemuMachineFacts } from "../lib/qemu-support.js";
import { readLastLines } from "./console-tail.js";
import type { FenceStore } from "./fence-store.js";
import { readFencedRecord, writeFencedRecord } from "./fence-watchdog.js";
import { type HaLease, monoNowMs } from "./ha-lease.js";
import { checkPoolMarker } from "./storage-pools.js";

type ObservedState = ObservedVm["state"];

/** What is persisted per VM. */
interface VmFile {
  id: string;
  /** The last spec asked for (without its token: the held token is in the fence store). */
  spec: AgentVmSpec;
  observed: { state: ObservedState; reason: string };
  /** Set while this host is the destination of a migration that has not switched over. */
  incoming?: {
    migrationId: string;
    endpoints?: AgentIncomingEndpoints;
    /** The DWCP relay's course (dwcp/target.ts IncomingRelayMark); absent: no relay started. */
    relay?: "started" | "verified";
  };
  /**
   * The outgoing migration whose memory transfer this agent started. QEMU's query-migrate
   * does not say which migration it describes (a VM that arrived by migration reports that
   * one as "completed"), so its status only counts for the migration recorded here.
   */
  outgoing?: { migrationId: string };
}

interface ManagedVm extends VmFile {
  proc: QemuProcess | undefined;
  /** When this host's fence watchdog killed the VM's QEMU (its lease ran out), if it did. */
  selfFencedAt?: string;
  /** Serialises operations on this VM. */
  chain: Promise<void>;
  /** Operations queued or running on `chain`. */
  pending: number;
}

/** Manager options. */
export interface VmManagerOptions {
  dataDir: string;
  images: ImageStore;
  accel: "kvm" | "tcg";
  /** The QEMU binary VMs run on. @defaultValue "qemu-system-x86_64" */
  qemuBinary?: string;
  /** That QEMU's version and machine types (probed at agent start); checked before each launch. */
  qemu?: QemuMachineFacts;
  /** The fencing tokens held for this host's VMs (init() is the caller's). */
  fences: FenceStore;
  /** The HA lease HA VMs run under (init() is the caller's); without one, HA VMs are refused. */
  lease?: HaLease;
  log: Logger;
  /** Called after any observed change (the agent then heartbeats at once). */
  onChange: () => void;
  /** ACPI grace before a hard stop. @defaultValue 30000 */
  stopGraceMs?: number;
}

/** Runs and watches the VMs of one host. */
export class VmManager {
  private readonly vms = new Map<string, ManagedVm>();
  /** Each VM's vm.json write in progress (persist). */
  private readonly writes = new Map<string, Promise<void>>();
  private readonly vmsDir: string;

  constructor(private readonly o: VmManagerOptions) {
    this.vmsDir = path.join(o.dataDir, "vms");
  }

  /** Loads persisted VMs and re-adopts their running QEMU processes. */
  async init(): Promise<void> {
    await mkdir(this.vmsDir, { recursive: true });
    for (const id of await readdir(this.vmsDir)) {
      let file: VmFile;
      try {
        file = JSON.parse(await readFile(path.join(this.vmsDir, id, "vm.json"), "utf8")) as VmFile;
      } catch {
        continue; // a VM dir without a readable vm.json was never fully created
      }
      const vm: ManagedVm = { ...file, proc: undefined, chain: Promise.resolve(), pending: 0 };
      this.vms.set(id, vm);
      const proc = await QemuProcess.adopt(this.machine(vm)).catch((err) => {
        this.o.log.warn({ vm: vm.spec.name, err: describeError(err) }, "could not adopt QEMU");
        return null;
      });
      const fenced = await readFencedRecord(this.vmDir(id));
      if (fenced) vm.selfFencedAt = fenced.at;
      if (proc) {
        this.watch(vm, proc);
        if (vm.spec.ha) await this.ensureWatchdog(vm);
        this.o.log.info({ vm: vm.spec.name, pid: proc.pid }, "re-adopted running QEMU");
        if (vm.spec.power === "running") await this.setObserved(vm, "running", "");
        else this.enqueue(vm, () => this.converge(vm)); // asked to stop before the restart
      } else if (
        vm.observed.state === "running" ||
        vm.observed.state === "starting" ||
        vm.observed.state === "stopping"
      ) {
        const reason =
          vm.observed.state === "stopping"
            ? "stopped while the agent was down"
            : fenced
              ? selfFencedReason(fenced.at)
              : "QEMU exited while the agent was not running";
        await this.setObserved(vm, vm.observed.state === "stopping" ? "stopped" : "failed", reason);
      }
    }
  }

  /** HA VMs this host's watchdog killed (reported until the server releases them). */
  selfFenced(): { id: string; at: string }[] {
    return [...this.vms.values()].flatMap((vm) =>
      vm.selfFencedAt ? [{ id: vm.id, at: vm.selfFencedAt }] : [],
    );
  }

  /**
   * The server restarted this HA VM on another host: keep the newer token (so no old
   * request can run this copy again), kill the copy if it still runs, and remove its local
   * files — never the pool disk, which the VM's new host now uses. Idempotent.
   */
  async releaseLeftover(id: string, fence: FenceToken): Promise<void> {
    await this.o.fences.admit(id, fence, "record");
    const vm = this.vms.get(id);
    if (!vm) return;
    await new Promise<void>((resolve, reject) => {
      this.enqueue(vm, async () => {
        this.vms.delete(id);
        try {
          if (vm.proc) await vm.proc.kill();
          // Local files only: the pool disk is the VM's new host's now.
          await rm(this.vmDir(id), { recursive: true, force: true });
          resolve();
        } catch (err) {
          this.vms.set(id, vm);
          reject(err);
        }
      });
    });
    this.o.log.warn(
      { vm: vm.spec.name },
      "HA VM restarted on another host; this host's leftover copy released",
    );
    this.o.onChange();
  }

  /**
   * The agent's own lease timer (the watchdogs do the same from outside, and outlive the
   * agent): once the HA lease has run out unrenewed, SIGKILLs every HA VM's QEMU, recording
   * the kill first so the VM is reported self-fenced. Returns how many it killed.
   */
  async selfFenceExpired(): Promise<number> {
    if (!this.o.lease || this.o.lease.current()) return 0;
    let killed = 0;
    for (const vm of this.vms.values()) {
      const pid = vm.proc?.pid;
      if (!vm.spec.ha || pid === undefined) continue;
      await writeFencedRecord(this.vmDir(vm.id), {
        at: new Date().toISOString(),
        atMonoMs: monoNowMs(),
        fenceAtMonoMs: this.o.lease.deadline ?? null,
        pid,
      });
      try {
        process.kill(pid, "SIGKILL");
        killed++;
      } catch {
        // already gone
      }
    }
    return killed;
  }

  /** What the agent observes for every VM. */
  list(): ObservedVm[] {
    return [...this.vms.values()].map((vm) => this.snapshot(vm));
  }

  /**
   * Records the server's request for a VM and starts converging; returns the new
   * observation. A request to run it is refused (NOVA_ACP_FENCED, nothing recorded but a
   * newer token) unless its token is current; a stop is never refused.
   */
  async put(id: string, body: AgentVmPut): Promise<ObservedVm> {
    const { fence, ...spec } = body;
    this.vmDir(id); // validates the id before anything is written under it
    await this.o.fences.admit(id, fence, spec.power === "running" ? "run" : "safe");
    let vm = this.vms.get(id);
    if (vm && spec.generation < vm.spec.generation) {
      // A stale request (reordered or replayed) must not undo a newer one.
      return this.snapshot(vm);
    }
    if (!vm) {
      vm = {
        id,
        spec,
        observed: { state: "stopped", reason: "" },
        proc: undefined,
        chain: Promise.resolve(),
        pending: 0,
      };
      this.vms.set(id, vm);
      await mkdir(this.vmDir(id), { recursive: true });
    }
    vm.spec = spec;
    // A start still in flight may yet leave QEMU running: report it as such until done.
    const alive = vm.proc !== undefined || vm.pending > 0;
    if (spec.power === "running")
      vm.observed = alive ? { state: "running", reason: "" } : { state: "starting", reason: "" };
    else
      vm.observed = alive
        ? { state: "stopping", reason: "" }
        : { state: "stopped", reason: vm.observed.reason };
    await this.persist(vm);
    const target = vm;
    this.enqueue(target, () => this.converge(target));
    return this.snapshot(vm);
  }

  /** Hard-stops the VM if it runs and removes it and its disk. Idempotent. */
  async delete(id: string): Promise<boolean> {
    const vm = this.vms.get(id);
    if (!vm) {
      await rm(this.vmDir(id), { recursive: true, force: true });
      return false;
    }
    const done = new Promise<void>((resolve, reject) => {
      this.enqueue(vm, async () => {
        // Forget it first (as release does), so the exit watcher does not write the VM's
        // state into the directory being removed.
        this.vms.delete(id);
        try {
          if (vm.proc) await vm.proc.kill();
          await rm(this.vmDir(id), { recursive: true, force: true });
          // The VM itself is deleted: its pool disk goes too (a release never does this).
          const pool = vm.spec.storagePool;
          if (pool) await rm(path.join(pool.path, "vms", id), { recursive: true, force: true });
          resolve();
        } catch (err) {
          this.vms.set(id, vm);
          reject(err);
        }
      });
    });
    await done;
    this.o.onChange();
    return true;
  }

  /** The running QEMU of a VM, if any. */
  processOf(id: string): QemuProcess | undefined {
    return this.vms.get(id)?.proc;
  }

  /** The outgoing migration whose memory transfer was started for this VM, if any. */
  outgoingOf(id: string): string | undefined {
    return this.vms.get(id)?.outgoing?.migrationId;
  }

  /** Records that the memory transfer of `migrationId` was started (persisted). */
  async markOutgoing(id: string, migrationId: string): Promise<void> {
    const vm = this.vms.get(id);
    if (!vm) return;
    vm.outgoing = { migrationId };
    await this.persist(vm);
  }

  /** The incoming-migration record of a VM, if this host is a migration's destination. */
  incomingOf(id: string): VmFile["incoming"] {
    return this.vms.get(id)?.incoming;
  }

  /**
   * Destination: creates the VM's disk (a fresh overlay on the base image) and starts its
   * QEMU with `-incoming defer`, paused, waiting for the migration. Returns the process;
   * `setIncomingEndpoints` records where it listens. Undone on any failure.
   */
  async launchIncoming(id: string, spec: AgentVmSpec, migrationId: string): Promise<QemuProcess> {
    const existing = this.vms.get(id);
    if (existing && !existing.incoming) {
      throw new NovaError(
        "NOVA_CONFLICT",
        `This host already runs VM ${spec.name}; it cannot also be a migration destination.`,
      );
    }
    if (existing?.proc) await existing.proc.kill();
    this.vms.delete(id);
    await rm(this.vmDir(id), { recursive: true, force: true });
    const vm: ManagedVm = {
      id,
      spec,
      observed: { state: "starting", reason: "waiting for the incoming migration" },
      incoming: { migrationId },
      proc: undefined,
      chain: Promise.resolve(),
      pending: 0,
    };
    this.vms.set(id, vm);
    try {
      await mkdir(this.vmDir(id), { recursive: true });
      this.checkMachineType(vm);
      await this.ensureDisk(vm);
      const proc = await QemuProcess.launch({ ...this.machine(vm), incoming: "defer" }, this.launchOptions());
      this.watch(vm, proc);
      await this.persist(vm);
      return proc;
    } catch (err) {
      this.vms.delete(id);
      await vm.proc?.kill().catch(() => {});
      await rm(this.vmDir(id), { recursive: true, force: true });
      throw err;
    }
  }

  /** Destination: records where the incoming QEMU listens (for idempotent retries). */
  async setIncomingEndpoints(id: string, endpoints: AgentIncomingEndpoints): Promise<void> {
    const vm = this.vms.get(id);
    if (!vm?.incoming) return;
    vm.incoming = { ...vm.incoming, endpoints };
    await this.persist(vm);
  }

  /**
   * Destination: records how far the DWCP relay of the VM's incoming migration got, so a
   * restarted agent does not resume a stream that nobody checked. A mark of another
   * migration, or one that would go back from verified, is ignored.
   */
  async noteIncomingRelay(id: string, migrationId: string, mark: "started" | "verified"): Promise<void> {
    const vm = this.vms.get(id);
    if (vm?.incoming?.migrationId !== migrationId || vm.incoming.relay === "verified") return;
    vm.incoming = { ...vm.incoming, relay: mark };
    await this.persist(vm);
  }

  /** Destination: the VM has been resumed here; from now on it is an ordinary VM of this host. */
  async adoptIncoming(id: string, generation: number): Promise<ObservedVm> {
    const vm = this.vms.get(id);
    if (!vm) throw new NovaError("NOVA_NOT_FOUND", `This host has no VM ${id}`);
    delete vm.incoming;
    vm.spec = { ...vm.spec, generation, power: "running" };
    await this.setObserved(vm, "running", "");
    await this.persist(vm);
    return this.snapshot(vm);
  }

  /** Source: the VM now runs elsewhere; stop this copy and remove its disk. Idempotent. */
  async release(id: string): Promise<boolean> {
    const vm = this.vms.get(id);
    // Forget it first, so the exit watcher does not report the stop as a failure.
    this.vms.delete(id);
    if (vm?.proc) await vm.proc.kill();
    await rm(this.vmDir(id), { recursive: true, force: true });
    this.o.onChange();
    return vm !== undefined;
  }

  /** The last `lines` lines of the VM's serial console. */
  async consoleTail(id: string, lines: number): Promise<string[]> {
    const vm = this.vms.get(id);
    if (!vm) throw new NovaError("NOVA_NOT_FOUND", `This host has no VM ${id}`);
    return readLastLines(vmRunPaths(this.vmDir(id)).serialLog, lines);
  }

  /** Lets go of QEMU processes without stopping them (agent shutdown). */
  async detach(): Promise<void> {
    for (const vm of this.vms.values()) {
      const proc = vm.proc;
      vm.proc = undefined;
      await proc?.qmp.close().catch(() => {});
    }
  }

  private async converge(vm: ManagedVm): Promise<void> {
    if (!this.vms.has(vm.id)) return;
    const want = vm.spec.power;
    if (want === "running" && !vm.proc) await this.startVm(vm);
    else if (want === "running" && vm.proc) await this.setObserved(vm, "running", "");
    else if (want === "stopped" && vm.proc) {
      await this.setObserved(vm, "stopping", "");
      await vm.proc.stop({ graceMs: this.o.stopGraceMs ?? 30_000 });
      // The exit watcher records the final state.
    } else if (
      want === "stopped" &&
      !vm.proc &&
      vm.observed.state !== "stopped" &&
      vm.observed.state !== "failed"
    ) {
      await this.setObserved(vm, "stopped", "stopped");
    }
  }

  private async startVm(vm: ManagedVm): Promise<void> {
    await this.setObserved(vm, "starting", "");
    try {
      // A fence may have arrived since the request was admitted.
      this.o.fences.checkOwnStart(vm.id);
      this.checkMachineType(vm);
      if (vm.spec.ha && !(await this.o.lease?.waitCurrent(10_000))) {
        throw new NovaError(
          "NOVA_UNPROCESSABLE",
          "this host holds no current HA lease (its heartbeats are not being answered), so it must not start an HA VM",
        );
      }
      await this.ensureDisk(vm);
      delete vm.selfFencedAt;
      await rm(path.join(this.vmDir(vm.id), "fenced.json"), { force: true });
      // The watchdog first: no HA QEMU runs unguarded, even if this agent dies right after launching it.
      if (vm.spec.ha) await this.ensureWatchdog(vm);
      const proc = await QemuProcess.launch(this.machine(vm), this.launchOptions());
      this.watch(vm, proc);
      await this.setObserved(vm, "running", "");
    } catch (err) {
      this.o.log.warn({ vm: vm.spec.name, err: describeError(err) }, "VM start failed");
      await this.setObserved(vm, "failed", `start failed: ${describeError(err)}`);
    }
  }

  /** Checks the image blobs are here and creates the VM's overlay disk if it has none. */
  private async ensureDisk(vm: ManagedVm): Promise<void> {
    const { image } = vm.spec;
    for (const digest of [image.diskDigest, image.kernelDigest, image.initrdDigest]) {
      if (digest && !(await this.o.images.has(digest))) {
        throw new NovaError(
          "NOVA_UNPROCESSABLE",
          `image blob ${digest} is not in this host's image store; import the image on this host`,
        );
      }
    }
    const diskPath = this.machine(vm).diskPath;
    const pool = vm.spec.storagePool;
    // A pool that is not mounted here (no marker with its id) must not get a fresh disk.
    if (pool) await checkPoolMarker(pool);
    if (await exists(diskPath)) return;
    let base = this.o.images.pathOf(image.diskDigest);
    if (pool) {
      base = await this.poolBaseImage(pool.path, image.diskDigest, image.diskFormat);
      await mkdir(path.dirname(diskPath), { recursive: true });
    }
    // Build the overlay under a temporary name so a crash never leaves a half-made disk.
    const tmp = `${diskPath}.${process.pid}.tmp`;
    await rm(tmp, { force: true });
    await createOverlay(base, image.diskFormat, tmp);
    await rename(tmp, diskPath);
  }

  /**
   * The VM's base image inside the pool (`<pool>/images/<digest>.<format>`), copied there
   * from this host's image store once (under a temporary name, then renamed), so every
   * host that mounts the pool can open the overlay's backing file.
   */
  private async poolBaseImage(poolPath: string, digest: string, format: string): Promise<string> {
    const dir = path.join(poolPath, "images");
    const file = path.join(dir, `${digest.replace(/[^a-zA-Z0-9:_-]/g, "_")}.${format}`);
    if (await exists(file)) return file;
    await mkdir(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    await copyFile(this.o.images.pathOf(digest), tmp);
    await rename(tmp, file);
    return file;
  }

  /**
   * Starts the VM's fence watchdog unless one runs already (an agent restart finds the one
   * its predecessor started): a detached process that outlives this agent.
   */
  private async ensureWatchdog(vm: ManagedVm): Promise<void> {
    const dir = this.vmDir(vm.id);
    const existing = Number(await readFile(path.join(dir, "watchdog.pid"), "utf8").catch(() => "0"));
    if (existing > 1) {
      const cmdline = await readFile(`/proc/${existing}/cmdline`, "utf8").catch(() => "");
      if (cmdline.includes("fence-watchdog-main") && cmdline.includes(dir)) return;
    }
    if (!this.o.lease) return;
    const child = spawn(process.execPath, [WATCHDOG_MAIN, this.o.lease.file, dir], {
      detached: true,
      stdio: "ignore",
    });
    child.unref();
    if (child.pid) await writeFile(path.join(dir, "watchdog.pid"), `${child.pid}\n`);
  }

  private watch(vm: ManagedVm, proc: QemuProcess): void {
    vm.proc = proc;
    void proc.exited
      .then(async (exit) => {
        if (vm.proc !== proc) return; // detached or replaced
        vm.proc = undefined;
        if (!this.vms.has(vm.id)) return;
        if (exit.shutdownReason === "guest-shutdown" || vm.spec.power === "stopped") {
          // Our stop, or the guest powered itself off: either way it is stopped, not failed.
          if (vm.spec.power === "running") vm.spec = { ...vm.spec, power: "stopped" };
          await this.setObserved(vm, "stopped", exit.reason);
        } else {
          const fenced = vm.spec.ha ? await readFencedRecord(this.vmDir(vm.id)) : undefined;
          if (fenced) {
            vm.selfFencedAt = fenced.at;
            this.o.log.warn(
              { vm: vm.spec.name, at: fenced.at },
              "HA lease ran out: the watchdog killed the VM",
            );
          }
          await this.setObserved(vm, "failed", fenced ? selfFencedReason(fenced.at) : exit.reason);
        }
      })
      // Recording the state can fail (disk full, directory gone); that must not take the
      // agent, and every other VM with it, down as an unhandled rejection.
      .catch((err: unknown) =>
        this.o.log.error({ vm: vm.spec.name, err: describeError(err) }, "recording the VM's exit failed"),
      );
  }

  /** Launch options: this host's QEMU binary. */
  private launchOptions(): LaunchOptions {
    return this.o.qemuBinary ? { qemuBinary: this.o.qemuBinary } : {};
  }

  /**
   * Refuses (NOVA_MACHINE_TYPE_UNSUPPORTED) to launch a VM whose machine type this host's
   * QEMU does not offer, with a reason the server shows, rather than letting QEMU fail.
   * The server checks this before placing or migrating; this covers a QEMU replaced since.
   */
  private checkMachineType(vm: ManagedVm): void {
    const wanted = vm.spec.machineType;
    if (!wanted || !this.o.qemu) return;
    const support = machineTypeSupport(wanted, this.o.qemu);
    if (!support.ok) {
      throw new NovaError(
        "NOVA_MACHINE_TYPE_UNSUPPORTED",
        `VM ${vm.spec.name} runs as machine type ${wanted}, but on this host ${support.reason}`,
        { details: { vm: vm.spec.name, machineType: wanted } },
      );
    }
  }

  private machine(vm: ManagedVm): MachineConfig {
    const { spec } = vm;
    const dir = this.vmDir(vm.id);
    const cfg: MachineConfig = {
      vmId: vm.id,
      name: spec.name,
      ...(spec.machineType ? { machineType: spec.machineType } : {}),
      vcpus: spec.vcpus,
      memoryMiB: spec.memoryMiB,
      accel: this.o.accel,
      diskPath: spec.storagePool
        ? path.join(spec.storagePool.path, "vms", vm.id, "disk.qcow2")
        : path.join(dir, "disk.qcow2"),
      runDir: dir,
    };
    if (spec.image.kernelDigest) {
      cfg.kernelPath = this.o.images.pathOf(spec.image.kernelDigest);
      if (spec.image.initrdDigest) cfg.initrdPath = this.o.images.pathOf(spec.image.initrdDigest);
      cfg.kernelCmdline = [spec.image.cmdline, spec.kernelArgs].filter((s) => s.length > 0).join(" ");
    }
    return cfg;
  }

  private async setObserved(vm: ManagedVm, state: ObservedState, reason: string): Promise<void> {
    const changed = vm.observed.state !== state || vm.observed.reason !== reason;
    vm.observed = { state, reason };
    if (!this.vms.has(vm.id)) return;
    await this.persist(vm);
    if (changed) this.o.onChange();
  }

  private snapshot(vm: ManagedVm): ObservedVm {
    return {
      id: vm.id,
      generation: vm.spec.generation,
      state: vm.observed.state,
      reason: vm.observed.reason,
      pid: vm.proc?.pid ?? null,
    };
  }

  private enqueue(vm: ManagedVm, op: () => Promise<void>): void {
    vm.chain = vm.chain
      .then(op)
      .catch((err) => this.o.log.error({ vm: vm.spec.name, err }, "VM operation failed"));
  }

  /**
   * Writes vm.json, one write per VM at a time: two callers (a request and the relay's
   * course being noted) would otherwise share the temporary file, and one rename fail or
   * an older state land last. Each write takes the VM's state as it is when it runs.
   */
  private persist(vm: ManagedVm): Promise<void> {
    const next = (this.writes.get(vm.id) ?? Promise.resolve())
      .catch(() => {})
      .then(() => this.writeVmFile(vm));
    this.writes.set(vm.id, next);
    const forget = () => {
      if (this.writes.get(vm.id) === next) this.writes.delete(vm.id);
    };
    next.then(forget, forget);
    return next;
  }

  private async writeVmFile(vm: ManagedVm): Promise<void> {
    const file: VmFile = {
      ...(vm.outgoing ? { outgoing: vm.outgoing } : {}),
      id: vm.id,
      spec: vm.spec,
      observed: vm.observed,
      ...(vm.incoming ? { incoming: vm.incoming } : {}),
    };
    const target = path.join(this.vmDir(vm.id), "vm.json");
    await writeFile(`${target}.tmp`, JSON.stringify(file, null, 2));
    await rename(`${target}.tmp`, target);
  }

  private vmDir(id: string): string {
    if (!/^[0-9a-f-]{36}$/.test(id)) throw new NovaError("NOVA_BAD_REQUEST", `Invalid VM id ${id}`);
    return path.join(this.vmsDir, id);
  }
}

/** The fence watchdog's entry point, next to this module in the build. */
const WATCHDOG_MAIN = fileURLToPath(new URL("./fence-watchdog-main.js", import.meta.url));

/** The observed reason of a VM its watchdog killed (cluster/ha-plan.ts SELF_FENCED_REASON). */
function selfFencedReason(at: string): string {
  return `self-fenced: this host's HA lease ran out unrenewed and its watchdog killed QEMU at ${at}; the server restarts the VM elsewhere`;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}
