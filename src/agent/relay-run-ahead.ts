/**
 * How far the memory relay may run ahead of the destination QEMU during a DWCP migration
 * (relay-source.ts, `maxInFlightBytes`), from what the source QEMU reports.
 *
 * Why it changes: the relay reads from QEMU only while its backlog (stream bytes read but
 * not yet written into the destination QEMU) is under the bound, so the bound divided by
 * the time a byte takes through the relay (encoding, the send queue, the link, decoding)
 * caps the stream's rate. During QEMU's first pass, which carries nearly all of the memory,
 * a bound of 8 MiB held the cold migration of the bench guest to about 20 MiB/s of stream
 * while the link had room (docs/benchmarks.md, issue 13). But whatever is buffered when QEMU
 * stops the guest crosses during the downtime, and QEMU cannot see it. So the bound is
 * large while much is left of the first pass, shrinks with what is left, and stays small
 * from the second pass on, when QEMU may decide to stop at any dirty-bitmap sync.
 */
import { queryMigration } from "../compute/qemu/migration.js";
import type { QmpClient } from "../compute/qemu/qmp.js";
import { describeError } from "../lib/errors.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";

const MiB = 1024 * 1024;
/**
 * The bound while QEMU is near its decision. Measured on the emulated wan before this
 * module (256 MiB guest, cold): 4 MiB 4.8 s, 8 MiB 3.0-3.9 s, 16 MiB 3.0 s, with downtime
 * growing with it as QEMU's bandwidth estimate counts the buffer (298-630 ms at 8 MiB,
 * 423-485 ms at 16 MiB); a fixed 24 MiB took 6.6 and 7.5 s for the 1 GiB bench guest, the
 * second with 641 ms of downtime, 432 ms of it the backlog (docs/benchmarks.md).
 */
export const RUN_AHEAD_MIN = 8 * MiB;
/** The bound while most of the first pass is still to come. */
export const RUN_AHEAD_MAX = 32 * MiB;
const TICK_MS = 250;

/**
 * The relay's bound for QEMU's pass (dirty-sync-count: 1 during the first) and the bytes
 * it says remain: RUN_AHEAD_MAX early in the first pass, the remaining bytes towards its
 * end (never below RUN_AHEAD_MIN), RUN_AHEAD_MIN from the second pass on.
 */
export function runAheadFor(pass: number, remainingBytes: number): number {
  if (pass >= 2) return RUN_AHEAD_MIN;
  return Math.min(RUN_AHEAD_MAX, Math.max(RUN_AHEAD_MIN, remainingBytes));
}

/** What the governor changes: the memory relay of one migration. */
export interface RunAheadTarget {
  readonly maxInFlightBytes: number;
  setMaxInFlight(bytes: number): void;
}

/**
 * Keeps the relay's bound at runAheadFor(QEMU's pass and remaining bytes) until stopped or
 * the migration leaves pre-copy. Returns the stop function.
 */
export function governRunAhead(
  qmp: QmpClient,
  relay: RunAheadTarget,
  log: { debug(obj: object, msg: string): void },
): () => void {
  const loop: WakeableLoop = new WakeableLoop({
    intervalMs: TICK_MS,
    runAtStart: false,
    ref: false,
    onError: (err) =>
      log.debug({ err: describeError(err) }, "reading the migration for the relay's run-ahead failed"),
    pass: async () => {
      const m = await queryMigration(qmp);
      if (m.status !== "active" && m.status !== "setup") {
        // From the stop on only the bound that was set counts; later passes do not come.
        if (m.status !== "none") void loop.stop();
        return;
      }
      const next = runAheadFor(m.pass, m.remainingBytes);
      if (next !== relay.maxInFlightBytes) relay.setMaxInFlight(next);
    },
  });
  loop.start();
  return () => void loop.stop();
}
