/**
 * Entry point of an HA VM's fence watchdog process (fence-watchdog.ts):
 * `node fence-watchdog-main.js <lease file> <vm dir>`. Started detached by the agent, so
 * it outlives the agent; exits once its QEMU is killed or gone.
 */
import { runWatchdog } from "./fence-watchdog.js";

const [leaseFile, vmDir] = process.argv.slice(2);
if (!leaseFile || !vmDir) {
  process.stderr.write("usage: fence-watchdog-main.js <lease file> <vm dir>\n");
  process.exit(2);
}
runWatchdog({ leaseFile, vmDir }).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`fence watchdog failed: ${String(err)}\n`);
    process.exit(1);
  },
);
