import { describe, expect, it } from "vitest";
import { mix32 } from "../../testing/synthetic-image.js";
import { DampedHolt, Ewma, evaluate, LastValue, SlidingMedian } from "./predictor.js";

/** A noisy step trace: 40 samples at 100, 40 at 50, 40 at 80, ±20 % noise and a few dips. */
function noisySteps(): number[] {
  const out: number[] = [];
  for (let i = 0; i < 120; i++) {
    const level = i < 40 ? 100 : i < 80 ? 50 : 80;
    const noise = ((mix32(i, 7) / 4294967296) * 2 - 1) * 0.2;
    const dip = mix32(i, 9) % 13 === 0 ? 0.3 : 1;
    out.push(level * (1 + noise) * dip);
  }
  return out;
}

describe("bandwidth predictors", () => {
  it("score a perfect prediction of a constant trace as 0 % error", () => {
    const flat = Array.from({ length: 50 }, () => 42);
    for (const make of [
      () => new LastValue(),
      () => new Ewma(),
      () => new DampedHolt(),
      () => new SlidingMedian(),
    ]) {
      expect(evaluate(make, flat, 4).mape).toBeCloseTo(0, 6);
    }
  });

  it("smoothing beats the last value on a noisy trace with dips", () => {
    const t = noisySteps();
    const naive = evaluate(() => new LastValue(), t, 4).mape;
    expect(evaluate(() => new DampedHolt(), t, 4).mape).toBeLessThan(naive);
    expect(evaluate(() => new SlidingMedian(5), t, 4).mape).toBeLessThan(naive);
    expect(evaluate(() => new Ewma(0.3), t, 4).mape).toBeLessThan(naive);
  });

  it("damped Holt follows a ramp better than a plain average and never predicts below zero", () => {
    const ramp = Array.from({ length: 60 }, (_, i) => 10 + i * 5);
    expect(evaluate(() => new DampedHolt(), ramp, 4).mape).toBeLessThan(
      evaluate(() => new Ewma(0.3), ramp, 4).mape,
    );
    const crash = [100, 100, 100, 50, 10, 1, 0, 0, 0];
    const h = new DampedHolt();
    for (const x of crash) h.update(x);
    expect(h.predict(8)).toBeGreaterThanOrEqual(0);
  });
});

describe("predictors on traces recorded from the WAN emulator (bench/data/pba-traces.json)", () => {
  it("damped Holt, the tuner's predictor, beats the last value by a clear margin", async () => {
    const { readFile } = await import("node:fs/promises");
    const traces = JSON.parse(
      await readFile(new URL("../../../bench/data/pba-traces.json", import.meta.url), "utf8"),
    ) as {
      scenario: string;
      samples: number[];
    }[];
    let holt = 0;
    let naive = 0;
    for (const t of traces) {
      holt += evaluate(() => new DampedHolt(), t.samples, 4, 4, 1e5).mape;
      naive += evaluate(() => new LastValue(), t.samples, 4, 4, 1e5).mape;
    }
    expect(holt / naive).toBeLessThan(0.8);
  });
});
