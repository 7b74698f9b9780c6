/**
 * Small host-side facts about a VM's QEMU that survive an agent restart: the pidfile,
 * whether a pid is still *our* QEMU (PIDs get reused, so /proc/<pid>/cmdline must carry
 * the VM's UUID), stale run files, and the tail of qemu.log for error messages.
 */
import { open, readFile, rm, stat } from "node:fs/promises";
import { logTailLines } from "./exit-reason.js";

function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as NodeJS.ErrnoException).code === code;
}

/** The pid in a QEMU pidfile, or undefined when the file is missing or unreadable as a pid. */
export async function readPidfile(pidfile: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(pidfile, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
}

/**
 * True when `pid` is a live (not zombie) process whose argv contains `vmId` as a whole
 * argument — i.e. the QEMU we started for this VM and not a process that reused the pid.
 */
export async function isQemuFor(pid: number, vmId: string): Promise<boolean> {
  try {
    const statText = await readFile(`/proc/${pid}/stat`, "utf8");
    // The state letter follows the last ')' (the command name may itself contain ')').
    const state = statText.slice(statText.lastIndexOf(")") + 2, statText.lastIndexOf(")") + 3);
    if (state === "Z" || state === "X" || state === "x") return false;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return cmdline.split("\u0000").includes(vmId);
  } catch (err) {
    if (isErrno(err, "ENOENT") || isErrno(err, "ESRCH")) return false;
    throw err;
  }
}

/** Removes files, ignoring those already gone. */
export async function removeFiles(...paths: string[]): Promise<void> {
  await Promise.all(paths.map((p) => rm(p, { force: true })));
}

/** Current size of a file, 0 when it does not exist. */
export async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return 0;
    throw err;
  }
}

/** Reading more than this from the end of a log is never needed for a few lines. */
const TAIL_WINDOW_BYTES = 8192;

/** The last `max` meaningful lines of `path` written after byte `fromOffset`. */
export async function readLogTail(path: string, fromOffset: number, max = 5): Promise<string[]> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "r");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return [];
    throw err;
  }
  try {
    const { size } = await handle.stat();
    const start = Math.max(fromOffset, size - TAIL_WINDOW_BYTES, 0);
    if (start >= size) return [];
    const buf = Buffer.alloc(size - start);
    await handle.read(buf, 0, buf.length, start);
    return logTailLines(buf.toString("utf8"), max);
  } finally {
    await handle.close();
  }
}
