/**
 * User operations on a host's maintenance drain: start one (checked up front, then the host
 * cordoned and the drain recorded in one transaction, so a refusal changes nothing), read
 * the newest, and cancel one. drain-executor.ts moves the VMs.
 */
import type { HostDrainPost } from "../api/types/drains.js";
import { ClusterPlacement, lockPlacement, type PlacementView } from "../cluster/placement.js";
import {
  type DrainRecord,
  getDrain,
  insertDrain,
  latestDrainOfHost,
  requestDrainCancel,
} from "../cluster/store/drains.js";
import { getHost, type HostRecord, setCordon } from "../cluster/store/hosts.js";
import type { Store } from "../cluster/store/store.js";
import { listVms, type VmRecord } from "../cluster/store/vms.js";
import { vmPlacementRequest } from "../cluster/vm-service.js";
import { isNovaError, NovaError } from "../lib/errors.js";
import { DRAIN } from "../states/drain.js";
import type { VmState } from "../states/vm.js";

/** VM states that will need a place on another host (a migrating VM has one reserved already). */
const NEEDS_PLACE: ReadonlySet<VmState> = new Set<VmState>(["running", "starting", "scheduled", "pending"]);

/** Starts, reads and cancels drains. */
export class DrainService {
  constructor(
    private readonly store: Store,
    /** Wakes the drain executor. */
    private readonly wake: () => void,
    /** The placement the up-front check asks (the moves ask it again, through migrations). */
    private readonly placement = new ClusterPlacement(),
  ) {}

  /**
   * Starts draining a host: refused with nothing changed for an unknown host
   * (NOVA_NOT_FOUND), a dead one (NOVA_HOST_DOWN), one drained already (NOVA_DRAIN_ACTIVE),
   * the last schedulable host, or when the other hosts cannot take its VMs
   * (NOVA_DRAIN_NO_TARGET, naming each VM that does not fit). Otherwise cordons the host
   * and records the drain with an entry per VM.
   */
  async start(hostIdOrName: string, input: HostDrainPost, requestedBy: string): Promise<DrainRecord> {
    const id = await this.store.write(async (tx, emit) => {
      // The placement lock: the fit check below counts free memory no placement takes meanwhile.
      await lockPlacement(tx);
      const host = await getHost(tx, hostIdOrName);
      if (host.liveness !== "alive")
        throw new NovaError(
          "NOVA_HOST_DOWN",
          `Cannot drain host ${host.name}: it is dead (no heartbeat since ${host.lastHeartbeatAt}), so its VMs cannot be live-migrated. Bring its agent back first; nothing was changed.`,
          { details: { host: host.name, liveness: host.liveness, lastHeartbeatAt: host.lastHeartbeatAt } },
        );
      const active = await latestDrainOfHost(tx, host.id);
      if (active && !DRAIN.isFinal(active.state))
        throw new NovaError(
          "NOVA_DRAIN_ACTIVE",
          `Host ${host.name} is being drained already (drain ${active.id}, started ${active.createdAt}). Follow it with: novacron host drain-status ${host.name}; cancel it with: novacron host drain ${host.name} --cancel`,
          { details: { host: host.name, drain: active.id } },
        );
      const vms = await listVms(tx, { hostId: host.id });
      checkOthersCanTake(host, await this.placement.load(tx), vms);
      if (!host.cordoned) {
        emit(await setCordon(tx, host, true, "drain"));
      }
      const made = await insertDrain(tx, {
        hostId: host.id,
        hostName: host.name,
        concurrency: input.concurrency ?? 1,
        requestedBy,
        vms: vms.map((v) => ({ id: v.id, name: v.name })),
      });
      emit(made.event);
      return made.id;
    });
    this.wake();
    return getDrain(this.store.read, id);
  }

