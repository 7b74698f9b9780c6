/**
 * The demo's federation part (as root, after the WAN part): cluster west, with its own
 * server (embedded PGlite) and one agent in site B and no image, peers with cluster east —
 * the demo's cluster, whose server runs in site A — across the emulated WAN link; both
 * global views are shown; a VM running the busy workload on east's host-c (site A)
 * live-migrates to west with its ownership (docs/federation.md §10), west copying its
 * image from east's host on the way; the guest's console on west shows its
 * heartbeat and integrity verdict; both views show the VM in west at epoch 2 and both
 * clusters' hand-offs are listed. The servers' federation traffic (advertised on the link's
 * addresses) and the migration's DWCP stream cross the emulated link; the demo reaches the
 * APIs over the unemulated management network.
 */
import type { Handoff } from "../api/types/acp.js";
import type { FederatedVm, Peer } from "../api/types/federation.js";
import { waitFor } from "../lib/wait.js";
import { ADDR_A, ADDR_B, type WanLink } from "../testing/wanem/link.js";
import type { LocalCluster } from "./local-cluster.js";
import { say, show } from "./narrate.js";

/** The VM that moves from east to west. */
export const FED_VM = "demo-fed";
// Busy like the WAN VM, with a seed of its own so that its verdicts are told apart.
const FED_WORKLOAD =
  "nc.dirty_mb=32 nc.dirty_rate_mbps=1 nc.pattern_seed=2028 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=3";

/** Ports of the part's daemons, from the demo's base port (see main-job.ts's usage). */
export function federationPorts(port: number): { eastFederation: number; west: number; westAgent: number } {
  return { eastFederation: port + 1, west: port + 10, westAgent: port + 105 };
}

/** East's server flags that put it in the federation, advertised on site A's link address. */
export function eastServerFlags(port: number): string[] {
  return [
    "--cluster-name",
    "east",
    "--advertise-host",
    ADDR_A,
    "--federation-port",
    String(federationPorts(port).eastFederation),
  ];
}

