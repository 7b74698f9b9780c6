/**
 * The fence watchdog of one HA VM: a small process of its own (fence-watchdog-main.ts),
 * started by the agent next to the VM's QEMU, that kills that QEMU once the agent's HA
 * lease (ha-lease.ts) has run out unrenewed. A process of its own because it must act when
 * the agent cannot: an agent killed with SIGKILL leaves its QEMUs running, and a host cut
 * off from the server may have an agent stuck in a call. It depends on nothing but the
 * lease file and the monotonic clock: no network, no agent.
 *
 * When it kills, it writes `<vm dir>/fenced.json` (when, and the deadline it acted on)
 * before it exits; the agent reports it (`ha.fenced`) and never starts the VM again by
 * itself. It exits too when the QEMU is gone (stopped, released, deleted).
 */
import { open, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { monoNowMs, readLeaseFile } from "./ha-lease.js";

/** What the watchdog does on one tick. */
export type WatchdogStep = "wait" | "kill" | "exit";

/**
 * One tick's decision: with the QEMU gone there is nothing to guard; with no lease, or
 * one whose deadline has passed, the QEMU must die; otherwise wait. The agent starts the
 * watchdog before QEMU (so no QEMU ever runs unguarded, even if the agent dies right after
 * launching it): until the watchdog has seen its QEMU, a missing one means "not started
 * yet", waited for until the lease's end.
 */
export function watchdogStep(
  nowMonoMs: number,
  fenceAtMonoMs: number | undefined,
  qemuAlive: boolean,
  seenQemu = true,
): WatchdogStep {
  const expired = fenceAtMonoMs === undefined || nowMonoMs >= fenceAtMonoMs;
  if (!qemuAlive) return seenQemu || expired ? "exit" : "wait";
  return expired ? "kill" : "wait";
}

/** The record of a kill, in `<vm dir>/fenced.json`. */
export interface FencedRecord {
  /** Wall clock of the kill. */
  at: string;
  /** CLOCK_MONOTONIC ms of the kill. */
  atMonoMs: number;
  /** The deadline it acted on (undefined: no lease file). */
  fenceAtMonoMs: number | null;
  pid: number;
}

/** The file a watchdog writes when it killed its VM. */
export const FENCED_FILE = "fenced.json";

/** Watchdog options. */
export interface WatchdogOptions {
  /** The agent's lease file. */
  leaseFile: string;
  /** The VM's run dir (its pidfile `qemu.pid`; `fenced.json` is written here). */
  vmDir: string;
  /** @defaultValue 200 */
  pollMs?: number;
  /** Gives up when its QEMU has not appeared within this long (its launch failed). @defaultValue 60000 */
  startGraceMs?: number;
}

/** Runs until the QEMU is gone or killed; returns what happened. */
export async function runWatchdog(o: WatchdogOptions): Promise<"killed" | "gone"> {
  const pollMs = o.pollMs ?? 200;
  await writeFile(path.join(o.vmDir, "watchdog.pid"), `${process.pid}\n`).catch(() => {});
  let seen = false;
  const startedAt = monoNowMs();
  for (;;) {
    const pid = await qemuPid(o.vmDir);
    if (pid !== undefined) seen = true;
    else if (!seen && monoNowMs() - startedAt > (o.startGraceMs ?? 60_000)) return "gone";
    const lease = await readLeaseFile(o.leaseFile);
    const now = monoNowMs();
    const step = watchdogStep(now, lease?.fenceAtMonoMs, pid !== undefined, seen);
    if (step === "exit") return "gone";
    if (step === "kill") {
      try {
        process.kill(pid!, "SIGKILL");
      } catch {
        return "gone";
      }
      const record: FencedRecord = {
        at: new Date().toISOString(),
        atMonoMs: now,
        fenceAtMonoMs: lease?.fenceAtMonoMs ?? null,
        pid: pid!,
      };
      await writeFencedRecord(o.vmDir, record);
      return "killed";
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/**
 * The pid in the VM's pidfile when that process is alive and is the QEMU of this VM dir
 * (a qemu binary whose command line names the dir): a recycled pid is never killed.
 */
async function qemuPid(vmDir: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(path.join(vmDir, "qemu.pid"), "utf8")).trim());
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    const argv0 = path.basename(cmdline.split("\0")[0] ?? "");
    return argv0.startsWith("qemu") && cmdline.includes(vmDir) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes `<vm dir>/fenced.json` unless a kill is recorded already (the agent's own lease
 * timer and the watchdog may both fire; the first kill's time is the one that counts).
 */
export async function writeFencedRecord(vmDir: string, record: FencedRecord): Promise<void> {
  if (await readFencedRecord(vmDir)) return;
  const file = path.join(vmDir, FENCED_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(record)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

/** Reads a VM dir's kill record, if its watchdog killed it. */
export async function readFencedRecord(vmDir: string): Promise<FencedRecord | undefined> {
  try {
    return JSON.parse(await readFile(path.join(vmDir, FENCED_FILE), "utf8")) as FencedRecord;
  } catch {
    return undefined;
  }
}
