import { describe, expect, it } from "vitest";
import { initialStreams, StreamController } from "./stream-controller.js";

/** A path where each stream gets `perStream` until the link `cap` is full. */
function path(perStream: number, cap: number) {
  return (n: number) => Math.min(cap, n * perStream);
}

describe("stream count controller", () => {
  it("starts from the bandwidth-delay product within bounds", () => {
    expect(initialStreams(100e6, 50, 1, 16, 256 * 1024)).toBe(3);
    expect(initialStreams(1e9, 150, 4, 32)).toBe(32);
    expect(initialStreams(1e9, 50, 4, 32)).toBe(12);
    expect(initialStreams(10e9, 0.2, 1, 16)).toBe(1);
    expect(initialStreams(50e6, 1000, 2, 8, 64 * 1024)).toBe(8);
  });

  it("climbs to the count that fills a loss-limited link and stops there", () => {
    const goodput = path(10, 75);
    const c = new StreamController(1, { min: 1, max: 16 });
    const seen: number[] = [];
    for (let i = 0; i < 160; i++) seen.push(c.observe(goodput(c.target), true));
    // 7 streams give 70 of 75: one more would add less than the 8 % that justifies it.
    expect(goodput(c.target)).toBeGreaterThanOrEqual(70);
    expect(c.target).toBeLessThanOrEqual(12);
    expect(Math.max(...seen)).toBeLessThanOrEqual(16);
  });

  it("drops streams that bring nothing and ignores intervals where the sender was idle", () => {
    const c = new StreamController(8, { min: 1, max: 16 });
    for (let i = 0; i < 240; i++) c.observe(path(100, 100)(c.target), true);
    expect(c.target).toBeLessThanOrEqual(3);
    const before = c.target;
    for (let i = 0; i < 10; i++) c.observe(1, false);
    expect(c.target).toBe(before);
  });
});
