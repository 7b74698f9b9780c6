/**
 * Where a VM arriving from another cluster waits (docs/federation.md §10): this
 * cluster's own placement picks the host, unless the source's user named one, among the
 * hosts holding the VM's image — the image found by content (its digests), since the two
 * clusters' image names and ids are their own. An image just copied to a host for this
 * hand-off (acp-image-copy.ts) is recorded here, in the same transaction.
 */
import type { HandoffVmSpec } from "../api/types/acp.js";
import type { Queryable } from "../cluster/store/db.js";
import { getHost, listHosts } from "../cluster/store/hosts.js";
import type { CopiedImage, Placement } from "../federation/acp/ports.js";
import { NovaError } from "../lib/errors.js";
import { PLACEMENT_LOCK_KEY, placeVm } from "../placement/most-free-memory.js";
import { findImageByContent, recordCopiedImage } from "./acp-image-copy.js";

/**
 * Picks the arriving VM's host and this cluster's image for it; NOVA_NO_CAPACITY /
 * NOVA_NOT_FOUND otherwise. With `copied` the image was just copied to that host: it is
 * recorded (with an `image.copied` event), and the VM waits there.
 */
export async function placeArrivingVm(
  tx: Queryable,
  spec: HandoffVmSpec,
  copied?: CopiedImage,
): Promise<Placement> {
  await tx.query("SELECT pg_advisory_xact_lock($1)", [PLACEMENT_LOCK_KEY]);
  const events = copied ? [await recordCopiedImage(tx, spec.image, copied)] : [];
  const image = await findImageByContent(tx, spec.image);
  if (!image)
    throw new NovaError(
      "NOVA_NOT_FOUND",
      `The destination cluster has no image with the content of ${spec.image.name} (${spec.image.diskDigest})`,
      { details: { image: spec.image.name, diskDigest: spec.image.diskDigest } },
    );
  const named = copied?.hostId ?? spec.targetHost;
  const hosts = named ? [await getHost(tx, named)] : await listHosts(tx);
  const host = placeVm(hosts, {
    vmName: spec.name,
    memoryMiB: spec.memoryMiB,
    imageName: image.name,
    imageHostIds: image.hostIds,
    ...(spec.machineType ? { machineType: spec.machineType } : {}),
  });
  return { hostId: host.id, imageId: image.id, events };
}
