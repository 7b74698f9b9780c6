/**
 * Tells a QEMU ≥ 8.2 source the bandwidth its switch-over will really get when its
 * migration stream goes through the DWCP relay (`avail-switchover-bandwidth`).
 *
 * Why: QEMU decides to stop the guest when what is left fits in downtime-limit at the
 * bandwidth it measured since its last dirty-bitmap sync. Through the relay that
 * measurement can be too high: the relay takes up to its run-ahead (8 MiB) from QEMU at
 * loopback speed whenever its buffer has drained, so a short late pass looks faster than
 * the link (bench:migration, `web` on wan, once: 555 ms of final transfer against a 300 ms
 * limit). The relay knows the real rate — stream bytes the destination wrote into its QEMU
 * per second — and how much it still holds, which also crosses after the stop. Measured
 * effect in docs/benchmarks.md ("QEMU 10 features tried"). QEMU 7.2 has no such
 * parameter; there this does nothing.
 */
import { hasMigrationParameter, migrateSetParameters } from "../compute/qemu/commands.js";
import type { QmpClient } from "../compute/qemu/qmp.js";
import { describeError, NovaError } from "../lib/errors.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";

/** Never tell QEMU less than this share of the measured rate: it must still converge. */
export const MIN_SHARE_OF_RATE = 0.5;
/** The delivered rate is measured over this much recent time. */
export const RATE_WINDOW_MS = 2000;
/** Changes smaller than this share are not sent (each is a QMP round trip). */
const MIN_CHANGE = 0.05;
const TICK_MS = 250;

/** What the relay reports, sampled at one moment. */
export interface RelaySample {
  atMs: number;
  /** Stream bytes the destination wrote into its QEMU so far. */
  deliveredBytes: number;
  /** Stream bytes read from QEMU so far. */
  logicalBytes: number;
}

/**
 * The switch-over bandwidth (bytes/s) to give QEMU, or null while the rate is not known
 * yet (then QEMU keeps its own estimate). What QEMU may leave for the switch-over is the
 * link's work for downtime-limit minus the relay's backlog, which crosses first:
 * rate − backlog / limit, floored at MIN_SHARE_OF_RATE × rate.
 */
export function switchoverBandwidth(o: {
  deliveredRateBps: number | null;
  inFlightBytes: number;
  downtimeLimitMs: number;
}): number | null {
  const rate = o.deliveredRateBps;
  if (rate === null || !(rate > 0) || !(o.downtimeLimitMs > 0)) return null;
  const fits = rate - (Math.max(0, o.inFlightBytes) * 1000) / o.downtimeLimitMs;
  return Math.max(1, Math.floor(Math.max(fits, rate * MIN_SHARE_OF_RATE)));
}

/** Delivered bytes per second over the samples of the last RATE_WINDOW_MS; null below 0.5 s of data. */
export function deliveredRate(samples: readonly RelaySample[]): number | null {
  const last = samples.at(-1);
  if (!last) return null;
  const first = samples.find((s) => s.atMs >= last.atMs - RATE_WINDOW_MS) ?? last;
  const dt = last.atMs - first.atMs;
  if (dt < 500) return null;
  return ((last.deliveredBytes - first.deliveredBytes) * 1000) / dt;
}

/** Whether a new value differs enough from the one QEMU has to be worth sending. */
export function worthSending(current: number | null, next: number): boolean {
  return current === null || Math.abs(next - current) > current * MIN_CHANGE;
}

/** Who estimates the switch-over bandwidth of a DWCP migration. */
export type SwitchoverEstimate = "relay" | "qemu";

/**
 * NOVACRON_SWITCHOVER_BANDWIDTH: `relay` (the default) keeps QEMU's estimate at what the
 * relay measures; `qemu` leaves QEMU's own (for comparison, docs/benchmarks.md).
 */
export function switchoverEstimateFromEnv(env: NodeJS.ProcessEnv = process.env): SwitchoverEstimate {
  const v = env.NOVACRON_SWITCHOVER_BANDWIDTH;
  if (v === undefined || v === "" || v === "relay") return "relay";
  if (v === "qemu") return "qemu";
  throw new NovaError("NOVA_CONFIG", `NOVACRON_SWITCHOVER_BANDWIDTH must be "relay" or "qemu", got "${v}"`, {
    details: { variable: "NOVACRON_SWITCHOVER_BANDWIDTH", value: v },
  });
}

/** Gives QEMU back its own estimate (a migration over QEMU's transport measures truly). */
export async function resetSwitchoverBandwidth(qmp: QmpClient): Promise<void> {
  if (await hasMigrationParameter(qmp, "avail-switchover-bandwidth"))
    await migrateSetParameters(qmp, { "avail-switchover-bandwidth": 0 });
}

/**
 * Keeps the source QEMU's avail-switchover-bandwidth at what the relay measures until
 * stopped. Returns the stop function; resolves to a no-op on a QEMU without the parameter.
 */
export async function governSwitchoverBandwidth(
  qmp: QmpClient,
  sample: () => { deliveredBytes: number; logicalBytes: number } | null,
  downtimeLimitMs: number,
  log: { debug(obj: object, msg: string): void },
): Promise<() => void> {
  if (!(await hasMigrationParameter(qmp, "avail-switchover-bandwidth"))) return () => {};
  // A value left by an earlier migration (or an agent that crashed mid-way) must not leak.
  await migrateSetParameters(qmp, { "avail-switchover-bandwidth": 0 });
  const samples: RelaySample[] = [];
  let current: number | null = null;
  const loop = new WakeableLoop({
    intervalMs: TICK_MS,
    runAtStart: false,
    ref: false,
    // QEMU gone or the migration over: the next pass (if any) tries again.
    onError: (err) => log.debug({ err: describeError(err) }, "setting avail-switchover-bandwidth failed"),
    pass: async () => {
      const s = sample();
      if (!s) return;
      const now = performance.now();
      samples.push({ atMs: now, ...s });
      while (samples.length > 2 && samples[0]!.atMs < now - RATE_WINDOW_MS - TICK_MS) samples.shift();
      const next = switchoverBandwidth({
        deliveredRateBps: deliveredRate(samples),
        inFlightBytes: s.logicalBytes - s.deliveredBytes,
        downtimeLimitMs,
      });
      if (next === null || !worthSending(current, next)) return;
      await migrateSetParameters(qmp, { "avail-switchover-bandwidth": next });
      current = next;
    },
  });
  loop.start();
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    // Best effort, after the pass in flight: after a completed migration this QEMU is on its way out.
    void loop.stop().then(() => {
      if (current !== null) migrateSetParameters(qmp, { "avail-switchover-bandwidth": 0 }).catch(() => {});
    });
  };
}
