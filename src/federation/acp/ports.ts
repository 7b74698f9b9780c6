/**
 * What ACP needs from the hosts (docs/federation.md §10): the copies of a VM on this
 * cluster's agents. The hand-off decides when a copy may be started, resumed, fenced or
 * removed; these ports do it. Every call is idempotent: the service repeats it after a
 * restart when it cannot know whether the previous attempt happened.
 */
import type { HandoffVmSpec, SignedStatement } from "../../api/types/acp.js";
import type { ClusterEvent } from "../../api/types/events.js";
import type { IncomingHandoff, OutgoingHandoff } from "../../cluster/store/acp.js";
import type { Queryable } from "../../cluster/store/db.js";
import type { CopyState } from "./plan.js";

/** A fencing token: the cluster that owns the VM, at which epoch. */
export interface FenceToken {
  owner: string;
  epoch: number;
}

/** The source's copy: the VM's QEMU on its host in this cluster. */
export interface SourceCopies {
  state(h: OutgoingHandoff): Promise<CopyState>;
  /** Gives the copy's agent the destination's token: from then on it refuses to resume it. */
  fence(h: OutgoingHandoff, token: FenceToken): Promise<void>;
  /** Stops the copy and removes its disk. */
  remove(h: OutgoingHandoff): Promise<void>;
  /** Resumes the paused copy (after an abort or a return) with this cluster's token. */
  resume(h: OutgoingHandoff, token: FenceToken): Promise<{ resumedAt?: number }>;
}

/** Where an arriving VM will wait, chosen before anything is recorded. */
export interface Placement {
  hostId: string;
  imageId: string;
  /** What the placement recorded besides (an image copied here for the hand-off). */
  events?: ClusterEvent[];
}

/** An image just copied to a host for a hand-off, with what the copy cost. */
export interface CopiedImage {
  hostId: string;
  /** Bytes of the blobs fetched, and the HDE bytes that crossed for them. */
  logicalBytes: number;
  wireBytes: number;
  pages: number;
  pagesDeduplicated: number;
}

/**
 * Whether the arriving VM's image is on a host of this cluster: `ready` (with the host it
 * was copied to, if it was), or `pending` while it is copied from the source's offer.
 */
export type ImageReadiness = { kind: "ready"; copied?: CopiedImage } | { kind: "pending"; reason: string };

/** The destination's copy: a paused QEMU waiting for the stream on one of its hosts. */
export interface TargetCopies {
  /**
   * Makes sure the image of a prepared hand-off is here, copying it from the source's offer
   * in the background when it is not (nothing recorded until it is whole and verified); a
   * refusal (no image and no offer, a blob with another digest) throws with a stable code.
   */
  ensureImage(handoffId: string, sourceCaPem: string, spec: HandoffVmSpec): Promise<ImageReadiness>;
  /**
   * Checks the offered VM can be taken (image, capacity) and picks its host, inside the
   * transaction that records it arriving (so two placements cannot both count the same
   * free memory); a refusal throws with a stable code and nothing is recorded. An image
   * `copied` to a host is recorded in the same transaction, and the VM placed there.
   */
  place(tx: Queryable, spec: HandoffVmSpec, copied?: CopiedImage): Promise<Placement>;
  /** Starts (or finds) the paused copy; returns what the source needs to reach it. */
  start(h: IncomingHandoff, prepare: SignedStatement): Promise<Record<string, unknown>>;
  state(h: IncomingHandoff): Promise<CopyState>;
  /**
   * Resumes the copy with this cluster's token; says when the guest ran again (epoch ms,
   * its host's clock) when this call resumed it.
   */
  resume(h: IncomingHandoff, token: FenceToken): Promise<{ resumedAt?: number }>;
  /** Stops the copy and removes its disk. */
  remove(h: IncomingHandoff): Promise<void>;
}
