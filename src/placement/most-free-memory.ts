/**
 * The placement the server used before ITP: the live, uncordoned host holding the VM's
 * image, whose QEMU offers the VM's machine type, with the most free memory that fits.
 * The server places with ITP now (cluster/placement.ts); this stays as the baseline
 * bench:placement measures ITP against.
 */
import { NovaError } from "../lib/errors.js";
import { machineTypeSupport, type QemuMachineFacts } from "../lib/qemu-support.js";

/** What placement needs to know about a host. */
export interface PlacementHost {
  id: string;
  name: string;
  liveness: "alive" | "dead";
  cordoned: boolean;
  freeMemoryMiB: number;
  /** The host's QEMU; null when its agent has not reported it (nothing is placed there). */
  qemu: QemuMachineFacts | null;
}

/** What the VM needs. */
export interface PlacementRequest {
  vmName: string;
  memoryMiB: number;
  imageName: string;
  imageHostIds: readonly string[];
  /** The VM's machine type; undefined or `q35` runs on any supported QEMU. */
  machineType?: string;
}

/** Why a host was not chosen. */
export interface Rejection {
  host: string;
  reason: string;
}

/** Picks a host or throws NOVA_NO_CAPACITY explaining every rejection. */
export function placeVm(hosts: readonly PlacementHost[], req: PlacementRequest): PlacementHost {
  const rejections: Rejection[] = [];
  let best: PlacementHost | undefined;
  for (const host of hosts) {
    const reason = rejectionReason(host, req);
    if (reason) {
      rejections.push({ host: host.name, reason });
      continue;
    }
    if (!best || host.freeMemoryMiB > best.freeMemoryMiB) best = host;
  }
  if (best) return best;

  const candidates = hosts.filter((h) => h.liveness === "alive" && !h.cordoned);
  const largest = candidates.reduce<PlacementHost | undefined>(
    (acc, h) => (!acc || h.freeMemoryMiB > acc.freeMemoryMiB ? h : acc),
    undefined,
  );
  const largestText = largest
    ? `the largest free host is ${largest.name} with ${largest.freeMemoryMiB} MiB free`
    : "no host is alive and uncordoned";
  const reasons = rejections.map((r) => `${r.host}: ${r.reason}`).join("; ");
  throw new NovaError(
    "NOVA_NO_CAPACITY",
    `No host can run VM ${req.vmName}: it needs ${req.memoryMiB} MiB of memory and image ${req.imageName}; ${largestText}.${reasons ? ` (${reasons})` : ""}`,
    {
      details: {
        neededMemoryMiB: req.memoryMiB,
        image: req.imageName,
        largestFreeHost: largest ? { name: largest.name, freeMemoryMiB: largest.freeMemoryMiB } : null,
        rejections,
      },
    },
  );
}

function rejectionReason(host: PlacementHost, req: PlacementRequest): string | undefined {
  if (host.liveness !== "alive") return "host is dead (missed heartbeats)";
  if (host.cordoned) return "host is cordoned";
  if (!host.qemu) return "its agent has not reported its QEMU version (upgrade the agent)";
  if (req.machineType !== undefined) {
    const support = machineTypeSupport(req.machineType, host.qemu);
    if (!support.ok) return support.reason;
  }
  if (!req.imageHostIds.includes(host.id)) return `image ${req.imageName} is not in its image store`;
  if (host.freeMemoryMiB < req.memoryMiB) return `only ${host.freeMemoryMiB} MiB free`;
  return undefined;
}
