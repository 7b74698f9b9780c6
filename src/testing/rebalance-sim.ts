/**
 * A simulation of the rebalancer over synthetic CPU load traces: hosts, VMs whose load
 * follows a scenario (bursts, diurnal waves, a host failing), and the real planner
 * (placement/rebalance-plan.ts) called every pass as the server's loop would, with each
 * move taking the time a live migration takes. It counts migrations, measures how uneven
 * the hosts are over time and catches ping-pong (a VM moved back to a host it left within
 * the hour). Used by src/placement/rebalance-sim.test.ts and `npm run bench:rebalance`.
 * Deterministic: one seed, one answer.
 */
import {
  DEFAULT_REBALANCE_SETTINGS,
  planRebalance,
  type RebalanceSettings,
} from "../placement/rebalance-plan.js";

export const SCENARIOS = ["bursts", "diurnal", "host-failure"] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** The policies compared: no rebalancer, a threshold-only one, and NovaCron's. */
export const POLICIES = {
  off: { ...DEFAULT_REBALANCE_SETTINGS, enabled: false },
  // What churns: acts on the threshold alone, no hold, no margin, no cooldown, no caps.
  naive: {
    ...DEFAULT_REBALANCE_SETTINGS,
    enabled: true,
    holdMs: 0,
    margin: 1e-9,
    cooldownMs: 0,
    maxPerHost: 100,
    maxPerCluster: 1000,
  },
  novacron: { ...DEFAULT_REBALANCE_SETTINGS, enabled: true },
} satisfies Record<string, RebalanceSettings>;
export type Policy = keyof typeof POLICIES;

export interface SimOptions {
  scenario: Scenario;
  policy: Policy;
  hosts?: number;
  vms?: number;
  /** Simulated hours. @defaultValue 24 */
  hours?: number;
  seed?: number;
}

export interface SimResult {
  scenario: Scenario;
  policy: Policy;
  hosts: number;
  vms: number;
  hours: number;
  migrations: number;
  /** Moves of a VM back to a host it left less than an hour before. */
  pingPongs: number;
  /** Time-averaged standard deviation of the hosts' utilization. */
  meanStdDev: number;
  /** Time-averaged excess of the busiest host over the mean. */
  meanPeakExcess: number;
  /** Host-hours spent over 100 % CPU (VMs wanting more than the host has). */
  overloadedHostHours: number;
  /** The standard deviation averaged over the first hour and over the last hour. */
  firstHourStdDev: number;
  lastHourStdDev: number;
  /** For host-failure: the busiest host's excess over the mean in the 10 minutes after the failure, and in the hour after those. */
  afterFailure?: { first10MinPeakExcess: number; nextHourPeakExcess: number };
}

const STEP_MS = 10_000;
const PASS_MS = 30_000;
const MIGRATION_MS = 90_000;
const HOST_VCPUS = 16;
const HOST_MEMORY_MIB = 65_536;

interface SimVm {
  id: string;
  memoryMiB: number;
  hostId: string;
  load: (t: number) => number;
  lastMovedAt: number | null;
  leftAt: Map<string, number>;
}

/** A seeded linear congruential generator: the same traces on every run. */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function traceFor(scenario: Scenario, rand: () => number, hours: number): (t: number) => number {
  const base = 0.2 + rand() * 1.3;
  if (scenario === "diurnal") {
    // Tenants in four time zones: VMs of one zone peak together.
    const phase = Math.floor(rand() * 4) / 4;
    return (t) => base * (1 + 0.8 * Math.sin(2 * Math.PI * (t / 86_400_000 + phase)));
  }
  if (scenario === "bursts") {
    // Bursts to 3-4 cores lasting 1-10 minutes, a few per VM per day.
    const bursts: { at: number; until: number; cores: number }[] = [];
    const count = Math.floor(rand() * 4 * (hours / 24));
    for (let i = 0; i < count; i++) {
      const at = rand() * hours * 3_600_000;
      bursts.push({ at, until: at + 60_000 + rand() * 540_000, cores: 3 + rand() });
    }
    return (t) => bursts.find((b) => t >= b.at && t < b.until)?.cores ?? base;
  }
  return () => base;
}

