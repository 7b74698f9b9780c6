/**
 * A migration's target in another cluster (docs/federation.md §10): the VM and its
 * ownership go through ACP's hand-off. Preparing proposes the hand-off and waits for the
 * destination's signed `prepared` (with where its paused copy listens); finishing commits
 * the release — the one point where ownership moves — and waits for the destination's
 * `owned` or `returned`. Until the release the migration may roll back as inside a
 * cluster (the hand-off is aborted and the destination never runs its copy); after it,
 * nothing here rolls back: a silent destination keeps the migration switching over, and
 * only the destination's signed word ends it.
 */
import { Value } from "@sinclair/typebox/value";
import type { HandoffVmSpec } from "../api/types/acp.js";
import { AgentIncomingEndpoints } from "../api/types/agent.js";
import type { ClusterEvent } from "../api/types/events.js";
import type { AgentClient } from "../cluster/agent-client.js";
import { findOutgoing, type OutgoingHandoff, outgoingAgeMs } from "../cluster/store/acp.js";
import type { Queryable } from "../cluster/store/db.js";
import type { PeerRow } from "../cluster/store/federation.js";
import { getImage } from "../cluster/store/images.js";
import { setMigrationTargetHostName } from "../cluster/store/migrations.js";
import type { Store } from "../cluster/store/store.js";
import type { VmRecord } from "../cluster/store/vms.js";
import type { AcpService } from "../federation/acp/service.js";
import { NovaError } from "../lib/errors.js";
import type { MigrationTarget, TargetAnswer } from "./target.js";

/** What the destination's `prepared` carries. */
export interface PreparedDetail {
  host: string;
  endpoints: AgentIncomingEndpoints;
}

/** How long preparing and finishing wait for the destination before handing back to the planner. */
const WAIT_MS = { prepare: 180_000, finish: 30_000 } as const;

/**
 * How long the source's `prepare` authorises the hand-off: a destination that has not
 * prepared by then (silent, or stuck) gets it withdrawn, so a migration never waits
 * for a peer forever. Measured from the proposal by the source database's clock; no
 * other cluster's clock is read.
 */
export const DEFAULT_PREPARE_TIMEOUT_MS = 600_000;

export class ClusterTarget implements MigrationTarget {
  private hostName: string | null;

  constructor(
    private readonly store: Store,
    private readonly acp: AcpService,
    private readonly peer: PeerRow,
    private readonly migration: { id: string; targetHost: string },
    private readonly prepareTimeoutMs = DEFAULT_PREPARE_TIMEOUT_MS,
  ) {
    this.hostName = migration.targetHost || null;
  }

  get label(): string {
    return this.hostName ? `${this.hostName} in cluster ${this.peer.name}` : `cluster ${this.peer.name}`;
  }

  /** The destination finds the image by content when it prepares, and refuses without it. */
  async hasImage(): Promise<boolean> {
    return true;
  }

  async copyImage(): Promise<void> {}

  async prepare(vm: VmRecord): Promise<AgentIncomingEndpoints> {
    if (!(await findOutgoing(this.store.read, this.migration.id))) {
      const image = await getImage(this.store.read, vm.imageId);
      const spec: HandoffVmSpec = {
        name: vm.name,
        vcpus: vm.vcpus,
        memoryMiB: vm.memoryMiB,
        kernelArgs: vm.kernelArgs,
        ...(vm.machineType ? { machineType: vm.machineType } : {}),
        image: {
          name: image.name,
          diskDigest: image.diskDigest,
          diskFormat: image.diskFormat,
          diskVirtualBytes: image.diskVirtualBytes,
          kernelDigest: image.kernelDigest,
          initrdDigest: image.initrdDigest,
          cmdline: image.cmdline,
          minMemoryMiB: image.minMemoryMiB,
        },
        ...(this.migration.targetHost ? { targetHost: this.migration.targetHost } : {}),
      };
      await this.acp.propose({
        id: this.migration.id,
        vm: { id: vm.id, name: vm.name },
        migrationId: this.migration.id,
        target: this.peer,
        fromEpoch: vm.ownerEpoch,
        spec,
      });
    }
    const age = (await outgoingAgeMs(this.store.read, this.migration.id)) ?? 0;
    const left = this.prepareTimeoutMs - age;
    if (left <= 0) await this.expire();
    // Past the authorisation's end the wait means expiry; before it, only a retry later.
    const h =
      left <= WAIT_MS.prepare
        ? await this.waitWhile(["preparing"], left, "prepare its copy", () => this.expire())
        : await this.waitWhile(["preparing"], WAIT_MS.prepare, "prepare its copy");
    if (h.state !== "transferring")
      throw new NovaError("NOVA_ACP_ABORTED", `cluster ${this.peer.name} did not prepare: ${h.reason}`);
    const detail = h.statements.prepared?.detail as Partial<PreparedDetail> | undefined;
    if (!detail || typeof detail.host !== "string" || !Value.Check(AgentIncomingEndpoints, detail.endpoints))
      throw new NovaError(
        "NOVA_ACP_PROTOCOL",
        `cluster ${this.peer.name} prepared without saying where its copy listens`,
      );
    this.hostName = detail.host;
    await setMigrationTargetHostName(this.store.db, this.migration.id, detail.host);
    return detail.endpoints as AgentIncomingEndpoints;
  }

