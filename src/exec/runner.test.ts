import { describe, expect, it } from "vitest";
import { Abandoned, settleWithGrace } from "./runner.js";

describe("cancellation grace", () => {
  it("waits for a step that stops cooperatively", async () => {
    const c = new AbortController();
    const work = new Promise<string>((_r, reject) =>
      c.signal.addEventListener("abort", () => reject(new Error("stopped"))),
    );
    const p = settleWithGrace(work, c.signal, () => 1000);
    c.abort();
    await expect(p).rejects.toThrow("stopped");
  });

  it("abandons a step that ignores its signal once the grace period passes", async () => {
    const c = new AbortController();
    const started = Date.now();
    const p = settleWithGrace(new Promise(() => {}), c.signal, () => 150);
    c.abort();
    await expect(p).rejects.toBeInstanceOf(Abandoned);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it("passes a result through when nothing aborts", async () => {
    const c = new AbortController();
    await expect(settleWithGrace(Promise.resolve(7), c.signal, () => 10)).resolves.toBe(7);
  });
});
