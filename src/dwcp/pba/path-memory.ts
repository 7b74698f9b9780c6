/**
 * What each path last sustained (docs/dwcp.md §9.4): per peer, the stream count, the
 * capacity the sender measured while network-bound, PBA's prediction and its error, the
 * mode and the zstd level, so that the next session to that peer starts from them instead
 * of probing up from a guess. Kept in one small JSON file (written whole, then renamed),
 * at most `maxPeers` entries, each forgotten after `maxAgeMs`; a file that does not parse
 * is ignored (the next session measures afresh), never trusted in part.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { Modes } from "../mode.js";

export const RememberedPath = Type.Object({
  mode: Type.Union(Modes.map((m) => Type.Literal(m))),
  streams: Type.Integer({ minimum: 1, maximum: 256 }),
  /**
   * Bytes/s the sender got through while the network was its bottleneck (`networkBound`),
   * else the best interval's goodput: only a lower bound (a capped or short transfer).
   */
  capacityBps: Type.Number({ exclusiveMinimum: 0 }),
  networkBound: Type.Boolean(),
  /** PBA's last prediction (bytes/s) and its mean absolute percentage error. */
  predictedBps: Type.Union([Type.Number({ minimum: 0 }), Type.Null()]),
  mape: Type.Union([Type.Number({ minimum: 0 }), Type.Null()]),
  level: Type.Integer({ minimum: 0, maximum: 22 }),
  /** The path's minimum RTT then: a path whose RTT changed much is another path. */
  rttMs: Type.Number({ minimum: 0 }),
  /** When it was measured (epoch ms). */
  at: Type.Number(),
});
export type RememberedPath = Static<typeof RememberedPath>;

const FileFormat = Type.Object({
  version: Type.Literal(1),
  peers: Type.Record(Type.String({ maxLength: 300 }), RememberedPath),
});

/** Options. */
export interface PathMemoryOptions {
  /** @defaultValue 256 */
  maxPeers?: number;
  /** @defaultValue 7 days */
  maxAgeMs?: number;
}

/** The remembered paths of one host, optionally persisted in `file`. */
export class PathMemory {
  private readonly peers = new Map<string, RememberedPath>();
  private readonly maxPeers: number;
  private readonly maxAgeMs: number;

  /** Why the file was ignored when loaded, if it was. */
  readonly loadError: string | null = null;

  constructor(
    private readonly file: string | null,
    o: PathMemoryOptions = {},
  ) {
    this.maxPeers = o.maxPeers ?? 256;
    this.maxAgeMs = o.maxAgeMs ?? 7 * 24 * 3600 * 1000;
    if (!file) return;
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      return; // no file yet
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (!Value.Check(FileFormat, parsed)) throw new Error("not a path memory file (version 1)");
      const entries = Object.entries(parsed.peers).sort((a, b) => a[1].at - b[1].at);
      for (const [peer, p] of entries.slice(-this.maxPeers)) this.peers.set(peer, p);
    } catch (err) {
      this.loadError = `${file}: ${err instanceof Error ? err.message : String(err)}`;
    }
  }

  /** What `peer`'s path last sustained, unless too old. */
  recall(peer: string, now = Date.now()): RememberedPath | undefined {
    const p = this.peers.get(peer);
    if (!p) return undefined;
    if (now - p.at > this.maxAgeMs) {
      this.peers.delete(peer);
      return undefined;
    }
    return p;
  }

  /**
   * Records what `peer`'s path sustained, dropping the oldest peer beyond `maxPeers`. A
   * lower bound (not network-bound) does not replace a larger capacity remembered: a
   * transfer capped by its user says nothing about the path.
   */
  remember(peer: string, p: RememberedPath): void {
    if (!Value.Check(RememberedPath, p)) return;
    const prev = this.recall(peer, p.at);
    if (prev && !p.networkBound && prev.capacityBps > p.capacityBps)
      p = { ...p, capacityBps: prev.capacityBps, networkBound: prev.networkBound };
    this.peers.delete(peer);
    this.peers.set(peer, p);
    while (this.peers.size > this.maxPeers) this.peers.delete(this.peers.keys().next().value!);
    this.save();
  }

  get size(): number {
    return this.peers.size;
  }

  private save(): void {
    if (!this.file) return;
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify({ version: 1, peers: Object.fromEntries(this.peers) }));
    renameSync(tmp, this.file);
  }
}
