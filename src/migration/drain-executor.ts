/**
 * Runs hosts' maintenance drains: for each drain under way, reads what the store shows,
 * asks the pure planner (drain-plan.ts) for the next action and performs it, until the
 * planner says wait or the drain ends. Every decision is made from durable state (the
 * drain's entries, the VMs, their migrations), so a server restart simply resumes: the
 * first pass after start picks every drain under way up where it was, and a move started
 * just before the restart is found again through its migration. Moves are live migrations
 * through the migration service, with the target chosen by the normal placement.
 */
import type { Logger } from "pino";
import {
  addDrainVm,
  type DrainRecord,
  getDrain,
  listActiveDrains,
  recordRefusedMove,
  transitionDrain,
  transitionDrainVm,
} from "../cluster/store/drains.js";
import { getHost } from "../cluster/store/hosts.js";
import { getMigration, listMigrations, type MigrationRecord } from "../cluster/store/migrations.js";
import type { Store } from "../cluster/store/store.js";
import { findVm, listVms } from "../cluster/store/vms.js";
import { describeError, isNovaError } from "../lib/errors.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";
import { DRAIN } from "../states/drain.js";
import {
  type DrainAction,
  type DrainObservations,
  MAX_MOVE_ATTEMPTS,
  nextAction,
  type ObservedVm,
  retryDelayMs,
  retryLeft,
} from "./drain-plan.js";
import type { MigrationService } from "./migration-service.js";

/** Bounds one drain's actions per pass, so a planner bug cannot spin a pass forever. */
const MAX_ACTIONS_PER_PASS = 200;

