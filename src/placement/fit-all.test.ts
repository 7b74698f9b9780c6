import { describe, expect, it } from "vitest";
import { fitAll } from "./fit-all.js";
import { placementHost } from "./placement-host.test-util.js";

const host = placementHost;
const req = (vmName: string, memoryMiB: number) => ({
  vmName,
  memoryMiB,
  imageName: "guest",
  imageHostIds: ["id-a", "id-b"],
});

describe("fitting several VMs one after the other", () => {
  it("counts the memory each placement took before placing the next", () => {
    // Alone, each fits on a; together the second must go to b.
    expect(fitAll([host("a", 1000), host("b", 600)], [req("x", 512), req("y", 512)])).toEqual([
      { vm: "x", host: "a" },
      { vm: "y", host: "b" },
    ]);
  });

  it("names the VMs that do not fit and why, and leaves the hosts unchanged", () => {
    const hosts = [host("a", 1000), host("c", 9000, { cordoned: true })];
    const out = fitAll(hosts, [req("x", 800), req("y", 800)]);
    expect(out[0]).toEqual({ vm: "x", host: "a" });
    expect(out[1]).toMatchObject({
      vm: "y",
      host: null,
      reason: expect.stringMatching(/No host can run VM y/),
    });
    expect(hosts[0]?.freeMemoryMiB).toBe(1000);
  });
});
