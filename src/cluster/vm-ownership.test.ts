import { describe, expect, it } from "vitest";
import { assertOwnedHere } from "./vm-ownership.js";

const D = "00000000-0000-4000-8000-00000000000b";

describe("the API's ownership check", () => {
  it("lets this cluster act on its own VMs", () => {
    expect(() =>
      assertOwnedHere({ name: "a", state: "running", ownerClusterId: null, ownerEpoch: 3 }, "stop"),
    ).not.toThrow();
  });

  it("refuses a VM handed elsewhere, naming the owner and epoch", () => {
    expect(() =>
      assertOwnedHere({ name: "a", state: "migrating", ownerClusterId: D, ownerEpoch: 2 }, "start"),
    ).toThrow(
      expect.objectContaining({
        code: "NOVA_ACP_NOT_OWNER",
        message: expect.stringContaining(`(${D}) at epoch 2`),
      }),
    );
  });

  it("names the owner when the caller knows it", () => {
    expect(() =>
      assertOwnedHere({ name: "a", state: "running", ownerClusterId: D, ownerEpoch: 2 }, "migrate", "west"),
    ).toThrow(`handed to cluster west (${D}) at epoch 2`);
  });

  it("refuses a VM still arriving", () => {
    expect(() =>
      assertOwnedHere({ name: "a", state: "arriving", ownerClusterId: D, ownerEpoch: 1 }, "delete"),
    ).toThrow(/arriving from another cluster/);
  });
});