  /** The host's newest drain; NOVA_NOT_FOUND when it was never drained. */
  async latest(hostIdOrName: string): Promise<DrainRecord> {
    const host = await getHost(this.store.read, hostIdOrName);
    const drain = await latestDrainOfHost(this.store.read, host.id);
    if (!drain)
      throw new NovaError(
        "NOVA_NOT_FOUND",
        `Host ${host.name} was never drained. Drain it with: novacron host drain ${host.name}`,
        { details: { host: host.name } },
      );
    return drain;
  }

  /**
   * Cancels the host's drain under way: no new move starts, moves under way finish (a live
   * migration is cancelled on its own with novacron migration cancel). The host stays
   * cordoned. NOVA_ILLEGAL_STATE when the newest drain ended already.
   */
  async cancel(hostIdOrName: string, by: string): Promise<DrainRecord> {
    const drain = await this.latest(hostIdOrName);
    const event = await this.store.write(async (tx, emit) => {
      const e = await requestDrainCancel(tx, drain, by);
      if (e) emit(e);
      return e;
    });
    if (!event)
      throw new NovaError(
        "NOVA_ILLEGAL_STATE",
        `The drain of host ${drain.host} already ended (${(await getDrain(this.store.read, drain.id)).state}); nothing to cancel. The host stays cordoned: novacron host uncordon ${drain.host}`,
        { details: { host: drain.host, drain: drain.id, state: drain.state } },
      );
    this.wake();
    return getDrain(this.store.read, drain.id);
  }
}

/**
 * Refuses (NOVA_DRAIN_NO_TARGET) draining the last schedulable host, or a host whose VMs
 * the others cannot all take, placed one after the other by ITP with every placement
 * group (so an anti-affine pair is not planned onto one host).
 */
function checkOthersCanTake(host: HostRecord, view: PlacementView, vms: readonly VmRecord[]): void {
  const others = view.hosts.filter((h) => h.id !== host.id);
  const schedulable = others.filter((h) => h.liveness === "alive" && !h.cordoned && h.qemu);
  if (schedulable.length === 0) {
    const why = others.map((h) => `${h.name} (${h.liveness === "alive" ? "cordoned" : "dead"})`);
    throw new NovaError(
      "NOVA_DRAIN_NO_TARGET",
      `Cannot drain host ${host.name}: it is the last schedulable host${why.length ? ` (the others: ${why.join(", ")})` : ""}, so its VMs would have nowhere to go. Add a host or uncordon one first; nothing was changed.`,
      {
        details: {
          host: host.name,
          others: others.map((h) => ({ host: h.name, liveness: h.liveness, cordoned: h.cordoned })),
        },
      },
    );
  }
  const placed: { vm: string; host: string }[] = [];
  const misfits: { vm: string; reason: string; details: Record<string, unknown> }[] = [];
  for (const v of vms.filter((x) => NEEDS_PLACE.has(x.state))) {
    const machineType = v.machineType ?? host.qemu?.q35Alias;
    // A migration copies the image to its target when it lacks it.
    const req = {
      ...vmPlacementRequest(v),
      imageHostIds: null,
      fromHostId: host.id,
      live: true,
      ...(machineType ? { machineType } : {}),
    };
    try {
      const target = view.place(req);
      view.commit(req, target);
      placed.push({ vm: v.name, host: target.name });
    } catch (err) {
      if (!isNovaError(err, "NOVA_NO_CAPACITY")) throw err;
      misfits.push({ vm: v.name, reason: err.message, details: err.details ?? {} });
    }
  }
  if (misfits.length > 0)
    throw new NovaError(
      "NOVA_DRAIN_NO_TARGET",
      `Cannot drain host ${host.name}: the other hosts cannot take ${misfits.length === 1 ? "VM" : "VMs"} ${misfits.map((m) => m.vm).join(", ")} (${misfits.map((m) => m.reason).join(" ")}) Free memory, add a host or relax a placement group, then drain again; nothing was changed.`,
      {
        details: {
          host: host.name,
          unplaceable: misfits.map((m) => ({ vm: m.vm, reason: m.reason, ...m.details })),
          placed,
        },
      },
    );
}
