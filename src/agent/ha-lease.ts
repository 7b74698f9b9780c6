/**
 * The agent's HA lease (docs/agent-protocol.md, "The HA lease"). Each heartbeat reply
 * grants a lease; the agent counts it from the moment it SENT that heartbeat (earlier than
 * the server's record of it, so the agent's view always ends first) and writes the moment
 * its HA VMs must be dead — `sentAt + selfFenceAfterMs` on the CLOCK_MONOTONIC clock every
 * process of the host shares — to `<data dir>/ha-lease.json`. The fence watchdogs
 * (fence-watchdog.ts), separate processes that outlive a crashed agent, read it and kill
 * their VM's QEMU once it has passed. The agent starts an HA VM only under a current lease.
 */
import { open, readFile, rename } from "node:fs/promises";
import path from "node:path";
import type { AgentLease } from "../api/types/agent.js";

/** Milliseconds on CLOCK_MONOTONIC (the same clock for every process on the host, unaffected by clock steps). */
export function monoNowMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

/** What the lease file holds. */
export interface LeaseFile {
  /** CLOCK_MONOTONIC ms after which the HA VMs must not run. */
  fenceAtMonoMs: number;
  /** Wall clock of the same moment, for people reading the file. */
  fenceAt: string;
  /** The lease as granted. */
  lease: AgentLease;
}

/** The lease file's name in the agent's data dir. */
export const LEASE_FILE = "ha-lease.json";

/** When the HA VMs must be dead, for a lease granted in reply to a heartbeat sent at `sentAtMonoMs`. */
export function fenceDeadline(sentAtMonoMs: number, lease: AgentLease): number {
  return sentAtMonoMs + Math.min(lease.selfFenceAfterMs, lease.durationMs);
}

/** Reads the lease file (undefined when missing or unreadable: no lease). */
export async function readLeaseFile(file: string): Promise<LeaseFile | undefined> {
  try {
    const text = await readFile(file, "utf8");
    if (text.length > 4096) return undefined;
    const parsed = JSON.parse(text) as LeaseFile;
    return Number.isFinite(parsed.fenceAtMonoMs) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** The agent's lease: renewed by heartbeat replies, persisted for the watchdogs. */
export class HaLease {
  readonly file: string;
  private fenceAtMonoMs: number | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(dataDir: string) {
    this.file = path.join(dataDir, LEASE_FILE);
  }

  /** Loads a lease an earlier agent process wrote (it may still be current). */
  async init(): Promise<void> {
    this.fenceAtMonoMs = (await readLeaseFile(this.file))?.fenceAtMonoMs;
  }

  /** The monotonic deadline, if any lease was ever granted. */
  get deadline(): number | undefined {
    return this.fenceAtMonoMs;
  }

  /** True while HA VMs may run (with `slackMs` to spare). */
  current(slackMs = 0): boolean {
    return this.fenceAtMonoMs !== undefined && monoNowMs() + slackMs < this.fenceAtMonoMs;
  }

  /**
   * Renews the lease granted in reply to a heartbeat sent at `sentAtMonoMs`; on disk
   * before it returns. A deadline never moves backwards (a reply reordered behind a newer
   * one cannot shorten it to less than it is, nor lengthen it beyond what was granted).
   */
  renew(sentAtMonoMs: number, lease: AgentLease): Promise<void> {
    const deadline = fenceDeadline(sentAtMonoMs, lease);
    if (this.fenceAtMonoMs !== undefined && deadline <= this.fenceAtMonoMs) return this.writing;
    this.fenceAtMonoMs = deadline;
    const body: LeaseFile = {
      fenceAtMonoMs: deadline,
      fenceAt: new Date(Date.now() + (deadline - monoNowMs())).toISOString(),
      lease,
    };
    this.writing = this.writing
      .catch(() => {})
      .then(async () => {
        const tmp = `${this.file}.tmp`;
        const fh = await open(tmp, "w", 0o600);
        try {
          await fh.writeFile(`${JSON.stringify(body)}\n`);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(tmp, this.file);
      });
    return this.writing;
  }

  /** Waits (up to `timeoutMs`, checking every 200 ms) for a current lease; true when there is one. */
  async waitCurrent(timeoutMs: number, slackMs = 1000): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (!this.current(slackMs)) {
      if (Date.now() >= until) return false;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return true;
  }
}
