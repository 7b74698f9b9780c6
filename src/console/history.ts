/**
 * useSampleHistory: a migration's stored progress history (GET
 * /v1/migrations/{id}/samples), loaded when a chart opens and again when the migration
 * ends (its last samples), and after the event stream resumed from a gap.
 */
import { useEffect, useState } from "react";
import type { MigrationSample, MigrationSampleList } from "../api/types/migrations.js";
import { api } from "./api/client.js";
import { subscribe } from "./api/events.js";

/** The samples (empty until loaded, or when loading failed: the live readings still draw). */
export function useSampleHistory(migrationId: string, finished: boolean): readonly MigrationSample[] {
  const [samples, setSamples] = useState<readonly MigrationSample[]>([]);
  const [resyncs, setResyncs] = useState(0);
  useEffect(() => subscribe((e) => e.type === "resync" && setResyncs((n) => n + 1)), []);
  // biome-ignore lint/correctness/useExhaustiveDependencies: finished and resyncs say when to reload.
  useEffect(() => {
    let current = true;
    api<MigrationSampleList>("GET", `/v1/migrations/${encodeURIComponent(migrationId)}/samples`).then(
      (r) => current && setSamples(r.samples),
      () => {},
    );
    return () => {
      current = false;
    };
  }, [migrationId, finished, resyncs]);
  return samples;
}
