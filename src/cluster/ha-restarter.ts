/**
 * HA restart with fencing: the executor of ha-plan.ts. Every pass (each second, and when
 * woken) it looks at the VMs marked `ha: restart` whose host is dead, waits until the old
 * copy cannot run (the host's lease plus a margin, or the fencing hook exiting 0), then
 * moves each to another live host that sees its storage pool, bumping its generation and
 * fencing epoch; the reconciler starts it there. No host: the VM's reason says why and the
 * next pass tries again. Every step is an event (ha.waiting, ha.fence-hook, ha.restart,
 * ha.no-host) and a restart is counted for Prometheus.
 */
import { execFile } from "node:child_process";
import type { Logger } from "pino";
import { describeError, isNovaError } from "../lib/errors.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";
import { type HaAction, type HookOutcome, nextHaAction } from "./ha-plan.js";
import { ClusterPlacement, lockPlacement } from "./placement.js";
import { appendEvent } from "./store/events.js";
import { type HostRecord, listHosts } from "./store/hosts.js";
import { getImage } from "./store/images.js";
import { getStoragePool } from "./store/storage-pools.js";
import type { Store } from "./store/store.js";
import {
  getVm,
  listVms,
  moveVmForHaRestart,
  setVmStateReason,
  transitionVm,
  type VmRecord,
} from "./store/vms.js";
import { vmPlacementRequest } from "./vm-service.js";

/** HA settings (server flags). */
export interface HaOptions {
  /** The lease each heartbeat reply grants. @defaultValue 15000 */
  leaseMs?: number;
  /** How long before the lease ends the agent's watchdog kills its HA VMs. @defaultValue 5000 */
  selfFenceMarginMs?: number;
  /** Waited after the lease before a restart. @defaultValue 5000 */
  restartMarginMs?: number;
  /** A program run with the dead host's name; exit 0 means the host is fenced (powered off). */
  fenceHook?: string;
  /** Bound on the fencing hook. @defaultValue 30000 */
  fenceHookTimeoutMs?: number;
  /** Time between passes. @defaultValue 1000 */
  intervalMs?: number;
}

/** The defaults, in one place (docs/operations.md, "High availability"). */
export const HA_DEFAULTS = {
  leaseMs: 15_000,
  selfFenceMarginMs: 5_000,
  restartMarginMs: 5_000,
  fenceHookTimeoutMs: 30_000,
  intervalMs: 1000,
} as const satisfies Required<Omit<HaOptions, "fenceHook">>;

/** The lease a heartbeat reply grants under these options. */
export function leaseOf(o: HaOptions): { durationMs: number; selfFenceAfterMs: number } {
  const durationMs = o.leaseMs ?? HA_DEFAULTS.leaseMs;
  const margin = o.selfFenceMarginMs ?? HA_DEFAULTS.selfFenceMarginMs;
  // Never fence later than halfway through the lease, however small the lease is set.
  return {
    durationMs,
    selfFenceAfterMs: Math.max(500, Math.min(durationMs - margin, durationMs / 2 + margin)),
  };
}

/** Outcomes counted by novacron_ha_restarts_total. */
export type HaRestartOutcome = "restarted" | "no-host" | "restarted-in-place";

interface HookRun {
  outcome: HookOutcome;
  confirmedAt?: number;
}

