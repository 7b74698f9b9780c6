/**
 * `npm run bench:placement`: ITP placing a fleet in one process, side by side with the
 * placement it replaces (most free memory, src/placement/most-free-memory.ts) on the same
 * synthetic cluster in the same run (issue 17: 10,000 VMs onto 1,000 hosts with affinity
 * rules in under 1 s; 100,000 onto 10,000 shown to grow linearly).
 *
 * The cluster: hosts in 4 sites, 256 GiB and 64 vCPUs each, a quarter labelled
 * `disk=ssd`, each with a predicted load; VMs of 1-16 GiB and 1-8 vCPUs, a fifth asking
 * for `disk=ssd`; placement groups over a third of the VMs: hard anti-affinity per host
 * (groups of 5), soft affinity per host (groups of 3), hard anti-affinity per site
 * (groups of 3). Seeded: every run places the same fleet. Each VM is placed in turn and
 * the placement committed, as a drain or a batch create would.
 *
 *   --sizes LIST   VMs/hosts pairs (default 10000/1000,20000/2000,50000/5000,100000/10000)
 *   --runs N       runs per size and system, median reported (default 3)
 *   --systems LIST default itp,itp-exhaustive,most-free-memory
 *   --json         one JSON object per line: {system, vms, hosts, groups, seconds,
 *                  us_per_vm, placed, refused, hard_violations, selector_violations,
 *                  imbalance}
 */
import { DEFAULT_POLICY, type ItpHost, type ItpVm, type PlacementGroup } from "../src/placement/itp/model.js";
import { place } from "../src/placement/itp/pipeline.js";
import { PlacementState } from "../src/placement/itp/state.js";
import { type PlacementHost, placeVm } from "../src/placement/most-free-memory.js";
import { median, printTable } from "./table.js";

