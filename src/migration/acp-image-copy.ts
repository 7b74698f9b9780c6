/**
 * The destination's copy of an arriving VM's image (docs/federation.md §10, "The image"):
 * when no host of this cluster holds an image with the VM's content digests (or the host
 * the source's user named lacks it), one host pulls the blobs from the source host's
 * offer over DWCP (the agent verifies each digest before a blob enters its store), while
 * the prepare is answered `pending` and the source asks again. Nothing is recorded until
 * every blob is there: the image and its location are written by the transaction that
 * records the VM arriving (recordCopiedImage, called from acp-place.ts).
 *
 * The pull's host is remembered per hand-off so that each repeated prepare asks the same
 * agent; after a restart of this server it is chosen again (the agent's store keeps what
 * a first pull completed, so nothing is fetched twice on one host).
 */
import type { HandoffVmSpec } from "../api/types/acp.js";
import type { AgentImagePullStatus } from "../api/types/agent.js";
import type { ClusterEvent } from "../api/types/events.js";
import type { AgentConnector } from "../cluster/agent-client.js";
import { ClusterPlacement } from "../cluster/placement.js";
import type { Queryable, ReadQueryable } from "../cluster/store/db.js";
import { appendEvent } from "../cluster/store/events.js";
import { getHost, type HostRecord } from "../cluster/store/hosts.js";
import {
  addImageLocation,
  getImage,
  type ImageRecord,
  insertImage,
  listImages,
} from "../cluster/store/images.js";
import type { Store } from "../cluster/store/store.js";
import type { CopiedImage, ImageReadiness } from "../federation/acp/ports.js";
import type { ErrorCode } from "../lib/error-codes.js";
import { describeError, isNovaError, NovaError } from "../lib/errors.js";

/** Hand-offs whose pull host is remembered; the oldest is forgotten past this. */
const MAX_REMEMBERED = 256;

/** Failures of a pull that asking again cannot fix: the hand-off is refused. */
const FINAL_FAILURES = new Set<string>([
  "NOVA_IMAGE_DIGEST_MISMATCH",
  "NOVA_REPLY_TOO_LARGE",
  "NOVA_UNPROCESSABLE",
  "NOVA_BAD_REQUEST",
]);

/** This cluster's image with the spec's content, if any. */
export async function findImageByContent(
  q: ReadQueryable,
  image: HandoffVmSpec["image"],
): Promise<ImageRecord | undefined> {
  return (await listImages(q)).find(
    (i) =>
      i.diskDigest === image.diskDigest &&
      i.kernelDigest === image.kernelDigest &&
      i.initrdDigest === image.initrdDigest,
  );
}

/**
 * Records the image copied to a host (one transaction with the arriving VM): a new image
 * named as the source's, or suffixed (`-2`, `-3`, …) when another image here has that
 * name; an image with the same content already recorded only gains the location. The
 * `image.copied` event says what the copy cost.
 */
export async function recordCopiedImage(
  tx: Queryable,
  image: HandoffVmSpec["image"],
  copied: CopiedImage,
): Promise<ClusterEvent> {
  let record = await findImageByContent(tx, image);
  if (!record) {
    const taken = new Set((await listImages(tx)).map((i) => i.name));
    let name = image.name;
    for (let n = 2; taken.has(name); n++) name = `${image.name.slice(0, 120)}-${n}`;
    // The spec's image has exactly an image record's fields.
    record = await getImage(tx, await insertImage(tx, { ...image, name }));
  }
  await addImageLocation(tx, record.id, copied.hostId);
  const host = await getHost(tx, copied.hostId);
  return appendEvent(tx, {
    type: "image.copied",
    resourceType: "image",
    resourceId: record.id,
    data: {
      name: record.name,
      host: host.name,
      diskDigest: image.diskDigest,
      logicalBytes: copied.logicalBytes,
      wireBytes: copied.wireBytes,
      pages: copied.pages,
      pagesDeduplicated: copied.pagesDeduplicated,
    },
  });
}

export class ImageCopies {
  /** Where each hand-off's image is being pulled. */
  private readonly hosts = new Map<string, string>();

  constructor(
    private readonly store: Store,
    private readonly agents: AgentConnector,
    private readonly placement = new ClusterPlacement(),
  ) {}

  async ensure(handoffId: string, sourceCaPem: string, spec: HandoffVmSpec): Promise<ImageReadiness> {
    const read = this.store.read;
    const image = await findImageByContent(read, spec.image);
    const named = spec.targetHost ? await getHost(read, spec.targetHost) : undefined;
    if (image && (!named || image.hostIds.includes(named.id))) return { kind: "ready" };
    if (!spec.imageOffer)
      throw new NovaError(
        "NOVA_NOT_FOUND",
        `The destination cluster has no image with the content of ${spec.image.name} (${spec.image.diskDigest}) and the source offered none`,
        { details: { image: spec.image.name, diskDigest: spec.image.diskDigest } },
      );
    const host = named ?? (await this.pullHost(handoffId, spec));
    let status: AgentImagePullStatus;
    try {
      status = await this.agents.client(host).pullImage({
        id: handoffId,
        offer: spec.imageOffer,
        peerCaPem: sourceCaPem,
      });
    } catch (err) {
      // The host's agent did not answer: the source asks again; a refusal is final.
      if (isNovaError(err) && !err.retryable) throw err;
      return { kind: "pending", reason: `host ${host.name} did not answer: ${describeError(err)}` };
    }
    if (status.state === "done") {
      // The host stays remembered: should the prepare's transaction fail, the next
      // delivery finds the pull done on the same host.
      const { logicalBytes, wireBytes, pages, pagesDeduplicated } = status;
      return {
        kind: "ready",
        copied: { hostId: host.id, logicalBytes, wireBytes, pages, pagesDeduplicated },
      };
    }
    if (status.state === "running")
      return {
        kind: "pending",
        reason: `host ${host.name} copies the image (${status.logicalBytes} bytes so far)`,
      };
    const code = status.code ?? "NOVA_INTERNAL";
    if (FINAL_FAILURES.has(code))
      throw new NovaError(
        code as ErrorCode,
        `copying image ${spec.image.name} to host ${host.name} failed: ${status.message ?? code}`,
        { details: { image: spec.image.name, host: host.name } },
      );
    // A link or an agent that went away: the next delivery starts the pull afresh.
    return {
      kind: "pending",
      reason: `the copy to host ${host.name} failed and is retried: ${status.message}`,
    };
  }

  /** The host the hand-off's image is pulled to: remembered, or placed regardless of the image. */
  private async pullHost(handoffId: string, spec: HandoffVmSpec): Promise<HostRecord> {
    const view = await this.placement.load(this.store.read);
    const hosts = view.hosts;
    const known = hosts.find((h) => h.id === this.hosts.get(handoffId));
    if (known) return known;
    const host = view.place({
      name: spec.name,
      memoryMiB: spec.memoryMiB,
      vcpus: spec.vcpus,
      imageName: spec.image.name,
      // Any host may receive the image.
      imageHostIds: null,
      ...(spec.machineType ? { machineType: spec.machineType } : {}),
    });
    if (this.hosts.size >= MAX_REMEMBERED) this.hosts.delete(this.hosts.keys().next().value as string);
    this.hosts.set(handoffId, host.id);
    return hosts.find((h) => h.id === host.id)!;
  }
}