/** Runs the HA passes until stopped. */
export class HaRestarter {
  private readonly loop: WakeableLoop;
  /** Fencing hook runs per host death (`hostId@lastHeartbeatAt`); dropped when the host is back. */
  private readonly hooks = new Map<string, HookRun>();

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly wakeReconciler: () => void,
    private readonly o: HaOptions = {},
    private readonly onOutcome: (outcome: HaRestartOutcome) => void = () => {},
    private readonly placement = new ClusterPlacement(),
  ) {
    this.loop = new WakeableLoop({
      pass: () => this.pass(),
      intervalMs: o.intervalMs ?? HA_DEFAULTS.intervalMs,
      onError: (err) => this.log.error({ err }, "HA pass failed"),
    });
  }

  /** Starts the loop. */
  start(): void {
    this.loop.start();
  }

  /** Stops the loop and waits for the pass in flight. */
  async stop(): Promise<void> {
    await this.loop.stop();
  }

  /** Runs a pass soon. */
  wake(): void {
    this.loop.wake();
  }

  private async pass(): Promise<void> {
    const [vms, hosts] = await Promise.all([listVms(this.store.read), listHosts(this.store.read)]);
    const hostById = new Map(hosts.map((h) => [h.id, h]));
    for (const key of this.hooks.keys()) {
      const host = hostById.get(key.split("@")[0]!);
      if (!host || host.liveness === "alive") this.hooks.delete(key);
    }
    for (const vm of vms) {
      if (vm.ha !== "restart") continue;
      const host = vm.hostId ? hostById.get(vm.hostId) : undefined;
      const action = nextHaAction(vm, this.observe(host));
      if (action.kind === "none") continue;
      try {
        await this.act(vm, host!, action);
      } catch (err) {
        this.log.warn({ vm: vm.name, err: describeError(err) }, "HA step failed; retrying on the next pass");
      }
    }
  }

  private observe(host: HostRecord | undefined) {
    const hook = this.o.fenceHook
      ? {
          configured: true as const,
          ...(host ? this.hookRun(host) : { outcome: "not-run" as const }),
        }
      : { configured: false as const };
    return {
      now: Date.now(),
      host: host
        ? { name: host.name, liveness: host.liveness, lastHeartbeatAt: Date.parse(host.lastHeartbeatAt) }
        : undefined,
      leaseMs: this.o.leaseMs ?? HA_DEFAULTS.leaseMs,
      marginMs: this.o.restartMarginMs ?? HA_DEFAULTS.restartMarginMs,
      hook,
    };
  }

  private hookRun(host: HostRecord): HookRun {
    return this.hooks.get(`${host.id}@${host.lastHeartbeatAt}`) ?? { outcome: "not-run" };
  }

  private async act(
    vm: VmRecord,
    host: HostRecord,
    action: Exclude<HaAction, { kind: "none" }>,
  ): Promise<void> {
    switch (action.kind) {
      case "wait":
        await this.store.write(async (tx, emit) => {
          if (await setVmStateReason(tx, vm, action.reason))
            emit(
              await appendEvent(tx, {
                type: "ha.waiting",
                resourceType: "vm",
                resourceId: vm.id,
                data: { name: vm.name, host: host.name, until: new Date(action.until).toISOString() },
              }),
            );
        });
        return;
      case "run-hook":
        this.runHook(host);
        return;
      case "start-here":
        await this.store.write(async (tx, emit) => {
          const current = await getVm(tx, vm.id, true);
          if (current.state !== "failed" || current.generation !== vm.generation) return;
          emit(
            await transitionVm(
              tx,
              current,
              "starting",
              `HA: starting again on ${host.name} after it self-fenced`,
              {
                desiredState: "running",
                bumpGeneration: true,
              },
            ),
          );
        });
        this.onOutcome("restarted-in-place");
        this.wakeReconciler();
        return;
      case "restart":
        await this.restart(vm, host, action);
        return;
    }
  }

  /** Places the VM on another host and hands it to the reconciler; no host: says why. */
  private async restart(vm: VmRecord, dead: HostRecord, action: { by: "lease" | "hook"; allowedAt: number }) {
    try {
      const to = await this.store.write(async (tx, emit) => {
        await lockPlacement(tx);
        const current = await getVm(tx, vm.id, true);
        // A user action or another pass since this one read the VM wins.
        if (
          current.generation !== vm.generation ||
          current.hostId !== vm.hostId ||
          current.state !== vm.state
        )
          return undefined;
        const [view, image, pool] = await Promise.all([
          this.placement.load(tx),
          getImage(tx, current.imageId),
          getStoragePool(tx, current.storagePoolId!),
        ]);
        // ITP with every check, the pool's hosts only; the dead host is the VM's current
        // host, which the `current-host` check leaves out.
        const target = view.place({
          ...vmPlacementRequest(current),
          imageHostIds: image.hostIds,
          storagePool: { name: pool.name, hostIds: pool.hostIds },
          ...(current.machineType ? { machineType: current.machineType } : {}),
          fromHostId: dead.id,
        });
        const reason = `HA restart: host ${dead.name} died; restarting on ${target.name}`;
        emit(await moveVmForHaRestart(tx, current, target, reason));
        emit(
          await appendEvent(tx, {
            type: "ha.restart",
            resourceType: "vm",
            resourceId: vm.id,
            data: {
              name: vm.name,
              from: dead.name,
              to: target.name,
              by: action.by,
              lastRenewalAt: dead.lastHeartbeatAt,
              allowedAt: new Date(action.allowedAt).toISOString(),
              epoch: current.ownerEpoch + 1,
            },
          }),
        );
        return target;
      });
      if (!to) return;
      this.log.warn({ vm: vm.name, from: dead.name, to: to.name, by: action.by }, "HA restart");
      this.onOutcome("restarted");
      this.wakeReconciler();
    } catch (err) {
      if (!isNovaError(err, "NOVA_NO_CAPACITY")) throw err;
      const reason = `HA restart waits: host ${dead.name} died and ${err.message}`;
      await this.store.write(async (tx, emit) => {
        if (await setVmStateReason(tx, vm, reason)) {
          emit(
            await appendEvent(tx, {
              type: "ha.no-host",
              resourceType: "vm",
              resourceId: vm.id,
              data: { name: vm.name, from: dead.name, reason: err.message, details: err.details },
            }),
          );
          this.onOutcome("no-host");
        }
      });
    }
  }

  /** Runs the fencing hook for the host once per death, in the background. */
  private runHook(host: HostRecord): void {
    const key = `${host.id}@${host.lastHeartbeatAt}`;
    if (this.hooks.has(key) || !this.o.fenceHook) return;
    this.hooks.set(key, { outcome: "running" });
    const started = Date.now();
    execFile(
      this.o.fenceHook,
      [host.name],
      {
        timeout: this.o.fenceHookTimeoutMs ?? HA_DEFAULTS.fenceHookTimeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 64 * 1024,
        env: { ...process.env, NOVACRON_HOST_NAME: host.name, NOVACRON_HOST_ID: host.id },
      },
      (err, _stdout, stderr) => {
        const ok = !err;
        if (this.hooks.has(key))
          this.hooks.set(key, ok ? { outcome: "confirmed", confirmedAt: Date.now() } : { outcome: "failed" });
        const data = {
          name: host.name,
          confirmed: ok,
          durationMs: Date.now() - started,
          ...(err ? { error: describeError(err), stderr: stderr.slice(-2000) } : {}),
        };
        this.log[ok ? "info" : "warn"](data, "fencing hook ran");
        void this.store
          .write(async (tx, emit) =>
            emit(
              await appendEvent(tx, {
                type: "ha.fence-hook",
                resourceType: "host",
                resourceId: host.id,
                data,
              }),
            ),
          )
          .catch((e: unknown) =>
            this.log.warn({ err: describeError(e) }, "recording the fencing hook failed"),
          );
        this.wake();
      },
    );
  }
}
