/**
 * The CPU the host's VMs use, for the server's placement and rebalancer: each QEMU's
 * user + system time from /proc/<pid>/stat (all its threads: vCPUs, I/O, migration),
 * turned into cores used over a trailing window of about 10 s. Only the VMs' processes
 * count, not the whole machine: what a rebalancer can move is a VM, and agents that share
 * one machine (the test suites) still tell their own load apart. A process that is gone
 * or unreadable simply reports nothing; memory is bounded by the VMs it holds (a few
 * readings each).
 */
import { readFile } from "node:fs/promises";

/** Linux reports /proc times in USER_HZ, 100 on every architecture it supports. */
const USER_HZ = 100;
/** The trailing window cores are averaged over. */
const WINDOW_MS = 10_000;
/** Readings closer together than this measure noise; the previous answer stands. */
const MIN_SPAN_MS = 1_000;

interface Reading {
  at: number;
  ticks: number;
}

/** Parses utime + stime (fields 14 and 15) of a /proc/<pid>/stat line; null if malformed. */
export function parseProcStatTicks(line: string): number | null {
  // The command name (field 2) is in parentheses and may hold spaces or parentheses.
  const close = line.lastIndexOf(")");
  if (close < 0) return null;
  const rest = line
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  // rest[0] is field 3 (state): utime is field 14, stime field 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? utime + stime : null;
}

/** Cores used over the span between two readings of one process. */
export function coresBetween(older: Reading, newer: Reading): number {
  const span = newer.at - older.at;
  if (span <= 0 || newer.ticks < older.ticks) return 0;
  return (newer.ticks - older.ticks) / USER_HZ / (span / 1000);
}

/** Samples VMs' QEMU processes; one per agent. */
export class CpuSampler {
  private readonly readings = new Map<string, { pid: number; history: Reading[] }>();

  constructor(
    private readonly readStat: (pid: number) => Promise<string> = (pid) =>
      readFile(`/proc/${pid}/stat`, "utf8"),
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Reads every running VM's process now and returns each VM's cores over the trailing
   * window (VMs with fewer than two readings a second apart are left out) and their sum.
   */
  async sample(vms: readonly { id: string; pid: number | null }[]): Promise<{
    cpuCores: number;
    vms: Record<string, number>;
  }> {
    const now = this.clock();
    const seen = new Set<string>();
    const out: Record<string, number> = {};
    let total = 0;
    for (const vm of vms) {
      if (vm.pid === null) continue;
      seen.add(vm.id);
      let ticks: number | null = null;
      try {
        ticks = parseProcStatTicks(await this.readStat(vm.pid));
      } catch {
        // The process ended between the listing and the read: no figure this time.
      }
      let entry = this.readings.get(vm.id);
      if (!entry || entry.pid !== vm.pid) {
        entry = { pid: vm.pid, history: [] };
        this.readings.set(vm.id, entry);
      }
      const h = entry.history;
      if (ticks !== null && (h.length === 0 || now - h[h.length - 1]!.at >= MIN_SPAN_MS))
        h.push({ at: now, ticks });
      // Keep one reading at or beyond the window's start, and nothing older.
      while (h.length > 2 && now - h[1]!.at >= WINDOW_MS) h.shift();
      if (h.length >= 2) {
        const cores = Math.round(coresBetween(h[0]!, h[h.length - 1]!) * 1000) / 1000;
        out[vm.id] = cores;
        total += cores;
      }
    }
    for (const id of this.readings.keys()) if (!seen.has(id)) this.readings.delete(id);
    return { cpuCores: Math.round(total * 1000) / 1000, vms: out };
  }
}
