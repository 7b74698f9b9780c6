/**
 * Where a VM arriving from another cluster waits (docs/federation.md §10): this
 * cluster's own placement picks the host, unless the source's user named one, among the
 * hosts holding the VM's image — the image found by content (its digests), since the two
 * clusters' image names and ids are their own.
 */
import type { HandoffVmSpec } from "../api/types/acp.js";
import type { Queryable } from "../cluster/store/db.js";
import { getHost, listHosts } from "../cluster/store/hosts.js";
import { listImages } from "../cluster/store/images.js";
import { NovaError } from "../lib/errors.js";
import { PLACEMENT_LOCK_KEY, placeVm } from "../placement/most-free-memory.js";

/** Picks the arriving VM's host and this cluster's image for it; NOVA_NO_CAPACITY / NOVA_NOT_FOUND otherwise. */
export async function placeArrivingVm(
  tx: Queryable,
  spec: HandoffVmSpec,
): Promise<{ hostId: string; imageId: string }> {
  await tx.query("SELECT pg_advisory_xact_lock($1)", [PLACEMENT_LOCK_KEY]);
  const image = (await listImages(tx)).find(
    (i) =>
      i.diskDigest === spec.image.diskDigest &&
      i.kernelDigest === spec.image.kernelDigest &&
      i.initrdDigest === spec.image.initrdDigest,
  );
  if (!image)
    throw new NovaError(
      "NOVA_NOT_FOUND",
      `The destination cluster has no image with the content of ${spec.image.name} (${spec.image.diskDigest}); import it there first`,
      { details: { image: spec.image.name, diskDigest: spec.image.diskDigest } },
    );
  const hosts = spec.targetHost ? [await getHost(tx, spec.targetHost)] : await listHosts(tx);
  const host = placeVm(hosts, {
    vmName: spec.name,
    memoryMiB: spec.memoryMiB,
    imageName: image.name,
    imageHostIds: image.hostIds,
    ...(spec.machineType ? { machineType: spec.machineType } : {}),
  });
  return { hostId: host.id, imageId: image.id };
}
