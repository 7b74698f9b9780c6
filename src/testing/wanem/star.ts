/**
 * A star of emulated WAN links (docs/dwcp.md §8): N site namespaces, each joined to one
 * hub namespace by its own link, the hub switching between them (a Linux bridge, no IP of
 * its own). Site i (0-based) is 10.77.0.(i+1)/24 on device dwcp0, so every site reaches
 * every other directly on one subnet, and every site-to-site packet crosses two links:
 * the sender's uplink and the receiver's downlink. With `split` (the default) each link
 * gets half the path's delay and the loss that compounds to the path's (spec.ts
 * splitSpec), so site to site is the given spec; without it each link is the spec, and a
 * site-to-site path has twice its delay.
 *
 * Every link but a veth one (`dc`) is its own wanem process, so links never share a rate
 * limit; `stats()` reports each link's counters (`up` = site to hub). `cut(i)` takes site
 * i's port on the hub down, so whatever it sends or is sent vanishes on the way, like a
 * real partition (the site's own device stays up; its sockets see silence, not errors);
 * `heal(i)` brings the port back.
 *
 * Optionally a management network: a bridge in the initial namespace with a veth into
 * each site, unemulated, so that a process here can call the sites' services without
 * crossing the emulated links. IPv6 is off in the hub and the sites, so that idle links
 * carry nothing but the traffic under test (and ARP).
 *
 * Dev-only test tooling (src/testing/): only tests, benches, src/demo and *.test.ts may
 * import it; the shipped library never does.
 */
import { spawn } from "node:child_process";
import { NovaError } from "../../lib/errors.js";
import { buildWanem } from "./build.js";
import { Emulator } from "./emulator.js";
import { allowCongestionControl, type DirectionStats, waitReady } from "./link.js";
import { deleteNamespace, inNs, sh, sweepStaleNamespaces } from "./netns.js";
import { directionArg, type LinkSpec, parseLinkSpec, splitSpec } from "./spec.js";

/** Options for WanStar.create. */
export interface WanStarOptions {
  /** How many sites (2..250). */
  sites: number;
  /** Profile name (dc, metro, wan, intercontinental) or ad-hoc spec. */
  spec: string;
  /**
   * True: `spec` is the site-to-site path, each link one half of it. False: each link is
   * `spec` (site to site then has twice its delay). @defaultValue true
   */
  split?: boolean;
  /** TCP congestion control in every site. @defaultValue "cubic" */
  cc?: string;
  /** Seed for the emulators' loss and jitter (link i uses seed + i). @defaultValue 1 */
  seed?: number;
  /** Also create the management network. @defaultValue false */
  management?: boolean;
}

/** One site of the star. */
export interface StarSite {
  index: number;
  /** Its network namespace. */
  ns: string;
  /** Its address on the star (device dwcp0). */
  addr: string;
  /** Its address on the management network, when there is one. */
  mgmt: string | null;
}

/** One link's counters: `up` from the site to the hub, `down` from the hub to the site. */
export interface StarLinkStats {
  up: DirectionStats;
  down: DirectionStats;
}

/** The site's address on the star. */
export function starAddress(index: number): string {
  return `10.77.0.${index + 1}`;
}

let counter = 0;

/** A live star; always `close()` it (create cleans up after itself when a step fails). */
export class WanStar {
  private readonly emulators: (Emulator | null)[] = [];
  private bridge: string | null = null;
  private readonly down = new Set<number>();

  /** The bridge's address in the initial namespace, when there is a management network. */
  managementHost: string | null = null;

  private constructor(
    /** The spec of each link (site to hub). */
    readonly linkSpec: LinkSpec,
    /** The site-to-site path: two links in series. */
    readonly pathSpec: LinkSpec,
    readonly hubNs: string,
    readonly sites: StarSite[],
    readonly cc: string,
  ) {}

