/**
 * An emulated WAN link between two network namespaces ("sites"), set up and torn down as
 * one object (docs/dwcp.md §8). Site A is 10.77.0.1, site B 10.77.0.2, both on device
 * dwcp0. Profile `dc` joins them with a veth pair; every other spec runs the wanem C
 * program between two TAP devices. TCP congestion control is set per namespace.
 *
 * Optionally a management network: a bridge in the initial namespace with a veth into
 * each site, unemulated, for control-plane traffic (a server in the initial namespace,
 * agents in the sites), so that only the data plane crosses the emulated link.
 *
 * Dev-only test tooling (src/testing/): only tests, benches, src/demo and *.test.ts may
 * import it; the shipped library never does.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { NovaError } from "../../lib/errors.js";
import { NamespaceSockets } from "./broker.js";
import { buildWanem } from "./build.js";
import { Emulator } from "./emulator.js";
import { deleteNamespace, inNs, sh, sweepStaleNamespaces } from "./netns.js";
import { directionArg, type LinkSpec, parseLinkSpec } from "./spec.js";

/** Site A's address. */
export const ADDR_A = "10.77.0.1";
/** Site B's address. */
export const ADDR_B = "10.77.0.2";

/** Options for WanLink.create. */
export interface WanLinkOptions {
  /** Profile name (dc, metro, wan, intercontinental) or ad-hoc spec. */
  spec: string;
  /** TCP congestion control in both namespaces. @defaultValue "cubic" */
  cc?: string;
  /** Seed for the emulator's loss and jitter. @defaultValue 1 */
  seed?: number;
  /** Also create the management network (see the module header). @defaultValue false */
  management?: boolean;
}

/** Addresses on the management network. */
export interface ManagementNetwork {
  /** The bridge's address in the initial namespace (where a server listens). */
  host: string;
  /** Site A's and site B's management addresses. */
  a: string;
  b: string;
}

/** Per-direction counters reported by wanem. */
export interface DirectionStats {
  rx_pkts: number;
  rx_bytes: number;
  tx_pkts: number;
  tx_bytes: number;
  drop_queue: number;
  drop_loss: number;
  drop_ring: number;
  write_err: number;
}

let counter = 0;

/** A live emulated link; always `close()` it (it also cleans up on failure of create). */
export class WanLink {
  private brokers = new Map<string, Promise<NamespaceSockets>>();
  private readonly channel: Emulator | null;

  /** The management network, when created. */
  management: ManagementNetwork | null = null;
  private bridge: string | null = null;

  private constructor(
    readonly spec: LinkSpec,
    readonly nsA: string,
    readonly nsB: string,
    readonly cc: string,
    private readonly emulator: ChildProcess | null,
  ) {
    this.channel = emulator ? new Emulator(emulator) : null;
  }

  /** Creates namespaces, the link and addresses; tears everything down again if a step fails. */
  static async create(options: WanLinkOptions): Promise<WanLink> {
    const spec = parseLinkSpec(options.spec);
    const cc = options.cc ?? "cubic";
    await sweepStaleNamespaces();
    const id = `${process.pid}-${counter++}`;
    const nsA = `ncdw-${id}-a`;
    const nsB = `ncdw-${id}-b`;
    let emulator: ChildProcess | null = null;
    let bridge: string | null = null;
    try {
      for (const ns of [nsA, nsB]) {
        await sh("ip", ["netns", "add", ns]);
        await sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
      }
      if (spec.kind === "veth") {
        await sh("ip", [
          "link",
          "add",
          "dwcp0",
          "netns",
          nsA,
          "type",
          "veth",
          "peer",
          "name",
          "dwcp0",
          "netns",
          nsB,
        ]);
      } else {
        const bin = await buildWanem();
        emulator = spawn(
          bin,
          [
            "--ns-a",
            `/run/netns/${nsA}`,
            "--dev-a",
            "dwcp0",
            "--ns-b",
            `/run/netns/${nsB}`,
            "--dev-b",
            "dwcp0",
            "--ab",
            directionArg(spec.ab),
            "--ba",
            directionArg(spec.ba),
            "--seed",
            String(options.seed ?? 1),
          ],
          { stdio: ["pipe", "pipe", "inherit"] },
        );
        await waitReady(emulator);
      }
      for (const [ns, addr] of [
        [nsA, ADDR_A],
        [nsB, ADDR_B],
      ] as const) {
        await sh("ip", ["-n", ns, "addr", "add", `${addr}/24`, "dev", "dwcp0"]);
        await sh("ip", ["-n", ns, "link", "set", "dwcp0", "txqueuelen", "10000", "up"]);
      }
      await allowCongestionControl(cc);
      for (const ns of [nsA, nsB])
        await inNs(ns, ["sysctl", "-q", "-w", `net.ipv4.tcp_congestion_control=${cc}`]);
      const actual = (await inNs(nsA, ["sysctl", "-n", "net.ipv4.tcp_congestion_control"])).trim();
      const link = new WanLink(spec, nsA, nsB, actual, emulator);
      if (options.management) {
        // Registered before it exists, so that a failure below still removes it.
        bridge = `ncmb${id}`.slice(0, 15);
        link.bridge = bridge;
        link.management = await createManagement(bridge, nsA, nsB);
      }
      return link;
    } catch (err) {
      if (bridge) await sh("ip", ["link", "del", bridge]).catch(() => undefined);
      emulator?.kill("SIGKILL");
      await deleteNamespace(nsA);
      await deleteNamespace(nsB);
      throw err;
    }
  }

