/**
 * How a migration's data travels, decided from what the source observed: the requested
 * transport, whether both agents offer DWCP, whether the destination's listener answered,
 * and the path it measured (kernel or session RTT, the tuner's bandwidth probe). Pure: the
 * source side (source.ts) gathers the observations and acts on the answer.
 *
 * With "auto", a datacenter-class path (RTT < 10 ms and >= 1 Gbit/s measured, or RTT
 * < 1 ms) goes over QEMU's own transport, where the benchmark shows it is faster; anything
 * slower over DWCP; a destination whose DWCP listener cannot be reached still gets the VM
 * over QEMU's transport. "dwcp" is honoured or fails; "qemu" never dials.
 *
 * Across clusters (the endpoint names the destination cluster's CA) only DWCP can carry
 * the migration: QEMU's own TLS trusts one cluster CA, and the destination QEMU listens on
 * loopback behind its relay. "auto" then means "dwcp" and "qemu" fails.
 */
import { classify, type NetworkMode } from "../../dwcp/mode.js";
import { NovaError } from "../../lib/errors.js";

/** How a migration's data travels, and why. */
export interface TransportDecision {
  chosen: "qemu" | "dwcp";
  mode: NetworkMode | null;
  reason: string;
  rttMs: number | null;
  probedMbps: number | null;
}

/** The transport a migration asked for. */
export type RequestedTransport = "auto" | "qemu" | "dwcp";

/** What to do next, before any DWCP session exists. */
export type OfferChoice =
  | { action: "use"; decision: TransportDecision }
  /** Connect to the destination's DWCP listener and measure the path; `requested` is what to honour. */
  | { action: "dial"; requested: "auto" | "dwcp" }
  | { action: "fail"; error: NovaError };

/** Before dialing: whether DWCP is possible at all between these hosts. */
export function chooseBeforeDial(o: {
  requested: RequestedTransport;
  /** This agent runs a DWCP transport. */
  localDwcp: boolean;
  /** The destination handed out a DWCP endpoint. */
  peerDwcp: boolean;
  /** The destination is in another cluster (its endpoint names that cluster's CA). */
  crossCluster?: boolean;
}): OfferChoice {
  if (o.crossCluster) {
    if (o.requested === "qemu" || !o.localDwcp || !o.peerDwcp)
      return {
        action: "fail",
        error: new NovaError(
          "NOVA_UNPROCESSABLE",
          o.requested === "qemu"
            ? "QEMU's own transport stays inside a cluster: a migration to another cluster must use DWCP"
            : `A migration to another cluster needs DWCP, and ${!o.localDwcp ? "this agent" : "the destination agent"} does not offer it`,
        ),
      };
    return { action: "dial", requested: "dwcp" };
  }
  if (o.requested !== "qemu" && o.localDwcp && o.peerDwcp) return { action: "dial", requested: o.requested };
  if (o.requested === "dwcp")
    return {
      action: "fail",
      error: new NovaError(
        "NOVA_UNPROCESSABLE",
        `DWCP was requested but ${!o.localDwcp ? "this agent" : "the destination agent"} does not offer it`,
      ),
    };
  return {
    action: "use",
    decision: {
      chosen: "qemu",
      mode: null,
      reason: o.requested === "qemu" ? "requested" : "auto: DWCP is not available between these hosts",
      rttMs: null,
      probedMbps: null,
    },
  };
}

/**
 * The destination's DWCP listener could not be reached. Null means the request cannot be
 * honoured ("dwcp"): the caller fails with the dial error itself.
 */
export function chooseWhenUnreachable(o: {
  requested: "auto" | "dwcp";
  /** Why the dial failed, for the reason text. */
  error: string;
}): TransportDecision | null {
  if (o.requested === "dwcp") return null;
  return {
    chosen: "qemu",
    mode: null,
    reason: `auto: the destination's DWCP listener is unreachable (${o.error})`,
    rttMs: null,
    probedMbps: null,
  };
}

/** What the source measured over an established DWCP session. */
export interface PathObservation {
  requested: "auto" | "dwcp";
  /**
   * The kernel's minimum RTT of the session's connections, null when unavailable. Preferred:
   * an RTT timed in user space reads high on a loaded host.
   */
  kernelRttMs: number | null;
  /** The session's own minimum RTT, null before any sample. */
  sessionRttMs: number | null;
  /** The tuner's bandwidth probe in bytes/s; 0 when it did not run. */
  probedBps: number;
}

/** After measuring: the transport for this path. */
export function chooseForPath(o: PathObservation): TransportDecision {
  const rttMs = o.kernelRttMs ?? o.sessionRttMs;
  const probed = o.probedBps;
  const mode =
    rttMs === null
      ? null
      : classify({ rttMs, bandwidthBps: probed > 0 ? probed * 8 : Number.POSITIVE_INFINITY });
  const probedMbps = probed > 0 ? Math.round((probed * 8) / 1e6) : null;
  const rttText = rttMs === null ? "?" : rttMs < 1 ? rttMs.toFixed(2) : rttMs.toFixed(1);
  const measured = `RTT ${rttText} ms${o.kernelRttMs === null ? "" : " (kernel)"}${probedMbps ? `, probe ${probedMbps} Mbit/s` : ""}`;
  // A sub-millisecond RTT is a LAN whatever the probe says: the probe runs through DWCP's
  // own CPU-heavy path and reads low on a loaded host (seen on loopback under test load),
  // while QEMU's transport is the faster one on any LAN.
  const lan = rttMs !== null && rttMs < 1;
  if (o.requested === "auto" && (mode === "datacenter" || lan))
    return {
      chosen: "qemu",
      mode: "datacenter",
      reason: `auto: datacenter-class path (${measured}${mode === "datacenter" ? "" : ", RTT under 1 ms"}); QEMU's own transport is faster there`,
      rttMs,
      probedMbps,
    };
  return {
    chosen: "dwcp",
    mode,
    reason:
      o.requested === "dwcp"
        ? `requested (${measured}, mode ${mode ?? "unknown"})`
        : `auto: ${mode ?? "unknown"} path (${measured})`,
    rttMs,
    probedMbps,
  };
}
