/**
 * The rebalancer: every pass reads the settings, the hosts' and VMs' CPU figures the
 * agents reported (cluster/store/host-load.ts), the VMs and the migrations under way,
 * asks the pure planner (placement/rebalance-plan.ts) what to move, and starts each move
 * as a live migration through the migration service, which checks the target again under
 * the placement lock. Off by default (`novacron rebalancer set --enable`). The only state
 * it keeps itself is since when each host has been overloaded (the hold): a restarted
 * server starts the hold over, which can only delay a move, never add one.
 */
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { ClusterPlacement } from "../cluster/placement.js";
import { appendEvent } from "../cluster/store/events.js";
import {
  databaseNow,
  getRebalanceSettings,
  type LoadSample,
  listLoadSamples,
} from "../cluster/store/host-load.js";
import { listHosts } from "../cluster/store/hosts.js";
import {
  hostsOfMigrationsEndedWithin,
  lastMigrationByVm,
  listMigrations,
} from "../cluster/store/migrations.js";
import type { Store } from "../cluster/store/store.js";
import { listVms, type VmRecord } from "../cluster/store/vms.js";
import { vmPlacementRequest } from "../cluster/vm-service.js";
import { describeError } from "../lib/errors.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";
import {
  planRebalance,
  type RebalanceHost,
  type RebalancePlan,
  type RebalanceVm,
  utilizations,
} from "../placement/rebalance-plan.js";
import type { MigrationService } from "./migration-service.js";

/** The trailing window each agent averages its VMs' CPU over (agent/cpu-sampler.ts). */
const AGENT_SAMPLE_WINDOW_MS = 10_000;

export interface RebalancerOptions {
  /** Time between passes. @defaultValue 30000 */
  intervalMs?: number;
  /** Where a VM may go: ITP's checks with the cluster's policy and placement groups. */
  placement?: ClusterPlacement;
  registry?: Registry;
}

/** Runs the rebalancer; see the module header. */
export class Rebalancer {
  private readonly loop: WakeableLoop;
  private overloadedSince = new Map<string, number>();
  private readonly placement: ClusterPlacement;
  private readonly moves: Counter | undefined;
  /** Passes this server ran, and when the last one ended (for `rebalancer plan`). */
  passes = 0;
  lastPassAt: Date | null = null;

  constructor(
    private readonly store: Store,
    private readonly migrations: Pick<MigrationService, "create">,
    private readonly log: Logger,
    o: RebalancerOptions = {},
  ) {
    this.placement = o.placement ?? new ClusterPlacement();
    this.moves = o.registry
      ? new Counter({
          name: "novacron_rebalancer_moves_total",
          help: "Live migrations the rebalancer started, by outcome of the request (started, refused)",
          labelNames: ["result"],
          registers: [o.registry],
        })
      : undefined;
    this.loop = new WakeableLoop({
      pass: () => this.pass(),
      intervalMs: o.intervalMs ?? 30_000,
      runAtStart: false,
      onError: (err) => this.log.error({ err }, "rebalancer pass failed"),
    });
  }

  start(): void {
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }

  /** Runs a pass now (a changed setting). */
  wake(): void {
    this.loop.wake();
  }

  /**
   * What the rebalancer would do now, and why nothing else: the same reading and planning
   * as a pass, with nothing started and the hold state left as it is.
   */
  async preview(): Promise<RebalancePlan> {
    return this.plan();
  }

