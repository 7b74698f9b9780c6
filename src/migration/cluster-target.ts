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
import type { AgentClient, AgentConnector } from "../cluster/agent-client.js";
import { findOutgoing, type OutgoingHandoff, outgoingAgeMs } from "../cluster/store/acp.js";
import type { Queryable } from "../cluster/store/db.js";
import type { PeerRow } from "../cluster/store/federation.js";
import { getHost } from "../cluster/store/hosts.js";
import { getImage, type ImageRecord } from "../cluster/store/images.js";
import { setMigrationTargetHostName } from "../cluster/store/migrations.js";
import type { Store } from "../cluster/store/store.js";
import { findVm, type VmRecord } from "../cluster/store/vms.js";
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

/**
 * While the destination answers the prepare `pending` (it copies the image), the wait goes
 * on for this long after each such answer, up to the authorisation's end.
 */
const PENDING_GRACE_MS = 30_000;

/** The longest an offer of the image's blobs lives on the source host (the agent's bound). */
const MAX_OFFER_TTL_SECONDS = 21_600;

export class ClusterTarget implements MigrationTarget {
  private hostName: string | null;

  constructor(
    private readonly store: Store,
    private readonly acp: AcpService,
    private readonly peer: PeerRow,
    private readonly migration: { id: string; targetHost: string },
    /** Reaches the source host, which offers the image's blobs to the destination. */
    private readonly agents: AgentConnector,
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
        imageOffer: await this.offerImage(vm, image),
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
    if (left <= 0) await this.expire(vm);
    // Past the authorisation's end the wait means expiry; before it, a failure to prepare.
    const h = await this.waitWhile(["preparing"], WAIT_MS.prepare, "prepare its copy", {
      lapseMs: left,
      atLapse: () => this.expire(vm),
    });
    // The destination holds the image now, or never will for this hand-off.
    await this.withdrawOffer(vm);
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
  private async expire(vm: VmRecord): Promise<never> {
    await this.withdrawOffer(vm);
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

  /**
   * Has the source host offer the image's blobs to the destination cluster's hosts (its CA
   * trusted for this offer only) for as long as the prepare authorises the hand-off, in
   * case the destination lacks the image.
   */
  private async offerImage(vm: VmRecord, image: ImageRecord) {
    if (!vm.hostId) throw new NovaError("NOVA_ILLEGAL_STATE", `VM ${vm.name} has no host`);
    const digests = [image.diskDigest, image.kernelDigest, image.initrdDigest].filter(
      (d): d is string => d !== null,
    );
    return this.agents.client(await getHost(this.store.read, vm.hostId)).offerImage({
      id: this.migration.id,
      digests,
      peerCaPem: this.peer.caPem,
      ttlSeconds: Math.min(MAX_OFFER_TTL_SECONDS, Math.ceil(this.prepareTimeoutMs / 1000)),
    });
  }

  /** Best effort: the offer expires on its own otherwise. */
  private async withdrawOffer(vm: { hostId: string | null }): Promise<void> {
    if (!vm.hostId) return;
    const host = await getHost(this.store.read, vm.hostId).catch(() => undefined);
    if (host)
      await this.agents
        .client(host)
        .withdrawImageOffer(this.migration.id)
        .catch(() => undefined);
  }

  async finish(): Promise<TargetAnswer> {
    await this.acp.release(this.migration.id);
    const h = await this.waitWhile(["released"], WAIT_MS.finish, "take the VM");
    if (h.state === "completed") {
      // The destination's `owned` says when its copy ran (its host's clock), if it resumed it then.
      const resumedAt = h.statements.owned?.detail?.resumedAt;
      return { state: "running", reason: h.reason, ...(typeof resumedAt === "number" ? { resumedAt } : {}) };
    }
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
    await this.withdrawOffer((await findVm(this.store.read, h.vmId)) ?? { hostId: null });
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
   * While a preparing destination answers `pending` (it copies the image), the wait goes on
   * PENDING_GRACE_MS past each such answer; never past `lapseMs`, the authorisation's end,
   * which means `atLapse` instead.
   */
  private async waitWhile(
    states: OutgoingHandoff["state"][],
    ms: number,
    what: string,
    lapse: { lapseMs: number; atLapse: () => Promise<never> } | undefined = undefined,
  ): Promise<OutgoingHandoff> {
    const lapseAt = lapse ? Date.now() + lapse.lapseMs : Number.POSITIVE_INFINITY;
    let deadline = Math.min(Date.now() + ms, lapseAt);
    for (;;) {
      const h = await findOutgoing(this.store.read, this.migration.id);
      if (!h) throw new NovaError("NOVA_INTERNAL", `hand-off ${this.migration.id} is gone`);
      if (!states.includes(h.state)) return h;
      const pendingAt = this.acp.lastPendingAt(h.id);
      if (h.state === "preparing" && pendingAt !== undefined)
        deadline = Math.min(Math.max(deadline, pendingAt + PENDING_GRACE_MS), lapseAt);
      const decision = this.acp.needsDecision(h.id);
      if (Date.now() > deadline && deadline >= lapseAt && lapse) return lapse.atLapse();
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
