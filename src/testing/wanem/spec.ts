/**
 * Link specifications for the WAN emulator (docs/dwcp.md §8): the named profiles and the
 * ad-hoc `rate=20mbit,rtt=250ms,loss=1%` syntax, turned into per-direction settings for
 * the wanem C program. Pure; no processes here.
 *
 * Dev-only test tooling (src/testing/): only tests, benches, src/demo and *.test.ts may
 * import it; the shipped library never does.
 */
import { NovaError } from "../../lib/errors.js";

/** One direction of an emulated link. */
export interface DirectionSpec {
  /** Bits per second; 0 means unlimited. */
  rateBps: number;
  /** One-way delay in ms. */
  delayMs: number;
  /** Jitter amplitude in ms (delivery order is preserved). */
  jitterMs: number;
  /** Loss probability 0..1. */
  loss: number;
  /** Mean loss burst length in packets (1 = independent losses). */
  burst: number;
  /** Bottleneck queue in bytes. */
  queueBytes: number;
}

/** A whole link: `veth` means no emulation (a plain veth pair). */
export type LinkSpec =
  | { kind: "veth"; name: string }
  | { kind: "emulated"; name: string; ab: DirectionSpec; ba: DirectionSpec };

/** The profiles of issue 4: dc, metro, wan, intercontinental. */
export const PROFILES = {
  dc: "veth",
  metro: "rate=1gbit,rtt=5ms,loss=0",
  wan: "rate=100mbit,rtt=50ms,loss=0.1%",
  intercontinental: "rate=50mbit,rtt=150ms,loss=0.5%",
} as const;

/** A profile name. */
export type ProfileName = keyof typeof PROFILES;

function parseRate(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)?$/i.exec(v);
  if (!m) throw new NovaError("NOVA_CONFIG", `Bad link rate "${v}" (use e.g. 20mbit, 1gbit)`);
  const mult = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 }[(m[2] ?? "bit").toLowerCase() as "bit"];
  return Number(m[1]) * mult;
}

function parseMs(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(us|ms|s)?$/.exec(v);
  if (!m) throw new NovaError("NOVA_CONFIG", `Bad duration "${v}" (use e.g. 25ms)`);
  const mult = { us: 0.001, ms: 1, s: 1000 }[(m[2] ?? "ms") as "ms"];
  return Number(m[1]) * mult;
}

function parseLoss(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(v);
  if (!m) throw new NovaError("NOVA_CONFIG", `Bad loss "${v}" (use e.g. 0.5%)`);
  const x = m[2] === "%" ? Number(m[1]) / 100 : Number(m[1]);
  if (x < 0 || x >= 1) throw new NovaError("NOVA_CONFIG", `Loss must be below 100%, got "${v}"`);
  return x;
}

/**
 * Parses a profile name or an ad-hoc spec. Keys: rate, rtt (split evenly between the
 * directions) or delay (one-way), jitter, loss (applied in both directions), burst, queue
 * (bytes; default one bandwidth-delay product, at least 64 KiB).
 */
export function parseLinkSpec(text: string): LinkSpec {
  const name = text.trim();
  if (name in PROFILES) {
    const p = PROFILES[name as ProfileName];
    if (p === "veth") return { kind: "veth", name };
    return { ...(parseLinkSpec(p) as Extract<LinkSpec, { kind: "emulated" }>), name };
  }
  const kv = new Map<string, string>();
  for (const item of name.split(",").filter(Boolean)) {
    const eq = item.indexOf("=");
    if (eq < 1) throw new NovaError("NOVA_CONFIG", `Bad link spec item "${item}" in "${text}"`);
    kv.set(item.slice(0, eq).trim(), item.slice(eq + 1).trim());
  }
  const known = new Set(["rate", "rtt", "delay", "jitter", "loss", "burst", "queue"]);
  for (const k of kv.keys())
    if (!known.has(k)) throw new NovaError("NOVA_CONFIG", `Unknown link spec key "${k}"`);
  const rateBps = kv.has("rate") ? parseRate(kv.get("rate")!) : 0;
  const delayMs = kv.has("delay")
    ? parseMs(kv.get("delay")!)
    : kv.has("rtt")
      ? parseMs(kv.get("rtt")!) / 2
      : 0;
  const bdp = (rateBps / 8) * ((2 * delayMs) / 1000);
  const dir: DirectionSpec = {
    rateBps,
    delayMs,
    jitterMs: kv.has("jitter") ? parseMs(kv.get("jitter")!) : 0,
    loss: kv.has("loss") ? parseLoss(kv.get("loss")!) : 0,
    burst: kv.has("burst") ? Math.max(1, Number(kv.get("burst"))) : 1,
    queueBytes: kv.has("queue") ? Number(kv.get("queue")) : Math.max(64 * 1024, Math.round(bdp)),
  };
  if (!Number.isFinite(dir.burst) || !Number.isFinite(dir.queueBytes) || dir.queueBytes <= 0) {
    throw new NovaError("NOVA_CONFIG", `Bad burst or queue in link spec "${text}"`);
  }
  return { kind: "emulated", name, ab: dir, ba: { ...dir } };
}

/** The wanem command-line form of one direction. */
export function directionArg(d: DirectionSpec): string {
  return [
    `rate=${Math.round(d.rateBps)}bit`,
    `delay=${d.delayMs}ms`,
    `jitter=${d.jitterMs}ms`,
    `loss=${d.loss}`,
    `burst=${d.burst}`,
    `queue=${Math.round(d.queueBytes)}`,
  ].join(",");
}

/** Round-trip time a link spec adds, in ms. */
export function specRttMs(spec: LinkSpec): number {
  return spec.kind === "veth" ? 0 : spec.ab.delayMs + spec.ba.delayMs;
}

/**
 * One of `hops` equal hops that in series make `path` (a star's site-to-hub links, so
 * that site to site is `path`): the same rate and queue, the one-way delay and jitter
 * divided by `hops`, and the loss that compounds to the path's (1 − (1 − loss)^(1/hops)).
 * A veth path stays veth.
 */
export function splitSpec(path: LinkSpec, hops: number): LinkSpec {
  if (!Number.isInteger(hops) || hops < 1) throw new NovaError("NOVA_CONFIG", `Bad hop count ${hops}`);
  if (path.kind === "veth") return path;
  const split = (d: DirectionSpec): DirectionSpec => ({
    ...d,
    delayMs: d.delayMs / hops,
    jitterMs: d.jitterMs / hops,
    loss: 1 - (1 - d.loss) ** (1 / hops),
  });
  return { kind: "emulated", name: `${path.name}/${hops}`, ab: split(path.ab), ba: split(path.ba) };
}
