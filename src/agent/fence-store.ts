/**
 * The fencing tokens an agent holds, one per VM id, in `<data dir>/fences/<vm-id>.json`
 * (docs/agent-protocol.md). Outside the VM's own directory on purpose: a released or
 * deleted VM's directory goes, and a late request with its old token must still be
 * refused. Each file is written to a temporary name, flushed and renamed, so a crash
 * leaves the old token or the new one, never a torn file; a token is on disk before the
 * request that raised it is answered or acted on. The files are tiny and never removed.
 *
 * The judgement is the pure agent/fence.ts; this module keeps its input (the held tokens
 * and the agent's own cluster id) and applies its outcome.
 */
import { mkdir, open, readdir, readFile, rename } from "node:fs/promises";
import path from "node:path";
import type { FenceToken } from "../api/types/agent.js";
import { NovaError } from "../lib/errors.js";
import { type FenceIntent, type FenceVerdict, fenceRefusalText, judgeFence, judgeOwnStart } from "./fence.js";

/** Fence store options. */
export interface FenceStoreOptions {
  dataDir: string;
  /**
   * How long a request that would run a VM waits for the agent to learn its cluster id
   * (at its first registration after start) before it is refused. @defaultValue 10000
   */
  ownClusterWaitMs?: number;
  /** Told of every refusal, by its kind (agent-metrics.ts counts them). */
  onRefusal?: (refusal: string) => void;
}

const VM_ID = /^[0-9a-f-]{36}$/;

/** The tokens held for this host's VMs, and its own cluster id. */
export class FenceStore {
  readonly dir: string;
  private readonly held = new Map<string, FenceToken>();
  /** Per VM: the write in flight, so writes land in the order the tokens rose. */
  private readonly writes = new Map<string, Promise<void>>();
  private own: string | undefined;
  private ownKnown: () => void = () => {};
  private readonly ownLearned: Promise<void>;
  private readonly ownClusterWaitMs: number;
  private readonly onRefusal: (refusal: string) => void;

  constructor(o: FenceStoreOptions) {
    this.dir = path.join(o.dataDir, "fences");
    this.onRefusal = o.onRefusal ?? (() => {});
    this.ownClusterWaitMs = o.ownClusterWaitMs ?? 10_000;
    this.ownLearned = new Promise((resolve) => {
      this.ownKnown = resolve;
    });
  }

  /** Loads the held tokens. A file that cannot be read is skipped (it was never renamed into place). */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const f of await readdir(this.dir)) {
      const id = f.endsWith(".json") ? f.slice(0, -5) : "";
      if (!VM_ID.test(id)) continue;
      try {
        const t = JSON.parse(await readFile(path.join(this.dir, f), "utf8")) as FenceToken;
        if (typeof t.owner === "string" && Number.isInteger(t.epoch) && t.epoch >= 1)
          this.held.set(id, { owner: t.owner, epoch: t.epoch });
      } catch {
        // unreadable: as if absent (a token is only trusted once renamed into place)
      }
    }
  }

  /** The agent's own cluster (from its server's registration reply); wakes waiting requests. */
  setOwnCluster(id: string): void {
    this.own = id;
    this.ownKnown();
  }

  /** The agent's own cluster id, once known. */
  get ownCluster(): string | undefined {
    return this.own;
  }

  /** The token held for a VM, if any. */
  heldFor(vmId: string): FenceToken | undefined {
    return this.held.get(vmId);
  }

  /**
   * Judges a request carrying `got` for VM `vmId`: keeps a newer token (on disk before
   * returning), then throws NOVA_ACP_FENCED when the request is refused. Returns the token
   * held afterwards.
   */
  async admit(vmId: string, got: FenceToken, intent: FenceIntent): Promise<FenceToken | undefined> {
    checkId(vmId);
    if (intent === "run" && this.own === undefined) await this.waitOwnCluster();
    const verdict = judgeFence({ held: this.held.get(vmId), got, ownCluster: this.own, intent });
    const before = this.held.get(vmId);
    if (verdict.changed && verdict.hold) {
      this.held.set(vmId, verdict.hold);
      await this.write(vmId);
    }
    if (verdict.refusal) throw this.fenced(vmId, verdict, before, got);
    return verdict.hold;
  }

  /**
   * Throws NOVA_ACP_FENCED unless the agent may start or resume VM `vmId` on its own: it
   * holds a token for it that names its own cluster.
   */
  checkOwnStart(vmId: string): void {
    const held = this.held.get(vmId);
    const verdict = judgeOwnStart(held, this.own);
    if (verdict.refusal) throw this.fenced(vmId, verdict, held, undefined);
  }

  private fenced(
    vmId: string,
    verdict: FenceVerdict,
    before: FenceToken | undefined,
    got: FenceToken | undefined,
  ): NovaError {
    const refusal = verdict.refusal ?? "other-owner";
    this.onRefusal(refusal);
    return new NovaError(
      "NOVA_ACP_FENCED",
      `Refused to start or resume VM ${vmId}: ${fenceRefusalText(refusal, verdict.hold, got, this.own)}.`,
      {
        details: {
          vm: vmId,
          refusal,
          held: verdict.hold ?? null,
          heldBefore: before ?? null,
          got: got ?? null,
          ownCluster: this.own ?? null,
        },
        // Only the agent not knowing its cluster yet passes with time.
        ...(refusal === "unknown-cluster" ? { retryable: true } : {}),
      },
    );
  }

  private async waitOwnCluster(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.ownLearned,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.ownClusterWaitMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }

  /** Writes the VM's held token after any write in flight for it (the newest wins, in order). */
  private write(vmId: string): Promise<void> {
    const previous = this.writes.get(vmId) ?? Promise.resolve();
    const next = previous
      .catch(() => {})
      .then(async () => {
        const token = this.held.get(vmId);
        if (!token) return;
        await mkdir(this.dir, { recursive: true, mode: 0o700 });
        const file = path.join(this.dir, `${vmId}.json`);
        const tmp = `${file}.tmp`;
        const fh = await open(tmp, "w", 0o600);
        try {
          await fh.writeFile(`${JSON.stringify(token)}\n`);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(tmp, file);
      });
    this.writes.set(vmId, next);
    const forget = () => {
      if (this.writes.get(vmId) === next) this.writes.delete(vmId);
    };
    next.then(forget, forget);
    return next;
  }
}

function checkId(vmId: string): void {
  if (!VM_ID.test(vmId)) throw new NovaError("NOVA_BAD_REQUEST", `Invalid VM id ${vmId}`);
}
