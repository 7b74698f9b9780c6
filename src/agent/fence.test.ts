import { describe, expect, it } from "vitest";
import { type FenceIntent, fenceRefusalText, judgeFence, judgeOwnStart } from "./fence.js";

const HERE = "c0000000-0000-4000-8000-00000000000a";
const THERE = "c0000000-0000-4000-8000-00000000000b";
const t = (owner: string, epoch: number) => ({ owner, epoch });
const judge = (held: ReturnType<typeof t> | undefined, got: ReturnType<typeof t>, intent: FenceIntent) =>
  judgeFence({ held, got, ownCluster: HERE, intent });

describe("the fencing check", () => {
  it("with no token held, takes the request's and runs the VM when it names this cluster", () => {
    expect(judge(undefined, t(HERE, 1), "run")).toEqual({ hold: t(HERE, 1), changed: true });
  });

  it("with no token held, keeps another cluster's token and refuses to run", () => {
    expect(judge(undefined, t(THERE, 1), "run")).toEqual({
      hold: t(THERE, 1),
      changed: true,
      refusal: "other-owner",
    });
  });

  it("refuses to run with an older token and keeps the held one", () => {
    expect(judge(t(HERE, 3), t(HERE, 2), "run")).toEqual({
      hold: t(HERE, 3),
      changed: false,
      refusal: "older",
    });
    expect(judge(t(THERE, 3), t(HERE, 2), "run")).toEqual({
      hold: t(THERE, 3),
      changed: false,
      refusal: "older",
    });
  });

  it("runs with the held token when it names this cluster, changing nothing", () => {
    expect(judge(t(HERE, 2), t(HERE, 2), "run")).toEqual({ hold: t(HERE, 2), changed: false });
  });

  it("refuses to run with the held token when it names another cluster", () => {
    expect(judge(t(THERE, 2), t(THERE, 2), "run")).toEqual({
      hold: t(THERE, 2),
      changed: false,
      refusal: "other-owner",
    });
  });

  it("takes a newer token and runs when it names this cluster (the VM came back at a higher epoch)", () => {
    expect(judge(t(THERE, 2), t(HERE, 3), "run")).toEqual({ hold: t(HERE, 3), changed: true });
  });

  it("takes a newer token naming another cluster even though it then refuses to run (fencing the source copy)", () => {
    expect(judge(t(HERE, 1), t(THERE, 2), "run")).toEqual({
      hold: t(THERE, 2),
      changed: true,
      refusal: "other-owner",
    });
  });

  it("refuses to run, and keeps the held token, when the same epoch names another owner", () => {
    expect(judge(t(HERE, 2), t(THERE, 2), "run")).toEqual({
      hold: t(HERE, 2),
      changed: false,
      refusal: "conflict",
    });
    expect(judge(t(THERE, 2), t(HERE, 2), "run")).toEqual({
      hold: t(THERE, 2),
      changed: false,
      refusal: "conflict",
    });
  });

  it("never refuses a stop or delete, and still takes a newer token from one", () => {
    expect(judge(t(HERE, 3), t(HERE, 2), "safe")).toEqual({ hold: t(HERE, 3), changed: false });
    expect(judge(t(HERE, 2), t(THERE, 2), "safe")).toEqual({ hold: t(HERE, 2), changed: false });
    expect(judge(t(HERE, 1), t(THERE, 2), "safe")).toEqual({ hold: t(THERE, 2), changed: true });
    expect(judge(undefined, t(THERE, 1), "safe")).toEqual({ hold: t(THERE, 1), changed: true });
  });

  it("records a newer token without judging the owner, ignores an older one, refuses a conflicting one", () => {
    expect(judge(undefined, t(THERE, 2), "record")).toEqual({ hold: t(THERE, 2), changed: true });
    expect(judge(t(HERE, 1), t(THERE, 2), "record")).toEqual({ hold: t(THERE, 2), changed: true });
    expect(judge(t(THERE, 2), t(THERE, 2), "record")).toEqual({ hold: t(THERE, 2), changed: false });
    expect(judge(t(THERE, 2), t(HERE, 1), "record")).toEqual({ hold: t(THERE, 2), changed: false });
    expect(judge(t(THERE, 2), t(HERE, 2), "record")).toEqual({
      hold: t(THERE, 2),
      changed: false,
      refusal: "conflict",
    });
  });

  it("refuses to run while the agent does not know its own cluster, but still takes a newer token", () => {
    expect(judgeFence({ held: undefined, got: t(HERE, 1), ownCluster: undefined, intent: "run" })).toEqual({
      hold: t(HERE, 1),
      changed: true,
      refusal: "unknown-cluster",
    });
  });

  it("lets the agent start a VM on its own only with a held token naming its own cluster", () => {
    expect(judgeOwnStart(t(HERE, 4), HERE)).toEqual({ hold: t(HERE, 4), changed: false });
    expect(judgeOwnStart(t(THERE, 4), HERE).refusal).toBe("other-owner");
    expect(judgeOwnStart(undefined, HERE).refusal).toBe("other-owner");
    expect(judgeOwnStart(t(HERE, 4), undefined).refusal).toBe("unknown-cluster");
  });

  it("says which token it holds, which it got, and why in the refusal", () => {
    const text = fenceRefusalText("other-owner", t(THERE, 2), t(HERE, 1), HERE);
    expect(text).toContain(`(owner ${THERE}, epoch 2)`);
    expect(text).toContain(`(owner ${HERE}, epoch 1)`);
    expect(text).toContain("owned by another cluster");
    expect(fenceRefusalText("older", t(HERE, 3), t(HERE, 2), HERE)).toContain("newer epoch");
  });
});