  /**
   * The authorisation lapsed while the destination was still preparing: withdraw the
   * hand-off (its copy, if any, is dropped and never runs) and end the migration.
   */
  private async expire(): Promise<never> {
    const h = await findOutgoing(this.store.read, this.migration.id);
    const seconds = Math.round(this.prepareTimeoutMs / 1000);
    if (h?.state === "preparing")
      await this.acp.abort(h.id, `the authorisation expired: no prepared copy within ${seconds} s`);
    throw new NovaError(
      "NOVA_ACP_EXPIRED",
      `cluster ${this.peer.name} did not prepare a copy within ${seconds} s, so the hand-off's authorisation expired and was withdrawn; the VM runs on here. Check the peer (novacron cluster list) and migrate again`,
      { details: { handoff: this.migration.id, timeoutSeconds: seconds } },
    );
  }

  async finish(): Promise<TargetAnswer> {
    await this.acp.release(this.migration.id);
    const h = await this.waitWhile(["released"], WAIT_MS.finish, "take the VM");
    if (h.state === "completed") return { state: "running", reason: h.reason };
    if (h.state === "reclaimed")
      return { state: "returned", reason: `cluster ${this.peer.name} gave the VM back: ${h.reason}` };
    throw new NovaError("NOVA_INTERNAL", `hand-off ${h.id} is ${h.state} after its release`);
  }

  async remove(): Promise<string> {
    const h = await findOutgoing(this.store.read, this.migration.id);
    if (!h) return "nothing was proposed to the destination";
    if (h.state === "reclaimed") return `cluster ${this.peer.name} gave the VM back`;
    if (h.state === "released" || h.state === "completed")
      throw new NovaError(
        "NOVA_ACP_OWNER_UNCERTAIN",
        `the VM was released to cluster ${this.peer.name}; it is not rolled back`,
      );
    await this.acp.abort(h.id, "the migration was rolled back");
    return `hand-off to cluster ${this.peer.name} called off: its copy is dropped and never runs`;
  }

  /** The VM's record stays here, released, until ACP has removed the source copy. */
  async takeOver(_tx: Queryable, _vm: VmRecord): Promise<ClusterEvent[]> {
    return [];
  }

  /** ACP removes the source copy once the destination signed `owned`. */
  async afterComplete(_vm: VmRecord, _source: AgentClient): Promise<void> {}

  /**
   * Waits while the hand-off is in one of `states`. Past `ms` the destination is treated as
   * unreachable: the planner retries later (after the release) or rolls back (before it).
   */
  private async waitWhile(
    states: OutgoingHandoff["state"][],
    ms: number,
    what: string,
    /** What the deadline means instead, if anything (an authorisation that lapses). */
    atDeadline?: () => Promise<never>,
  ): Promise<OutgoingHandoff> {
    const deadline = Date.now() + ms;
    for (;;) {
      const h = await findOutgoing(this.store.read, this.migration.id);
      if (!h) throw new NovaError("NOVA_INTERNAL", `hand-off ${this.migration.id} is gone`);
      if (!states.includes(h.state)) return h;
      const decision = this.acp.needsDecision(h.id);
      if (Date.now() > deadline && atDeadline) return atDeadline();
      if (Date.now() > deadline || decision)
        throw new NovaError(
          "NOVA_FED_PEER_UNREACHABLE",
          `cluster ${this.peer.name} did not ${what} within ${Math.round(ms / 1000)} s${decision ? `: ${decision}` : ""}`,
          { details: { handoff: h.id, state: h.state } },
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
