/**
 * The HA part of a heartbeat reply (lease, storage pools, leftover copies to release),
 * checked field by field: anything malformed is dropped, so a bad field can neither
 * extend a lease nor release a VM.
 */
import type { AgentHeartbeatReply } from "../api/types/agent.js";

/** The HA fields of a reply, as far as they are well formed. */
export type HaReply = Pick<AgentHeartbeatReply, "lease" | "storagePools" | "release">;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const isInt = (v: unknown, min: number): v is number => Number.isInteger(v) && (v as number) >= min;

/** Parses the HA fields of a heartbeat reply. */
export function parseHaReply(reply: unknown): HaReply {
  if (typeof reply !== "object" || reply === null) return {};
  const r = reply as Record<string, unknown>;
  const out: HaReply = {};
  const lease = r.lease as Record<string, unknown> | undefined;
  if (lease && isInt(lease.durationMs, 1000) && isInt(lease.selfFenceAfterMs, 500))
    out.lease = { durationMs: lease.durationMs, selfFenceAfterMs: lease.selfFenceAfterMs };
  if (Array.isArray(r.storagePools))
    out.storagePools = r.storagePools
      .slice(0, 256)
      .filter(
        (p): p is { id: string; path: string } =>
          typeof p?.id === "string" &&
          UUID.test(p.id) &&
          typeof p.path === "string" &&
          p.path.startsWith("/"),
      )
      .map((p) => ({ id: p.id, path: p.path }));
  if (Array.isArray(r.release))
    out.release = r.release
      .slice(0, 1024)
      .filter(
        (x): x is { id: string; fence: { owner: string; epoch: number } } =>
          typeof x?.id === "string" &&
          UUID.test(x.id) &&
          typeof x.fence?.owner === "string" &&
          UUID.test(x.fence.owner) &&
          isInt(x.fence.epoch, 1),
      )
      .map((x) => ({ id: x.id, fence: { owner: x.fence.owner, epoch: x.fence.epoch } }));
  return out;
}