/** Runs drains; see the module header. */
export class DrainExecutor {
  private readonly loop: WakeableLoop;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly store: Store,
    private readonly migrations: Pick<MigrationService, "create">,
    private readonly log: Logger,
    intervalMs = 1000,
  ) {
    this.loop = new WakeableLoop({
      pass: () => this.pass(),
      intervalMs,
      onError: (err) => this.log.error({ err }, "drain pass failed"),
    });
  }

  /** Resumes the drains a previous server left under way, then follows events. */
  start(): void {
    // A migration that ends or a VM that changes may let a drain move on.
    this.unsubscribe = this.store.bus.subscribe((e) => {
      if (e.type === "migration.state" || e.type === "vm.state" || e.type.startsWith("drain."))
        this.loop.wake();
    });
    this.loop.start();
  }

  /** Stops; the pass in flight finishes its current action. */
  async stop(): Promise<void> {
    this.unsubscribe?.();
    await this.loop.stop();
  }

  /** Looks for work now. */
  wake(): void {
    this.loop.wake();
  }

  private async pass(): Promise<void> {
    for (const drain of await listActiveDrains(this.store.read)) {
      try {
        await this.advance(drain.id);
      } catch (err) {
        // One drain's trouble (e.g. a lost compare-and-set) must not stall the others; the
        // next pass re-reads it.
        this.log.warn(
          { err: describeError(err), drain: drain.id },
          "drain step failed; retrying on the next pass",
        );
      }
    }
  }

  private async advance(id: string): Promise<void> {
    for (let i = 0; i < MAX_ACTIONS_PER_PASS; i++) {
      const drain = await getDrain(this.store.read, id);
      if (DRAIN.isFinal(drain.state)) return;
      const action = nextAction(drain, await this.observe(drain));
      if (action.kind === "wait") return;
      await this.perform(drain, action);
      if (action.kind === "finish") return;
    }
    this.log.warn({ drain: id }, "drain took the most actions a pass allows; continuing on the next pass");
  }

  private async observe(drain: DrainRecord): Promise<DrainObservations> {
    const read = this.store.read;
    const host = await getHost(read, drain.hostId);
    const vms: ObservedVm[] = (await listVms(read, { hostId: drain.hostId })).map(observed);
    for (const e of drain.vms) {
      if (!e.vmId || vms.some((v) => v.id === e.vmId) || (e.state !== "waiting" && e.state !== "moving"))
        continue;
      const vm = await findVm(read, e.vmId);
      if (vm) vms.push(observed(vm));
    }
    const ids = new Set(vms.map((v) => v.id));
    const migrations: MigrationRecord[] = (await listMigrations(read, { activeOnly: true })).filter(
      (m) => m.vmId && ids.has(m.vmId),
    );
    for (const e of drain.vms) {
      if (e.state !== "moving" || !e.migrationId || migrations.some((m) => m.id === e.migrationId)) continue;
      try {
        migrations.push(await getMigration(read, e.migrationId));
      } catch (err) {
        if (!isNovaError(err, "NOVA_NOT_FOUND")) throw err;
      }
    }
    return {
      host: { liveness: host.liveness },
      now: Date.now(),
      vms,
      migrations: migrations.map((m) => ({
        id: m.id,
        vmId: m.vmId,
        state: m.state,
        stateReason: m.stateReason,
        sourceHostId: m.sourceHostId,
        targetHost: m.targetHost,
      })),
    };
  }

  private async perform(drain: DrainRecord, action: Exclude<DrainAction, { kind: "wait" }>): Promise<void> {
    switch (action.kind) {
      case "track":
        await this.store.write(async (tx, emit) => emit(await addDrainVm(tx, drain, action.vm)));
        return;
      case "settle":
        await this.settle(drain, action.vm, action.to, action.change);
        return;
      case "finish":
        await this.store.write(async (tx, emit) =>
          emit(await transitionDrain(tx, drain, action.to, action.reason)),
        );
        this.log.info({ drain: drain.id, host: drain.host, state: action.to }, action.reason);
        return;
      case "start-move":
        await this.startMove(drain, action.vm, action.vmId, action.avoidHost);
        return;
    }
  }

  /**
   * Starts one VM's live migration, the target chosen by placement (away from `avoidHost`,
   * where its last move failed, when another host fits). A crash between the migration's
   * creation and the entry's update is healed by the planner adopting the migration on
   * the next pass. A refusal is retried after a back-off while attempts are left.
   */
  private async startMove(
    drain: DrainRecord,
    vmName: string,
    vmId: string,
    avoidHost?: string,
  ): Promise<void> {
    let m: MigrationRecord;
    try {
      m = await this.migrations.create(vmId, {}, avoidHost ? { avoidHosts: [avoidHost] } : {});
    } catch (err) {
      // A VM that changed under us (stopped, deleted, moved) is re-read on the next round.
      if (
        isNovaError(err, "NOVA_STATE_CHANGED") ||
        isNovaError(err, "NOVA_ILLEGAL_STATE") ||
        isNovaError(err, "NOVA_NOT_FOUND")
      ) {
        const now = await findVm(this.store.read, vmId);
        if (now?.state !== "running" || now.hostId !== drain.hostId) return;
      }
      const code = isNovaError(err) ? err.code : "NOVA_INTERNAL";
      const entry = drain.vms.find((e) => e.vm === vmName);
      if (entry && retryLeft(entry.attempts + 1)) {
        const attempt = entry.attempts + 1;
        const reason = `move ${attempt} of ${MAX_MOVE_ATTEMPTS} refused: ${describeError(err)}; retried in ${retryDelayMs(attempt) / 1000} s`;
        await this.store.write(async (tx, emit) =>
          emit(await recordRefusedMove(tx, drain, entry, { code, reason })),
        );
        return;
      }
      await this.settle(drain, vmName, "failed", { code, reason: describeError(err), countAttempt: true });
      return;
    }
    this.log.info({ drain: drain.id, vm: vmName, migration: m.id, target: m.targetHost }, "drain moving VM");
    await this.settle(drain, vmName, "moving", {
      migrationId: m.id,
      targetHost: m.targetHost,
      reason: `migrating to ${m.targetHost}`,
    });
  }

  private async settle(
    drain: DrainRecord,
    vmName: string,
    to: Parameters<typeof transitionDrainVm>[3],
    change: Parameters<typeof transitionDrainVm>[4],
  ): Promise<void> {
    const entry = drain.vms.find((e) => e.vm === vmName);
    if (!entry) throw new Error(`drain ${drain.id} has no entry for VM ${vmName}`);
    await this.store.write(async (tx, emit) => emit(await transitionDrainVm(tx, drain, entry, to, change)));
  }
}

function observed(v: {
  id: string;
  name: string;
  state: ObservedVm["state"];
  hostId: string | null;
  host: string | null;
}): ObservedVm {
  return { id: v.id, name: v.name, state: v.state, hostId: v.hostId, host: v.host };
}