  private async plan(): Promise<RebalancePlan> {
    const read = this.store.read;
    const settings = await getRebalanceSettings(read);
    const now = await databaseNow(read);
    const samples = await listLoadSamples(read, settings.windowMs);
    const hosts = await listHosts(read);
    const vms = await listVms(read);
    const active = await listMigrations(read, { activeOnly: true });
    const lastMoved = await lastMigrationByVm(read);
    // A host's samples describe the VMs it holds now only a window (plus the agent's own
    // trailing window) after the last migration that touched it ended.
    const settling = await hostsOfMigrationsEndedWithin(read, settings.windowMs + AGENT_SAMPLE_WINDOW_MS);

    const byHost = new Map<string, LoadSample[]>();
    for (const s of samples) byHost.set(s.hostId, [...(byHost.get(s.hostId) ?? []), s]);
    const mean = (xs: number[]): number | null =>
      xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
    const planHosts: RebalanceHost[] = hosts.map((h) => {
      const own = byHost.get(h.id) ?? [];
      return {
        id: h.id,
        name: h.name,
        vcpus: own.at(-1)?.vcpus ?? h.vcpus,
        eligible: h.liveness === "alive" && !h.cordoned && h.drain?.state !== "draining",
        settling: settling.has(h.id),
        cpuCores: mean(own.map((s) => s.cpuCores)),
      };
    });
    const { overloaded } = utilizations(planHosts, settings);
    const view = overloaded.size > 0 ? await this.placement.load(read) : undefined;
    const hostIdByName = new Map(hosts.map((h) => [h.name, h.id]));
    const hostById = new Map(hosts.map((h) => [h.id, h]));
    // The hosts ITP finds feasible for a move of `v` (its groups, labels, site, QEMU, room).
    const allowedFor = (v: VmRecord): Set<string> => {
      if (!view || !v.hostId) return new Set();
      const machineType = v.machineType ?? hostById.get(v.hostId)?.qemu?.q35Alias;
      const verdicts = view.explain({
        ...vmPlacementRequest(v),
        imageHostIds: null,
        ...(machineType ? { machineType } : {}),
        fromHostId: v.hostId,
        live: true,
      }).hosts;
      return new Set(verdicts.filter((x) => x.feasible).flatMap((x) => hostIdByName.get(x.host) ?? []));
    };
    const moving = new Set(active.map((m) => m.vmId));
    const planVms: RebalanceVm[] = vms
      .filter((v) => v.hostId !== null)
      .map((v) => {
        const own = byHost.get(v.hostId!) ?? [];
        // Placement is worked out only for VMs on an overloaded host: no other can move.
        const allowed = overloaded.has(v.hostId!) ? allowedFor(v) : new Set<string>();
        return {
          id: v.id,
          name: v.name,
          hostId: v.hostId!,
          // Owned here, running, not moving, and not on a storage pool (live migration of a
          // pool VM is refused: its disk is already where the target would copy it).
          movable:
            v.state === "running" && !moving.has(v.id) && v.ownerClusterId === null && !v.storagePoolId,
          cpuCores: mean(own.filter((s) => v.id in s.vms).map((s) => s.vms[v.id]!)),
          lastMovedAt: lastMoved.get(v.id) ?? null,
          allowedTargets: allowed,
        };
      });
    return planRebalance({
      now,
      settings,
      hosts: planHosts,
      vms: planVms,
      activeMigrations: active
        .filter((m) => m.targetHostId !== null)
        .map((m) => ({ sourceHostId: m.sourceHostId, targetHostId: m.targetHostId! })),
      overloadedSince: this.overloadedSince,
    });
  }

  private async pass(): Promise<void> {
    const plan = await this.plan();
    this.overloadedSince = plan.overloadedSince;
    for (const move of plan.moves) {
      try {
        const m = await this.migrations.create(move.vmId, { targetHost: move.toHostId });
        this.moves?.inc({ result: "started" });
        this.log.info(
          { vm: move.vm, from: move.from, to: move.to, gain: move.gain, migration: m.id },
          "rebalancing",
        );
        await this.store.write(async (tx, emit) =>
          emit(
            await appendEvent(tx, {
              type: "rebalancer.move",
              resourceType: "vm",
              resourceId: move.vmId,
              data: { ...move, migration: m.id },
            }),
          ),
        );
      } catch (err) {
        // The world changed since the reading (the VM stopped, the target filled up): the
        // next pass reads it again.
        this.moves?.inc({ result: "refused" });
        this.log.warn({ vm: move.vm, to: move.to, err: describeError(err) }, "rebalancing move refused");
      }
    }
    this.passes++;
    this.lastPassAt = new Date();
  }
}
