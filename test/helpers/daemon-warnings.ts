/**
 * What the fault suites print when a case goes wrong: each daemon's last warnings and
 * errors, so that a failing run says what the processes saw.
 */
import type { TestCluster } from "./cluster.js";

/** A daemon to report on: a label, its cluster, its daemon name ("server" or an agent's). */
export type WatchedDaemon = [label: string, cluster: TestCluster, daemon: string];

/** Prints each daemon's last `lines` warnings and errors. */
export function printDaemonWarnings(daemons: WatchedDaemon[], lines = 20): void {
  const out: string[] = [];
  for (const [label, c, d] of daemons)
    out.push(
      label,
      ...c
        .daemonLog(d)
        .filter((l) => /"level":(40|50)|warn|error/i.test(l))
        .slice(-lines),
    );
  console.log(out.join("\n"));
}

/** The migration's end on `c`; the daemons' warnings are printed when it did not complete. */
export async function migrationEnd<T extends { state: string }>(
  c: TestCluster,
  id: string,
  timeoutMs: number,
  daemons: WatchedDaemon[],
): Promise<T> {
  try {
    const m = await c.waitMigrationEnd<T>(id, timeoutMs);
    if (m.state !== "completed") printDaemonWarnings(daemons);
    return m;
  } catch (err) {
    printDaemonWarnings(daemons);
    throw err;
  }
}
