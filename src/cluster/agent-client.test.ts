import { describe, expect, it } from "vitest";
import { routeOf } from "./agent-client.js";

describe("the agent client's span names", () => {
  it("replace ids and digests so that names stay few", () => {
    expect(routeOf("/agent/v1/vms/3f1c2a9e-5b7d-4c1e-9a2b-0c4d5e6f7a8b/power")).toBe(
      "/agent/v1/vms/:id/power",
    );
    expect(routeOf("/agent/v1/blobs/sha256:abcdef?ticket=x")).toBe("/agent/v1/blobs/:id");
    expect(routeOf("/agent/v1/host-commands")).toBe("/agent/v1/host-commands");
  });
});