/** Runs the part; `west` is a created, empty LocalCluster the caller stops and removes. */
export async function federationPart(
  east: LocalCluster,
  west: LocalCluster,
  link: WanLink,
  port: number,
): Promise<void> {
  const net = link.management!;
  const ports = federationPorts(port);
  say(
    `Federation: cluster west in site B — its own server (embedded PGlite in ${west.dir}/server) and agent west-1`,
  );
  process.stdout.write(
    `Cluster east (this demo's) runs its server in site A. The servers reach each other at ${ADDR_A} and ${ADDR_B}, across the emulated link: their state sync and the migration's DWCP stream cross it.\n`,
  );
  await west.startServer(
    ["--cluster-name", "west", "--advertise-host", ADDR_B, "--federation-port", String(ports.west + 1)],
    { listenHost: "0.0.0.0", netns: link.nsB, reachAt: net.b },
  );
  process.stdout.write(`west's server: ${west.serverUrl}\n`);
  await west.startAgent(
    "west-1",
    ports.westAgent,
    ["--memory", "1024", "--stop-grace", "10", "--data-address", ADDR_B],
    {
      netns: link.nsB,
      host: "127.0.0.1",
    },
  );
  await waitFor(
    async () => {
      const { body } = await west.api<{ hosts: { liveness: string }[] }>("GET", "/v1/hosts");
      return body.hosts.length === 1 && body.hosts[0]!.liveness === "alive";
    },
    { timeoutMs: 30_000, what: "west's agent to register" },
  );
  // West imports no image: the migration copies the VM's from east's host (over DWCP).
  say(
    "West holds no image yet: the migration copies the VM's image from east's host, over DWCP, deduplicated",
  );
  await show(west, ["image", "list"], "west");

  say("Peering the clusters: a one-time token made on east, added on west");
  const made = await show(east, ["cluster", "peer", "token"], "east");
  const token = /peer add (\S+)/.exec(made.stdout)?.[1];
  if (!token) throw new Error("cluster peer token printed no token");
  await show(west, ["cluster", "peer", "add", token], "west");
  await waitFor(async () => (await inSync(east)) && (await inSync(west)) && (await seesAllOf(west, east)), {
    timeoutMs: 60_000,
    intervalMs: 250,
    what: "east and west to sync their views",
  });

  say("The federation: both clusters, and the global view of their VMs as west sees it");
  await show(east, ["cluster", "list"], "east");
  await show(west, ["cluster", "list"], "west");
  await show(west, ["vm", "list", "--all-clusters"], "west");

  say(`A VM in east on host-c (site A) running the busy workload`);
  // Placement would pick another of east's hosts: cordon them while the VM is placed.
  for (const h of ["host-a", "host-b", "host-d"]) await show(east, ["host", "cordon", h], "east");
  await show(
    east,
    [
      "vm",
      "create",
      FED_VM,
      "--image",
      "guest-wan",
      "--memory",
      "256",
      "--kernel-args",
      FED_WORKLOAD,
      "--wait",
      "--timeout",
      "180",
    ],
    "east",
  );
  for (const h of ["host-a", "host-b", "host-d"]) await show(east, ["host", "uncordon", h], "east");
  await east.waitConsole(FED_VM, /NC-VERIFY PASS seed=2028 .*round=1/, 90_000);

  say("Live-migrating it to cluster west: memory and disk over DWCP across the WAN, ownership by hand-off");
  const roundBefore = lastRound(await east.console(FED_VM, 400));
  const seqBefore = lastSeq(await east.console(FED_VM, 50));
  const wireBefore = await link.stats();
  await show(east, ["vm", "migrate", FED_VM, "--to-cluster", "west", "--follow"], "east");
  const wireAfter = await link.stats();
  if (wireBefore && wireAfter) {
    const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
    process.stdout.write(
      `The emulated link carried ${mib(wireAfter.ab.tx_bytes - wireBefore.ab.tx_bytes)} from site A to site B and ${mib(wireAfter.ba.tx_bytes - wireBefore.ba.tx_bytes)} back during the migration\n`,
    );
  }

  say("The guest's console on west: heartbeat unbroken, integrity verified after the move");
  await west.waitVmState(FED_VM, "running", 60_000);
  // The pattern check can print before the first heartbeat on west: wait for both.
  await waitFor(
    async () => {
      const lines = await west.console(FED_VM, 400);
      return (lastRound(lines) > roundBefore && firstSeq(lines) !== undefined) || undefined;
    },
    { timeoutMs: 90_000, what: `${FED_VM} to verify its pattern and beat on west` },
  );
  const there = await west.console(FED_VM, 2000);
  await show(west, ["vm", "console", FED_VM, "--lines", "12"], "west");
  if (there.some((l) => l.includes("NC-VERIFY FAIL")))
    throw new Error(`${FED_VM} reported NC-VERIFY FAIL on west`);
  if (there.some((l) => l.startsWith("NC-READY"))) throw new Error(`${FED_VM} rebooted on its way to west`);
  process.stdout.write(
    `${FED_VM}: heartbeat seq=${seqBefore} in east before the move, seq=${firstSeq(there)} onward in west, no reboot; NC-VERIFY PASS in cluster west\n`,
  );

  say("Both clusters' global views: the VM is west's now, at epoch 2; east forgot its copy");
  for (const c of [east, west])
    await waitFor(
      async () => {
        const { body } = await c.api<{ vms: FederatedVm[] }>("GET", "/v1/federation/vms");
        const v = body.vms.filter((x) => x.name === FED_VM);
        return v.length === 1 && v[0]!.cluster.name === "west" && v[0]!.epoch === 2;
      },
      { timeoutMs: 30_000, intervalMs: 250, what: `the global view to show ${FED_VM} in west at epoch 2` },
    );
  await waitFor(
    async () => (await handoff(east))?.settled === true && (await east.vm(FED_VM)) === undefined,
    {
      timeoutMs: 30_000,
      intervalMs: 250,
      what: "east's hand-off to settle",
    },
  );
  await show(east, ["vm", "list", "--all-clusters"], "east");
  await show(west, ["vm", "list", "--all-clusters"], "west");
  // The image west copied for the hand-off, under east's name.
  await show(west, ["image", "list"], "west");
  await show(east, ["cluster", "handoffs"], "east");
  await show(west, ["cluster", "handoffs"], "west");
  process.stdout.write(
    `${FED_VM}: owned by west at epoch 2 in both views; east's hand-off ${(await handoff(east))?.state}, west's ${(await handoff(west))?.state}\n`,
  );
}

/** The cluster has heard from its one peer, finds it current and is not behind it. */
async function inSync(c: LocalCluster): Promise<boolean> {
  const { body } = await c.api<{ peers: Peer[] }>("GET", "/v1/federation/peers");
  const p = body.peers[0];
  return body.peers.length === 1 && p!.lastContactAt !== null && !p!.stale && p!.lagRecords === 0;
}

/** `viewer`'s global view holds every VM of `owner`. */
async function seesAllOf(viewer: LocalCluster, owner: LocalCluster): Promise<boolean> {
  const own = (await owner.api<{ vms: { name: string }[] }>("GET", "/v1/vms")).body.vms;
  const seen = (await viewer.api<{ vms: FederatedVm[] }>("GET", "/v1/federation/vms")).body.vms;
  return own.every((v) => seen.some((s) => s.name === v.name && s.cluster.name !== "west"));
}

async function handoff(c: LocalCluster): Promise<Handoff | undefined> {
  const { body } = await c.api<{ handoffs: Handoff[] }>("GET", "/v1/federation/handoffs");
  return body.handoffs.find((h) => h.vm === FED_VM);
}

function lastRound(lines: string[]): number {
  return Math.max(0, ...lines.map((l) => Number(/NC-VERIFY PASS seed=2028 .*round=(\d+)/.exec(l)?.[1] ?? 0)));
}

function lastSeq(lines: string[]): number | undefined {
  const seqs = lines.map((l) => /^NC-HEARTBEAT seq=(\d+)/.exec(l)?.[1]).filter((x) => x !== undefined);
  return seqs.length ? Number(seqs[seqs.length - 1]) : undefined;
}

function firstSeq(lines: string[]): number | undefined {
  const seq = lines.map((l) => /^NC-HEARTBEAT seq=(\d+)/.exec(l)?.[1]).find((x) => x !== undefined);
  return seq === undefined ? undefined : Number(seq);
}
