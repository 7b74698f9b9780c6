/**
 * The kernel's minimum RTT of TCP connections, read with iproute2's `ss` (TCP_INFO's
 * `tcpi_min_rtt`). Path selection needs to know whether a peer is on the same LAN, and a
 * round trip timed in user space cannot tell: on a loaded host event-loop delays add
 * milliseconds to a loopback ping (seen under the test suite's load, where DWCP was picked
 * for a migration between two agents on one machine). The kernel times ACKs in softirq
 * context, so its minimum is the path's. Node exposes no TCP_INFO and no maintained package
 * does, hence `ss`, which every Debian host has (iproute2); without it this returns null
 * and callers fall back to their own measurement.
 */
import { execFile } from "node:child_process";
import type { Socket } from "node:net";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** One connection's `minrtt` (ms) from `ss -ti` output, or null when it is not there. */
export function parseMinRtt(ssInfo: string): number | null {
  const m = /\bminrtt:(\d+(?:\.\d+)?)\b/.exec(ssInfo);
  return m ? Number(m[1]) : null;
}

/**
 * The smallest kernel `minrtt` (ms) over the given connected sockets, or null when `ss`
 * is missing, fails, or reports none of them.
 */
export async function kernelMinRttMs(sockets: readonly Socket[]): Promise<number | null> {
  let best: number | null = null;
  for (const s of sockets) {
    if (!s.localPort || !s.remotePort || s.destroyed) continue;
    let out: string;
    try {
      ({ stdout: out } = await execFileAsync(
        "ss",
        ["-tinH", "state", "established", `( sport = :${s.localPort} and dport = :${s.remotePort} )`],
        { timeout: 2000 },
      ));
    } catch {
      return best;
    }
    const rtt = parseMinRtt(out);
    if (rtt !== null && (best === null || rtt < best)) best = rtt;
  }
  return best;
}
