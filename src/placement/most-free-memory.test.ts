import { describe, expect, it } from "vitest";
import { isNovaError } from "../lib/errors.js";
import { QEMU_7_2_22 } from "../lib/qemu-info.test-util.js";
import { placeVm } from "./most-free-memory.js";
import { placementHost } from "./placement-host.test-util.js";

const host = placementHost;
const req = (memoryMiB: number, imageHostIds = ["id-a", "id-b", "id-c"], machineType?: string) => ({
  vmName: "vm1",
  memoryMiB,
  imageName: "guest",
  imageHostIds,
  ...(machineType ? { machineType } : {}),
});

describe("placement by most free memory", () => {
  it("picks the host with the most free memory that fits", () => {
    expect(placeVm([host("a", 1000), host("b", 3000), host("c", 2000)], req(512)).name).toBe("b");
  });

  it("never picks a cordoned or dead host, even when it has the most room", () => {
    const hosts = [
      host("a", 1000),
      host("b", 9000, { cordoned: true }),
      host("c", 8000, { liveness: "dead" }),
    ];
    expect(placeVm(hosts, req(512)).name).toBe("a");
  });

  it("only picks hosts that hold the image", () => {
    expect(placeVm([host("a", 1000), host("b", 3000)], req(512, ["id-a"])).name).toBe("a");
  });

  it("explains a refusal with what was needed and the largest free host", () => {
    try {
      placeVm([host("a", 1000), host("b", 3000), host("c", 9000, { cordoned: true })], req(4096));
      expect.unreachable();
    } catch (err) {
      if (!isNovaError(err, "NOVA_NO_CAPACITY")) throw err;
      expect(err.status).toBe(422);
      expect(err.message).toContain("needs 4096 MiB");
      expect(err.message).toContain("largest free host is b with 3000 MiB free");
      expect(err.details.largestFreeHost).toEqual({ name: "b", freeMemoryMiB: 3000 });
      expect(err.details.rejections).toContainEqual({ host: "c", reason: "host is cordoned" });
    }
  });

  it("only picks hosts whose QEMU offers the VM's machine type", () => {
    const hosts = [host("a", 1000, { qemu: QEMU_7_2_22 }), host("b", 3000)];
    expect(placeVm(hosts, req(512, undefined, "pc-q35-7.2")).name).toBe("b");
    expect(placeVm(hosts, req(512, undefined, "pc-q35-10.0")).name).toBe("b");
    expect(placeVm([host("a", 1000, { qemu: QEMU_7_2_22 })], req(512, undefined, "q35")).name).toBe("a");
    try {
      placeVm([host("a", 9000, { qemu: QEMU_7_2_22 })], req(512, undefined, "pc-q35-10.0"));
      expect.unreachable();
    } catch (err) {
      if (!isNovaError(err, "NOVA_NO_CAPACITY")) throw err;
      expect(err.details.rejections).toEqual([
        {
          host: "a",
          reason:
            "QEMU 7.2.22 has no machine type pc-q35-10.0 (its newest is pc-q35-7.2; pc-q35-10.0 needs QEMU 10.0 or newer)",
        },
      ]);
    }
  });

  it("never picks a host whose agent has not reported its QEMU", () => {
    const hosts = [host("a", 1000), host("b", 9000, { qemu: null })];
    expect(placeVm(hosts, req(512)).name).toBe("a");
    expect(() => placeVm([host("b", 9000, { qemu: null })], req(512))).toThrow(/has not reported its QEMU/);
  });

  it("says so when no host is alive", () => {
    expect(() => placeVm([host("a", 1000, { liveness: "dead" })], req(1))).toThrow(/no host is alive/);
  });
});
