/** The `wait` step: pauses, reporting progress every second; cancellable at any moment. */
import type { PlanStep } from "../../api/types/executions.js";
import { type StepKind, sleep } from "./step.js";

type WaitStep = Extract<PlanStep, { kind: "wait" }>;

/** Waiting is harmless to repeat. */
export const waitStep: StepKind<WaitStep> = {
  resumable: () => true,
  async run(step, ctx) {
    const totalMs = step.seconds * 1000;
    const start = Date.now();
    for (;;) {
      const left = totalMs - (Date.now() - start);
      if (left <= 0) break;
      await sleep(Math.min(1000, left), ctx.signal);
      ctx.progress(Math.min(100, ((Date.now() - start) / Math.max(1, totalMs)) * 100), "waiting");
    }
    return { waitedMs: Date.now() - start };
  },
};