  /** Socket helpers for site A ("a") or site B ("b"). */
  sockets(site: "a" | "b"): Promise<NamespaceSockets> {
    const ns = site === "a" ? this.nsA : this.nsB;
    let p = this.brokers.get(ns);
    if (!p) {
      p = NamespaceSockets.start(ns);
      this.brokers.set(ns, p);
    }
    return p;
  }

  /** Changes link conditions at run time (emulated links only); keys as in the spec syntax. */
  async set(which: "ab" | "ba" | "both", spec: string): Promise<void> {
    const parsed = parseLinkSpec(spec);
    if (parsed.kind !== "emulated") throw new NovaError("NOVA_CONFIG", "set() needs an emulated spec");
    const reply = await this.command(`set ${which} ${directionArg(parsed.ab)}`);
    if (reply !== "ok") throw new NovaError("NOVA_DWCP_EMULATOR", `wanem refused the change: ${reply}`);
  }

  /** Emulator counters per direction (ab = A to B), or null for a veth link. */
  async stats(): Promise<{ ab: DirectionStats; ba: DirectionStats } | null> {
    if (!this.emulator) return null;
    return JSON.parse(await this.command("stats"));
  }

  /**
   * Bytes site A's data-plane interface has sent and received so far: both directions of
   * the link, as the kernel counts them (the benches take the difference around a run).
   */
  async siteABytes(): Promise<number> {
    const read = (dir: "tx" | "rx") =>
      inNs(this.nsA, ["cat", `/sys/class/net/dwcp0/statistics/${dir}_bytes`]);
    return Number(await read("tx")) + Number(await read("rx"));
  }

  private command(line: string): Promise<string> {
    if (!this.channel)
      return Promise.reject(new NovaError("NOVA_DWCP_EMULATOR", "This link has no emulator"));
    return this.channel.command(line);
  }

  /** Stops helpers and the emulator and deletes both namespaces. */
  async close(): Promise<void> {
    for (const p of this.brokers.values()) {
      try {
        (await p).close();
      } catch {
        // The helper never started.
      }
    }
    await this.channel?.stop();
    await deleteNamespace(this.nsA);
    await deleteNamespace(this.nsB);
    if (this.bridge) await sh("ip", ["link", "del", this.bridge]).catch(() => undefined);
  }
}

/** One management subnet per link: 10.78.<n>.0/24, n from the pid and a counter. */
let managementCounter = 0;

async function createManagement(bridge: string, nsA: string, nsB: string): Promise<ManagementNetwork> {
  const n = (process.pid * 7 + managementCounter++) % 250;
  const net = { host: `10.78.${n}.1`, a: `10.78.${n}.2`, b: `10.78.${n}.3` };
  await sh("ip", ["link", "add", bridge, "type", "bridge"]);
  await sh("ip", ["addr", "add", `${net.host}/24`, "dev", bridge]);
  await sh("ip", ["link", "set", bridge, "up"]);
  for (const [ns, addr, side] of [
    [nsA, net.a, "a"],
    [nsB, net.b, "b"],
  ] as const) {
    const outer = `${bridge.slice(0, 13)}${side}0`.slice(0, 15);
    await sh("ip", ["link", "add", outer, "type", "veth", "peer", "name", "mgmt0", "netns", ns]);
    await sh("ip", ["link", "set", outer, "master", bridge]);
    await sh("ip", ["link", "set", outer, "up"]);
    await sh("ip", ["-n", ns, "addr", "add", `${addr}/24`, "dev", "mgmt0"]);
    await sh("ip", ["-n", ns, "link", "set", "mgmt0", "up"]);
  }
  return net;
}

/**
 * A namespace other than the initial one may only pick a congestion control listed in
 * the host-wide net.ipv4.tcp_allowed_congestion_control (the kernel starts it as "reno"
 * plus the boot default). Appending one is additive: it changes no existing socket or
 * default, it only lets namespaces select it.
 */
export async function allowCongestionControl(cc: string): Promise<void> {
  const allowed = (await sh("sysctl", ["-n", "net.ipv4.tcp_allowed_congestion_control"])).trim().split(/\s+/);
  if (allowed.includes(cc)) return;
  const available = (await sh("sysctl", ["-n", "net.ipv4.tcp_available_congestion_control"]))
    .trim()
    .split(/\s+/);
  if (!available.includes(cc)) {
    // Loading the module (e.g. tcp_cubic) makes it available; fall through to the error if that fails.
    await sh("modprobe", [`tcp_${cc}`]).catch(() => undefined);
  }
  await sh("sysctl", ["-q", "-w", `net.ipv4.tcp_allowed_congestion_control=${[...allowed, cc].join(" ")}`]);
}

/** Resolves when a starting wanem process prints "ready"; fails if it exits or takes 10 s. */
export function waitReady(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new NovaError("NOVA_DWCP_EMULATOR", "wanem did not start within 10 s")),
      10_000,
    );
    const onData = (b: Buffer): void => {
      if (b.toString().includes("ready")) {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new NovaError("NOVA_DWCP_EMULATOR", `wanem exited with ${code} during setup`));
    });
  });
}
