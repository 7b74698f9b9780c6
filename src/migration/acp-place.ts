/**
 * Where a VM arriving from another cluster waits (docs/federation.md §10): this
 * cluster's own placement picks the host, unless the source's user named one, among the
 * hosts holding the VM's image — the image found by content (its digests), since the two
 * clusters' image names and ids are their own. An image just copied to a host for this
 * hand-off (acp-image-copy.ts) is recorded here, in the same transaction.
 */
import type { HandoffVmSpec } from "../api/types/acp.js";
import { type ClusterPlacement, lockPlacement } from "../cluster/placement.js";
import type { Queryable } from "../cluster/store/db.js";
import type { CopiedImage, Placement } from "../federation/acp/ports.js";
import { NovaError } from "../lib/errors.js";
import { findImageByContent, recordCopiedImage } from "./acp-image-copy.js";

/**
 * Picks the arriving VM's host and this cluster's image for it; NOVA_NO_CAPACITY /
 * NOVA_NOT_FOUND otherwise. With `copied` the image was just copied to that host: it is
 * recorded (with an `image.copied` event), and the VM waits there.
 */
export async function placeArrivingVm(
  tx: Queryable,
  placement: ClusterPlacement,
  spec: HandoffVmSpec,
  copied?: CopiedImage,
): Promise<Placement> {
  await lockPlacement(tx);
  const events = copied ? [await recordCopiedImage(tx, spec.image, copied)] : [];
  const image = await findImageByContent(tx, spec.image);
  if (!image)
    throw new NovaError(
      "NOVA_NOT_FOUND",
      `The destination cluster has no image with the content of ${spec.image.name} (${spec.image.diskDigest})`,
      { details: { image: spec.image.name, diskDigest: spec.image.diskDigest } },
    );
  const named = copied?.hostId ?? spec.targetHost;
  const view = await placement.load(tx);
  // An arriving VM comes without this cluster's placement groups or constraints.
  const req = {
    name: spec.name,
    memoryMiB: spec.memoryMiB,
    vcpus: spec.vcpus,
    imageName: image.name,
    imageHostIds: image.hostIds,
    ...(spec.machineType ? { machineType: spec.machineType } : {}),
  };
  const host = named ? view.placeOn(req, await hostIdOf(view.hosts, named)) : view.place(req);
  return { hostId: host.id, imageId: image.id, events };
}

/** The id of the host named (by id or name); NOVA_NOT_FOUND otherwise. */
async function hostIdOf(hosts: readonly { id: string; name: string }[], idOrName: string): Promise<string> {
  const h = hosts.find((x) => x.id === idOrName || x.name === idOrName);
  if (!h)
    throw new NovaError("NOVA_NOT_FOUND", `Host ${idOrName} not found. List hosts with: novacron host list`, {
      details: { host: idOrName },
    });
  return h.id;
}
