/**
 * A running wanem process and its command channel (stdin commands, one stdout line each),
 * shared by the two-site link (link.ts) and the star (star.ts). Dev-only test tooling.
 */
import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { NovaError } from "../../lib/errors.js";

/** A running wanem process and its command channel. */
export class Emulator {
  private lines: ((line: string) => void)[] = [];

  constructor(readonly proc: ChildProcess) {
    if (proc.stdout) createInterface({ input: proc.stdout }).on("line", (l) => this.lines.shift()?.(l));
  }

  command(line: string): Promise<string> {
    const stdin = this.proc.stdin;
    if (!stdin || this.proc.exitCode !== null)
      return Promise.reject(new NovaError("NOVA_DWCP_EMULATOR", "wanem is not running"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new NovaError("NOVA_DWCP_EMULATOR", `wanem did not answer "${line}"`)),
        5000,
      );
      this.lines.push((l) => {
        clearTimeout(timer);
        resolve(l);
      });
      stdin.write(`${line}\n`);
    });
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once("exit", r));
    this.proc.stdin?.end();
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 2000);
    await exited;
    clearTimeout(t);
  }
}
