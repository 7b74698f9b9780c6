/**
 * Turns what we know about a finished QEMU (exit code or signal when it was our child, the
 * reason of QEMU's last SHUTDOWN event, whether we asked for the stop, the tail of
 * qemu.log) into one sentence a user can act on and an `expected` flag. Pure.
 */

/** How and why a QEMU process ended. */
export interface QemuExit {
  /** One sentence for users and logs, e.g. "guest powered off (guest-shutdown)". */
  reason: string;
  /** True when we asked for the stop (stop/kill) or the guest shut itself down. */
  expected: boolean;
  /** The `reason` of QEMU's SHUTDOWN event, when one arrived (e.g. "guest-shutdown", "host-qmp-quit"). */
  shutdownReason?: string;
  /** Exit code, when QEMU was our child and exited normally. */
  code?: number | null;
  /** Terminating signal name, when QEMU was our child and was killed. */
  signal?: string | null;
}

/** The facts describeExit works from. */
export interface ExitFacts {
  pid: number;
  /** True when QEMU was spawned by this process, so its exit code/signal are known. */
  child: boolean;
  code?: number | null;
  signal?: string | null;
  shutdownReason?: string;
  /** What we asked for, if anything. */
  requested?: "stop" | "kill";
  /** Last meaningful qemu.log line written by this run, if any. */
  lastLogLine?: string;
}

/** Builds the user-facing exit description. */
export function describeExit(f: ExitFacts): QemuExit {
  const requested = f.requested !== undefined;
  const base: Pick<QemuExit, "shutdownReason" | "code" | "signal"> = {};
  if (f.shutdownReason !== undefined) base.shutdownReason = f.shutdownReason;
  if (f.child) {
    base.code = f.code ?? null;
    base.signal = f.signal ?? null;
  }
  const logSuffix = f.lastLogLine ? `: ${f.lastLogLine}` : "";

  switch (f.shutdownReason) {
    case undefined:
      break;
    case "guest-shutdown":
      return { ...base, reason: "guest powered off (guest-shutdown)", expected: true };
    case "guest-panic":
      return { ...base, reason: "guest kernel panicked (guest-panic)", expected: false };
    case "host-qmp-quit":
      return requested
        ? { ...base, reason: "QEMU quit on request (host-qmp-quit)", expected: true }
        : {
            ...base,
            reason: "QEMU quit on a QMP request NovaCron did not make (host-qmp-quit)",
            expected: false,
          };
    case "host-signal":
      // QEMU logs "terminating on signal N from pid P (cmd)", which names the sender.
      return requested
        ? { ...base, reason: "QEMU stopped by a signal on request (host-signal)", expected: true }
        : { ...base, reason: `QEMU was terminated by a signal (host-signal)${logSuffix}`, expected: false };
    default:
      return { ...base, reason: `QEMU shut down (${f.shutdownReason})`, expected: requested };
  }

  if (f.child) {
    if (f.signal) {
      return requested
        ? { ...base, reason: `QEMU was killed by ${f.signal} on request`, expected: true }
        : { ...base, reason: `QEMU was killed by ${f.signal}`, expected: false };
    }
    if (typeof f.code === "number" && f.code !== 0) {
      return { ...base, reason: `QEMU exited with code ${f.code}${logSuffix}`, expected: false };
    }
    return { ...base, reason: `QEMU exited with code ${f.code ?? 0}`, expected: requested };
  }
  // Not our child: the kernel tells only the parent how a process ended.
  return requested
    ? { ...base, reason: `QEMU process ${f.pid} was stopped on request`, expected: true }
    : { ...base, reason: `QEMU process ${f.pid} exited unexpectedly${logSuffix}`, expected: false };
}

/** QEMU's `-msg timestamp=on` prefix, stripped so messages read cleanly. */
const TIMESTAMP_PREFIX_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z\s+/;

/** The non-empty lines of a qemu.log excerpt, without timestamp prefixes, last `max` only. */
export function logTailLines(text: string, max: number): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.replace(TIMESTAMP_PREFIX_RE, "").trim())
    .filter((line) => line.length > 0)
    .slice(-max);
}
