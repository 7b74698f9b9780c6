import { describe, expect, it } from "vitest";
import { type Policy, type Scenario, type SimResult, simulate } from "./rebalance-sim.js";

// The benchmark's fleet (npm run bench:rebalance: 20 hosts, 200 VMs) over half its day.
const run = (scenario: Scenario, policy: Policy): SimResult =>
  simulate({ scenario, policy, hosts: 20, vms: 200, hours: 12, seed: 3 });

describe("the rebalancer over synthetic load traces", () => {
  it("bursts: evens the hosts out with a fraction of the threshold-only policy's moves, and no ping-pong", () => {
    const off = run("bursts", "off");
    const naive = run("bursts", "naive");
    const ours = run("bursts", "novacron");
    expect(off.migrations).toBe(0);
    expect(ours.pingPongs).toBe(0);
    expect(naive.pingPongs).toBeGreaterThan(0);
    expect(ours.migrations).toBeGreaterThan(0);
    expect(ours.migrations * 3).toBeLessThan(naive.migrations);
    expect(ours.meanPeakExcess).toBeLessThan(off.meanPeakExcess * 0.7);
    expect(ours.overloadedHostHours).toBeLessThan(off.overloadedHostHours);
    expect(ours.lastHourStdDev).toBeLessThan(ours.firstHourStdDev);
  }, 60_000);

  it("diurnal waves: less imbalance than without it, no ping-pong", () => {
    const off = run("diurnal", "off");
    const ours = run("diurnal", "novacron");
    expect(ours.pingPongs).toBe(0);
    expect(ours.meanPeakExcess).toBeLessThan(off.meanPeakExcess);
    expect(ours.migrations).toBeGreaterThan(0);
  }, 60_000);

  it("a host failing: the pile-up its VMs make on the survivors shrinks, no ping-pong", () => {
    const ours = run("host-failure", "novacron");
    const off = run("host-failure", "off");
    expect(ours.pingPongs).toBe(0);
    expect(ours.afterFailure!.nextHourPeakExcess).toBeLessThan(ours.afterFailure!.first10MinPeakExcess);
    expect(ours.afterFailure!.nextHourPeakExcess).toBeLessThan(off.afterFailure!.nextHourPeakExcess);
  }, 60_000);

  it("is deterministic: one seed, one answer", () => {
    const a = simulate({ scenario: "bursts", policy: "novacron", hosts: 5, vms: 30, hours: 2, seed: 9 });
    const b = simulate({ scenario: "bursts", policy: "novacron", hosts: 5, vms: 30, hours: 2, seed: 9 });
    expect(a).toEqual(b);
  });
});