interface Row {
  system: string;
  vms: number;
  hosts: number;
  groups: number;
  seconds: number;
  us_per_vm: number;
  placed: number;
  refused: number;
  hard_violations: number;
  selector_violations: number;
  /** Standard deviation of the hosts' memory use (fraction), lower is more even. */
  imbalance: number;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

/** A small seeded generator (mulberry32): the same fleet every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const QEMU = { major: 10, minor: 0, micro: 2, machineTypes: ["pc-q35-10.0"], q35Alias: "pc-q35-10.0" };

export function fleet(vmCount: number, hostCount: number) {
  const r = rng(17);
  const hosts: ItpHost[] = Array.from({ length: hostCount }, (_, i) => ({
    id: `h${i}`,
    name: `host-${i}`,
    // Sites are contiguous blocks; labels stripe across them, so every site has SSD hosts.
    site: `site-${Math.floor((i * 4) / hostCount)}`,
    labels: i % 4 === 0 ? { disk: "ssd" } : ({} as Record<string, string>),
    liveness: "alive",
    cordoned: false,
    maintenance: false,
    memoryMiB: { total: 262_144, used: 0 },
    vcpus: { total: 64, used: 0 },
    qemu: QEMU,
    cpuModel: "host",
    predictedLoad: r(),
    weight: 0,
  }));
  const vms: ItpVm[] = Array.from({ length: vmCount }, (_, i) => ({
    name: `vm-${i}`,
    memoryMiB: 1024 * (1 + Math.floor(r() * 16)),
    vcpus: 1 + Math.floor(r() * 8),
    imageHostIds: null,
    imageName: "img",
    hostSelector: i % 5 === 0 ? { disk: "ssd" } : ({} as Record<string, string>),
  }));
  const groups: PlacementGroup[] = [];
  // A third of the VMs in groups: [0, n/6) anti-affinity per host in fives, [n/6, n/4)
  // soft affinity in threes, [n/4, n/3) anti-affinity per site in threes.
  const cut = (
    from: number,
    to: number,
    size: number,
    g: Omit<PlacementGroup, "name" | "members">,
    tag: string,
  ) => {
    for (let s = from; s + size <= to; s += size)
      groups.push({ ...g, name: `${tag}-${s}`, members: vms.slice(s, s + size).map((v) => v.name) });
  };
  cut(0, Math.floor(vmCount / 6), 5, { policy: "anti-affinity", scope: "host", enforcement: "hard" }, "aa");
  cut(
    Math.floor(vmCount / 6),
    Math.floor(vmCount / 4),
    3,
    { policy: "affinity", scope: "host", enforcement: "soft" },
    "af",
  );
  cut(
    Math.floor(vmCount / 4),
    Math.floor(vmCount / 3),
    3,
    { policy: "anti-affinity", scope: "site", enforcement: "hard" },
    "as",
  );
  return { hosts, vms, groups };
}

/** Hard anti-affinity and host-selector violations, and the spread of memory use, of a result. */
function judge(
  hosts: ItpHost[],
  vms: ItpVm[],
  groups: PlacementGroup[],
  where: Map<string, number>,
  used: Float64Array,
): Pick<Row, "hard_violations" | "selector_violations" | "imbalance"> {
  let hard = 0;
  for (const g of groups) {
    if (g.enforcement !== "hard" || g.policy !== "anti-affinity") continue;
    const seen = new Set<string>();
    for (const m of g.members) {
      const h = where.get(m);
      if (h === undefined) continue;
      const key = g.scope === "host" ? String(h) : hosts[h]!.site!;
      if (seen.has(key)) hard++;
      seen.add(key);
    }
  }
  let selector = 0;
  for (const v of vms) {
    const h = where.get(v.name);
    if (h === undefined) continue;
    for (const k in v.hostSelector) if (hosts[h]!.labels[k] !== v.hostSelector[k]) selector++;
  }
  const fractions = hosts.map((h, i) => used[i]! / h.memoryMiB.total);
  const mean = fractions.reduce((a, b) => a + b, 0) / fractions.length;
  const sd = Math.sqrt(fractions.reduce((a, f) => a + (f - mean) ** 2, 0) / fractions.length);
  return {
    hard_violations: hard,
    selector_violations: selector,
    imbalance: Math.round(sd * 10_000) / 10_000,
  };
}

function runItp(vmCount: number, hostCount: number, exhaustive: boolean): Row {
  const { hosts, vms, groups } = fleet(vmCount, hostCount);
  const policy = exhaustive
    ? { ...DEFAULT_POLICY, candidateLimit: Number.POSITIVE_INFINITY }
    : DEFAULT_POLICY;
  const state = new PlacementState(hosts, groups, new Map());
  const where = new Map<string, number>();
  let refused = 0;
  const t0 = performance.now();
  for (const v of vms) {
    try {
      const h = place(state, v, policy);
      state.commit(v.name, h, v.memoryMiB, v.vcpus);
      where.set(v.name, h);
    } catch {
      refused++;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  return row(
    exhaustive ? "itp-exhaustive" : "itp",
    vms,
    hosts,
    groups,
    seconds,
    where,
    refused,
    state.memUsed,
  );
}

function runMostFreeMemory(vmCount: number, hostCount: number): Row {
  const { hosts, vms, groups } = fleet(vmCount, hostCount);
  const free: PlacementHost[] = hosts.map((h) => ({
    id: h.id,
    name: h.name,
    liveness: "alive",
    cordoned: false,
    freeMemoryMiB: h.memoryMiB.total,
    qemu: QEMU,
  }));
  const allHosts = hosts.map((h) => h.id);
  const index = new Map(hosts.map((h, i) => [h.id, i]));
  const used = new Float64Array(hosts.length);
  const where = new Map<string, number>();
  let refused = 0;
  const t0 = performance.now();
  for (const v of vms) {
    try {
      const chosen = placeVm(free, {
        vmName: v.name,
        memoryMiB: v.memoryMiB,
        imageName: "img",
        imageHostIds: allHosts,
      });
      chosen.freeMemoryMiB -= v.memoryMiB;
      const i = index.get(chosen.id)!;
      used[i] = used[i]! + v.memoryMiB;
      where.set(v.name, i);
    } catch {
      refused++;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  return row("most-free-memory", vms, hosts, groups, seconds, where, refused, used);
}

function row(
  system: string,
  vms: ItpVm[],
  hosts: ItpHost[],
  groups: PlacementGroup[],
  seconds: number,
  where: Map<string, number>,
  refused: number,
  used: Float64Array,
): Row {
  return {
    system,
    vms: vms.length,
    hosts: hosts.length,
    groups: groups.length,
    seconds: Math.round(seconds * 1000) / 1000,
    us_per_vm: Math.round((seconds * 1e6) / vms.length),
    placed: where.size,
    refused,
    ...judge(hosts, vms, groups, where, used),
  };
}

function main(): void {
  const sizes = (arg("sizes") ?? "10000/1000,20000/2000,50000/5000,100000/10000").split(",").map((s) => {
    const [v, h] = s.split("/").map(Number);
    if (!v || !h) throw new Error(`--sizes: ${s} is not VMS/HOSTS`);
    return { vms: v, hosts: h };
  });
  const runs = Number(arg("runs") ?? 3);
  const systems = (arg("systems") ?? "itp,itp-exhaustive,most-free-memory").split(",");
  const json = process.argv.includes("--json");
  const rows: Row[] = [];
  for (const size of sizes)
    for (const system of systems) {
      // The exhaustive scans grow with VMs × hosts (most-free-memory's with VMs × hosts²,
      // its image check is a list lookup): past 20,000 × 2,000 they take many minutes.
      if (system !== "itp" && size.vms * size.hosts > 50_000_000) continue;
      const results: Row[] = [];
      for (let i = 0; i < runs; i++) {
        const r =
          system === "most-free-memory"
            ? runMostFreeMemory(size.vms, size.hosts)
            : runItp(size.vms, size.hosts, system === "itp-exhaustive");
        results.push(r);
      }
      const seconds = median(results.map((r) => r.seconds))!;
      const r = { ...results[0]!, seconds, us_per_vm: Math.round((seconds * 1e6) / size.vms) };
      rows.push(r);
      if (json) console.log(JSON.stringify(r));
    }
  if (json) return;
  printTable(
    [
      "system",
      "VMs",
      "hosts",
      "groups",
      "seconds",
      "µs/VM",
      "placed",
      "refused",
      "hard viol.",
      "selector viol.",
      "imbalance",
    ],
    rows.map((r) => [
      r.system,
      String(r.vms),
      String(r.hosts),
      String(r.groups),
      r.seconds.toFixed(3),
      String(r.us_per_vm),
      String(r.placed),
      String(r.refused),
      String(r.hard_violations),
      String(r.selector_violations),
      r.imbalance.toFixed(4),
    ]),
  );
  console.log(`\nmedian of ${runs} runs per row; target: 10000 VMs onto 1000 hosts under 1 s (itp)`);
}

if (process.argv[1]?.endsWith("placement.js")) main();
