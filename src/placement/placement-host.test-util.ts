/** A host as placement sees it, for the placement tests: alive, uncordoned, QEMU 10.0.2. */
import { QEMU_10_0_2 } from "../lib/qemu-info.test-util.js";
import type { PlacementHost } from "./most-free-memory.js";

export const placementHost = (
  name: string,
  free: number,
  extra: Partial<PlacementHost> = {},
): PlacementHost => ({
  id: `id-${name}`,
  name,
  liveness: "alive",
  cordoned: false,
  freeMemoryMiB: free,
  qemu: QEMU_10_0_2,
  ...extra,
});
