// The execution store's state changes on PostgreSQL and PGlite: steps and executions move
// by compare-and-set on the state they were read in, a retry resets exactly the steps the
// step machine lets go back to pending, and a lost race changes nothing.
import { describe, expect, it } from "vitest";
import type { Plan } from "../src/api/types/executions.js";
import {
  getExecution,
  insertExecution,
  moveExecution,
  resetSteps,
  transitionStep,
  updateStep,
} from "../src/cluster/store/executions.js";
import { claimJobs, enqueueJobs, failJob, holdJobLease } from "../src/cluster/store/executions-queue.js";
import type { Store } from "../src/cluster/store/store.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";

const plan: Plan = {
  name: "three",
  steps: [
    { kind: "wait", seconds: 0 },
    { kind: "wait", seconds: 0 },
    { kind: "wait", seconds: 0 },
  ],
};

async function newExecution(store: Store): Promise<string> {
  const { id } = await insertExecution(store.db, {
    name: "three",
    tenant: "default",
    actor: { kind: "admin", id: "a", name: "admin" },
    plan,
    sla: "fast",
    mode: "background",
    priority: 5,
    state: "queued",
    assets: [],
    stepAssets: [[], [], []],
    lock: "step",
    idempotencyKey: null,
    approvalExpiresAt: null,
  });
  return id;
}

describe.each(ENGINES)("execution store on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  it("moves a step only from the state it was read in, and refuses a move the machine lacks", async () => {
    const id = await newExecution(store);
    const ev = await transitionStep(store.db, id, 0, "pending", "running", { attemptStarted: true });
    expect(ev.data).toMatchObject({ step: 0, state: "running" });
    await expect(transitionStep(store.db, id, 0, "pending", "failed")).rejects.toMatchObject({
      code: "NOVA_STATE_CHANGED",
      details: { from: "pending", to: "failed" },
    });
    await expect(transitionStep(store.db, id, 0, "running", "waiting_approval")).rejects.toMatchObject({
      code: "NOVA_ILLEGAL_STATE",
    });
    await updateStep(store.db, id, 0, { progressPct: 40, message: "half" });
    await transitionStep(store.db, id, 0, "running", "completed", { progressPct: 100 });
    const e = await getExecution(store.db, id);
    expect(e.steps[0]).toMatchObject({ state: "completed", progressPct: 100, message: "half", attempts: 1 });
    expect(e.steps[0]!.finishedAt).not.toBeNull();
  });

  it("resets to pending only the steps that may go back there", async () => {
    const id = await newExecution(store);
    await transitionStep(store.db, id, 0, "pending", "running");
    await transitionStep(store.db, id, 0, "running", "completed");
    await transitionStep(store.db, id, 1, "pending", "running");
    await transitionStep(store.db, id, 1, "running", "failed", { error: { code: "X" } });
    await resetSteps(store.db, id, 0);
    const e = await getExecution(store.db, id);
    expect(e.steps.map((s) => s.state)).toEqual(["completed", "pending", "pending"]);
    expect(e.steps[1]!.error).toBeNull();
  });

  it("returns the execution as the row holds it after a move, and refuses a stale from-state", async () => {
    const id = await newExecution(store);
    const read = await getExecution(store.db, id);
    const deadline = new Date(Date.now() + 60_000);
    const { execution } = await moveExecution(store.db, read, "running", "go", {
      startedNow: true,
      deadlineAt: deadline,
    });
    expect(execution).toMatchObject({
      state: "running",
      stateReason: "go",
      deadlineAt: deadline.toISOString(),
    });
    expect(execution.startedAt).not.toBeNull();
    await moveExecution(store.db, execution, "completed", "done");
    await expect(moveExecution(store.db, execution, "cancelled", "late")).rejects.toMatchObject({
      code: "NOVA_STATE_CHANGED",
    });
    expect((await getExecution(store.db, id)).state).toBe("completed");
  });

  it("holds a job's lease only for the worker and attempt that claimed it (the runner's write fence)", async () => {
    await enqueueJobs(store.db, "fence-test", [{ maxAttempts: 3 }]);
    const [job] = await claimJobs(store.db, ["fence-test"], "w1", 1);
    expect(job).toBeDefined();
    const held = { id: job!.id, attempt: job!.attempt };
    expect(await store.write((tx) => holdJobLease(tx, "w1", held))).toBe(true);
    expect(await store.write((tx) => holdJobLease(tx, "w2", held))).toBe(false);
    expect(await store.write((tx) => holdJobLease(tx, "w1", { ...held, attempt: held.attempt + 1 }))).toBe(
      false,
    );
    await failJob(store.db, "w1", held, { message: "retry" }, 0);
    const [again] = await claimJobs(store.db, ["fence-test"], "w2", 1);
    expect(again?.attempt).toBe(held.attempt + 1);
    expect(await store.write((tx) => holdJobLease(tx, "w1", held))).toBe(false);
    expect(
      await store.write((tx) => holdJobLease(tx, "w2", { id: again!.id, attempt: again!.attempt })),
    ).toBe(true);
  });
});