const stdDev = (xs: readonly number[]): number => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length);
};

/** Runs one scenario under one policy. */
export function simulate(o: SimOptions): SimResult {
  const hostCount = o.hosts ?? 20;
  const vmCount = o.vms ?? 200;
  const hours = o.hours ?? 24;
  const rand = prng(o.seed ?? 42);
  const settings = POLICIES[o.policy];
  const hostIds = Array.from({ length: hostCount }, (_, i) => `h${i}`);
  const alive = new Set(hostIds);
  const memUsed = new Map(hostIds.map((h) => [h, 0]));

  // Placed by memory alone, round robin over a shuffled order: CPU load is not known at
  // placement, which is what leaves hosts uneven.
  const vms: SimVm[] = [];
  for (let i = 0; i < vmCount; i++) {
    const memoryMiB = 1024 * (2 + Math.floor(rand() * 4));
    let hostId = hostIds[Math.floor(rand() * hostCount)]!;
    for (let k = 0; k < hostCount && memUsed.get(hostId)! + memoryMiB > HOST_MEMORY_MIB; k++)
      hostId = hostIds[(hostIds.indexOf(hostId) + 1) % hostCount]!;
    memUsed.set(hostId, memUsed.get(hostId)! + memoryMiB);
    vms.push({
      id: `vm${i}`,
      memoryMiB,
      hostId,
      load: traceFor(o.scenario, rand, hours),
      lastMovedAt: null,
      leftAt: new Map(),
    });
  }

  const failAt = o.scenario === "host-failure" ? Math.floor(hours / 4) * 3_600_000 : Number.POSITIVE_INFINITY;
  const end = hours * 3_600_000;
  const window = Math.max(1, Math.round(settings.windowMs / STEP_MS));
  const history = new Map(hostIds.map((h) => [h, [] as { cores: number; vms: Map<string, number> }[]]));
  const inFlight: { vm: SimVm; from: string; to: string; doneAt: number }[] = [];
  const lastMigrationEnd = new Map<string, number>();
  let overloadedSince = new Map<string, number>();
  let migrations = 0;
  let pingPongs = 0;
  let sdSum = 0;
  let excessSum = 0;
  let samples = 0;
  let overloadedSteps = 0;
  const phases = {
    first: [] as number[],
    last: [] as number[],
    failure: [] as number[],
    recovery: [] as number[],
  };

  for (let t = 0; t < end; t += STEP_MS) {
    if (t >= failAt && alive.has("h0")) {
      // h0 dies; its VMs restart on the first host with memory for them (a load-blind
      // first-fit restart), which piles them onto h1.
      alive.delete("h0");
      for (const v of vms.filter((x) => x.hostId === "h0")) {
        const target =
          [...alive].find((h) => memUsed.get(h)! + v.memoryMiB <= HOST_MEMORY_MIB) ??
          [...alive].sort((a, b) => memUsed.get(a)! - memUsed.get(b)!)[0]!;
        memUsed.set(target, memUsed.get(target)! + v.memoryMiB);
        v.hostId = target;
      }
      memUsed.set("h0", 0);
    }
    for (let i = inFlight.length - 1; i >= 0; i--) {
      const m = inFlight[i]!;
      if (t < m.doneAt) continue;
      m.vm.hostId = m.to;
      memUsed.set(m.from, memUsed.get(m.from)! - m.vm.memoryMiB);
      lastMigrationEnd.set(m.from, t);
      lastMigrationEnd.set(m.to, t);
      inFlight.splice(i, 1);
    }
    const utils: number[] = [];
    const byHost = new Map<string, SimVm[]>();
    for (const v of vms) byHost.set(v.hostId, [...(byHost.get(v.hostId) ?? []), v]);
    for (const h of alive) {
      const on = byHost.get(h) ?? [];
      const per = new Map(on.map((v) => [v.id, v.load(t)]));
      const cores = [...per.values()].reduce((a, b) => a + b, 0);
      const hist = history.get(h)!;
      hist.push({ cores, vms: per });
      if (hist.length > window) hist.shift();
      utils.push(cores / HOST_VCPUS);
      if (cores > HOST_VCPUS) overloadedSteps++;
    }
    const sd = stdDev(utils);
    const mean = utils.reduce((a, b) => a + b, 0) / utils.length;
    const excess = Math.max(...utils) - mean;
    sdSum += sd;
    excessSum += excess;
    samples++;
    if (t < 3_600_000) phases.first.push(sd);
    if (t >= failAt && t < failAt + 600_000) phases.failure.push(excess);
    if (t >= failAt + 600_000 && t < failAt + 4_200_000) phases.recovery.push(excess);
    if (t >= end - 3_600_000) phases.last.push(sd);

    if (t % PASS_MS !== 0) continue;
    const avg = (h: string, vmId?: string): number | null => {
      const hist = history.get(h)!;
      if (hist.length === 0) return null;
      const xs = hist.map((x) => (vmId === undefined ? x.cores : (x.vms.get(vmId) ?? 0)));
      return xs.reduce((a, b) => a + b, 0) / xs.length;
    };
    const moving = new Set(inFlight.map((m) => m.vm.id));
    const plan = planRebalance({
      now: t,
      settings,
      hosts: hostIds.map((h) => ({
        id: h,
        name: h,
        vcpus: HOST_VCPUS,
        eligible: alive.has(h),
        settling: t - (lastMigrationEnd.get(h) ?? Number.NEGATIVE_INFINITY) < settings.windowMs,
        cpuCores: alive.has(h) ? avg(h) : null,
      })),
      vms: vms.map((v) => ({
        id: v.id,
        name: v.id,
        hostId: v.hostId,
        movable: !moving.has(v.id),
        cpuCores: avg(v.hostId, v.id),
        lastMovedAt: v.lastMovedAt,
        allowedTargets: new Set(
          [...alive].filter((h) => h !== v.hostId && memUsed.get(h)! + v.memoryMiB <= HOST_MEMORY_MIB),
        ),
      })),
      activeMigrations: inFlight.map((m) => ({ sourceHostId: m.from, targetHostId: m.to })),
      overloadedSince,
    });
    overloadedSince = plan.overloadedSince;
    for (const m of plan.moves) {
      const v = vms.find((x) => x.id === m.vmId)!;
      const left = v.leftAt.get(m.toHostId);
      if (left !== undefined && t - left < 3_600_000) pingPongs++;
      v.leftAt.set(m.fromHostId, t);
      v.lastMovedAt = t;
      memUsed.set(m.toHostId, memUsed.get(m.toHostId)! + v.memoryMiB);
      inFlight.push({ vm: v, from: m.fromHostId, to: m.toHostId, doneAt: t + MIGRATION_MS });
      migrations++;
    }
  }
  const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  const r3 = (x: number): number => Math.round(x * 1000) / 1000;
  return {
    scenario: o.scenario,
    policy: o.policy,
    hosts: hostCount,
    vms: vmCount,
    hours,
    migrations,
    pingPongs,
    meanStdDev: r3(sdSum / samples),
    meanPeakExcess: r3(excessSum / samples),
    overloadedHostHours: r3((overloadedSteps * STEP_MS) / 3_600_000),
    firstHourStdDev: r3(mean(phases.first)),
    lastHourStdDev: r3(mean(phases.last)),
    ...(o.scenario === "host-failure"
      ? {
          afterFailure: {
            first10MinPeakExcess: r3(mean(phases.failure)),
            nextHourPeakExcess: r3(mean(phases.recovery)),
          },
        }
      : {}),
  };
}