  /** Creates the namespaces, links, hub bridge and addresses; tears it all down if a step fails. */
  static async create(o: WanStarOptions): Promise<WanStar> {
    if (!Number.isInteger(o.sites) || o.sites < 2 || o.sites > 250)
      throw new NovaError("NOVA_CONFIG", `A star needs 2 to 250 sites, not ${o.sites}`);
    const given = parseLinkSpec(o.spec);
    const split = o.split ?? true;
    const linkSpec = split ? splitSpec(given, 2) : given;
    const pathSpec =
      split || given.kind === "veth"
        ? given
        : {
            ...given,
            name: `${given.name}x2`,
            ab: { ...given.ab, delayMs: given.ab.delayMs * 2, loss: 1 - (1 - given.ab.loss) ** 2 },
            ba: { ...given.ba, delayMs: given.ba.delayMs * 2, loss: 1 - (1 - given.ba.loss) ** 2 },
          };
    const cc = o.cc ?? "cubic";
    await sweepStaleNamespaces();
    const id = `${process.pid}-${counter++}`;
    const hubNs = `ncdw-${id}-hub`;
    const sites: StarSite[] = Array.from({ length: o.sites }, (_, i) => ({
      index: i,
      ns: `ncdw-${id}-s${i}`,
      addr: starAddress(i),
      mgmt: null,
    }));
    const star = new WanStar(linkSpec, pathSpec, hubNs, sites, cc);
    try {
      for (const ns of [hubNs, ...sites.map((s) => s.ns)]) {
        await sh("ip", ["netns", "add", ns]);
        await sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
        // Before any device exists, so that the links inherit it: no IPv6 chatter on them.
        await inNs(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"]);
        await inNs(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
      }
      await sh("ip", ["-n", hubNs, "link", "add", "br0", "type", "bridge", "forward_delay", "0"]);
      await sh("ip", ["-n", hubNs, "link", "set", "br0", "up"]);
      const bin = linkSpec.kind === "emulated" ? await buildWanem() : null;
      for (const s of sites) {
        const port = `s${s.index}`;
        if (linkSpec.kind === "veth" || !bin) {
          await sh("ip", [
            "link",
            "add",
            "dwcp0",
            "netns",
            s.ns,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            hubNs,
          ]);
          star.emulators.push(null);
        } else {
          const proc = spawn(
            bin,
            [
              "--ns-a",
              `/run/netns/${s.ns}`,
              "--dev-a",
              "dwcp0",
              "--ns-b",
              `/run/netns/${hubNs}`,
              "--dev-b",
              port,
              "--ab",
              directionArg(linkSpec.ab),
              "--ba",
              directionArg(linkSpec.ba),
              "--seed",
              String((o.seed ?? 1) + s.index),
            ],
            { stdio: ["pipe", "pipe", "inherit"] },
          );
          star.emulators.push(new Emulator(proc));
          await waitReady(proc);
        }
        await sh("ip", ["-n", hubNs, "link", "set", port, "master", "br0"]);
        await sh("ip", ["-n", hubNs, "link", "set", port, "txqueuelen", "10000", "up"]);
        await sh("ip", ["-n", s.ns, "addr", "add", `${s.addr}/24`, "dev", "dwcp0"]);
        await sh("ip", ["-n", s.ns, "link", "set", "dwcp0", "txqueuelen", "10000", "up"]);
      }
      await allowCongestionControl(cc);
      for (const s of sites)
        await inNs(s.ns, ["sysctl", "-q", "-w", `net.ipv4.tcp_congestion_control=${cc}`]);
      if (o.management) {
        // Registered before it exists, so that a failure below still removes it. The name
        // matches sweepStaleNamespaces' `ncmb<pid>-` pattern.
        star.bridge = `ncmb${process.pid}-x${id.split("-")[1]}`.slice(0, 15);
        await star.createManagement(star.bridge);
      }
      return star;
    } catch (err) {
      await star.close();
      throw err;
    }
  }

  /** The per-pid management subnet 10.79.<n>.0/24 (WanLink uses 10.78.x, so the two never clash). */
  private async createManagement(bridge: string): Promise<void> {
    const n = (process.pid * 7 + counter) % 250;
    this.managementHost = `10.79.${n}.1`;
    await sh("ip", ["link", "add", bridge, "type", "bridge"]);
    await sh("ip", ["addr", "add", `${this.managementHost}/24`, "dev", bridge]);
    await sh("ip", ["link", "set", bridge, "up"]);
    for (const s of this.sites) {
      const outer = `ncsv${process.pid.toString(36)}${counter.toString(36)}s${s.index}`.slice(0, 15);
      s.mgmt = `10.79.${n}.${s.index + 2}`;
      await sh("ip", ["link", "add", outer, "type", "veth", "peer", "name", "mgmt0", "netns", s.ns]);
      await sh("ip", ["link", "set", outer, "master", bridge]);
      await sh("ip", ["link", "set", outer, "up"]);
      await sh("ip", ["-n", s.ns, "addr", "add", `${s.mgmt}/24`, "dev", "mgmt0"]);
      await sh("ip", ["-n", s.ns, "link", "set", "mgmt0", "up"]);
    }
  }

  /** Round-trip time between two sites that the links add, in ms. */
  get pathRttMs(): number {
    return this.pathSpec.kind === "veth" ? 0 : this.pathSpec.ab.delayMs + this.pathSpec.ba.delayMs;
  }

  /** Cuts site `i` off: its port on the hub goes down. */
  async cut(i: number): Promise<void> {
    await sh("ip", ["-n", this.hubNs, "link", "set", `s${this.site(i).index}`, "down"]);
    this.down.add(i);
  }

  /** Joins site `i` again. */
  async heal(i: number): Promise<void> {
    await sh("ip", ["-n", this.hubNs, "link", "set", `s${this.site(i).index}`, "up"]);
    this.down.delete(i);
  }

  /** Whether site `i` is cut off. */
  isCut(i: number): boolean {
    return this.down.has(i);
  }

  private site(i: number): StarSite {
    const s = this.sites[i];
    if (!s) throw new NovaError("NOVA_CONFIG", `The star has no site ${i}`);
    return s;
  }

  /** Every link's counters, by site, or null for a veth star. */
  async stats(): Promise<StarLinkStats[] | null> {
    if (this.emulators.some((e) => e === null)) return null;
    const out: StarLinkStats[] = [];
    for (const e of this.emulators) {
      const s = JSON.parse(await e!.command("stats")) as { ab: DirectionStats; ba: DirectionStats };
      out.push({ up: s.ab, down: s.ba });
    }
    return out;
  }

  /** Stops the emulators and deletes the namespaces and the management bridge. */
  async close(): Promise<void> {
    await Promise.all(this.emulators.map((e) => e?.stop()));
    for (const s of this.sites) await deleteNamespace(s.ns);
    await deleteNamespace(this.hubNs);
    if (this.bridge) await sh("ip", ["link", "del", this.bridge]).catch(() => undefined);
  }
}
