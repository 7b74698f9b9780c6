/**
 * The publisher (docs/federation.md §2): turns what this cluster owns (its hosts, VMs and
 * images, and a summary of itself) into signed ASS records. Each pass diffs the wanted
 * bodies against the records last published and signs only what changed, so an idle
 * cluster publishes nothing; a thing that is gone gets a tombstone. One transaction per
 * pass, with the sequence row locked, so replicas sharing a database never reuse a version.
 */
import type { KeyObject } from "node:crypto";
import type { Logger } from "pino";
import { ownedState, ownRecordIndex, putRecords, takeVersions } from "../cluster/store/federation.js";
import type { Store } from "../cluster/store/store.js";
import { NovaError } from "../lib/errors.js";
import { canonicalBody, type RecordKind, type SignedRecord, signRecord } from "./records.js";

/** What the cluster says about itself in its `cluster` record. */
export interface ClusterSummary {
  name: string;
  apiUrl: string;
  federation: string;
  protocol: number;
  softwareVersion: string;
}

/** Publishes this cluster's records. */
export class Publisher {
  constructor(
    private readonly store: Store,
    private readonly self: string,
    private readonly key: KeyObject,
    private readonly summary: () => ClusterSummary,
    private readonly log: Logger,
  ) {}

  /** One pass: signs and stores what changed; returns the records written. */
  async publish(): Promise<SignedRecord[]> {
    return this.store.write(async (tx) => {
      // Lock the sequence first: a concurrent pass (another replica) waits, then sees our records.
      await tx.query("SELECT seq FROM cluster_info FOR UPDATE");
      const wanted = await ownedState(tx);
      wanted.set(`cluster/${this.self}`, { ...this.summary() });
      const held = await ownRecordIndex(tx, this.self);
      const changes: { key: string; body: Record<string, unknown> | null }[] = [];
      for (const [key, body] of wanted) {
        const h = held.get(key);
        if (!h || h.deleted || h.bodyJson !== canonicalBody(body)) changes.push({ key, body });
      }
      for (const [key, h] of held) if (!h.deleted && !wanted.has(key)) changes.push({ key, body: null });
      if (changes.length === 0) return [];
      let version = await takeVersions(tx, changes.length);
      const issuedAt = new Date().toISOString();
      const written: SignedRecord[] = [];
      for (const c of changes) {
        const slash = c.key.indexOf("/");
        const kind = c.key.slice(0, slash) as RecordKind;
        const id = c.key.slice(slash + 1);
        let record: SignedRecord;
        try {
          record = signRecord(
            { origin: this.self, kind, id, version, deleted: c.body === null, body: c.body, issuedAt },
            this.key,
          );
        } catch (err) {
          // One oversized thing must not stop the rest from being published.
          if (err instanceof NovaError && err.code === "NOVA_FED_RECORD_TOO_LARGE") {
            this.log.error({ err, kind, id }, "not published: record too large");
            continue;
          }
          throw err;
        }
        written.push(record);
        version++;
      }
      // A skipped oversized record leaves a gap in the sequence: harmless, versions need not be dense.
      await putRecords(
        tx,
        written.map((record) => ({ record, bodyJson: canonicalBody(record.body) })),
      );
      return written;
    });
  }
}
