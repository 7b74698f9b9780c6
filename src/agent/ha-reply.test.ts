import { describe, expect, it } from "vitest";
import { parseHaReply } from "./ha-reply.js";

const VM = "8e0d42d2-3976-4328-897f-e669c88bd5ed";
const OWNER = "3b0c7a4e-4f6b-4b8e-9d53-1c9c5a0e7d11";

describe("the HA part of a heartbeat reply", () => {
  it("keeps well-formed fields", () => {
    expect(
      parseHaReply({
        ok: true,
        lease: { durationMs: 15_000, selfFenceAfterMs: 10_000 },
        storagePools: [{ id: OWNER, path: "/mnt/pool" }],
        release: [{ id: VM, fence: { owner: OWNER, epoch: 2 } }],
      }),
    ).toEqual({
      lease: { durationMs: 15_000, selfFenceAfterMs: 10_000 },
      storagePools: [{ id: OWNER, path: "/mnt/pool" }],
      release: [{ id: VM, fence: { owner: OWNER, epoch: 2 } }],
    });
  });

  it("drops a malformed lease, pool or release one by one, so none extends a lease or releases a VM", () => {
    expect(
      parseHaReply({
        lease: { durationMs: "15000", selfFenceAfterMs: 10_000 },
        storagePools: [{ id: "x", path: "/p" }, { id: OWNER, path: "relative" }, null],
        release: [
          { id: "../../etc", fence: { owner: OWNER, epoch: 2 } },
          { id: VM, fence: { owner: OWNER, epoch: 0 } },
          { id: VM },
        ],
      }),
    ).toEqual({ storagePools: [], release: [] });
    expect(parseHaReply({ lease: { durationMs: 100, selfFenceAfterMs: 50 } })).toEqual({});
  });

  it("reads nothing from an older server's reply or from garbage", () => {
    expect(parseHaReply({ ok: true, revokedScrapers: [] })).toEqual({});
    expect(parseHaReply(null)).toEqual({});
    expect(parseHaReply("ok")).toEqual({});
  });
});
