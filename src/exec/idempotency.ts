/**
 * Idempotent submission: each execution gets a key — the client's, or a hash of the
 * canonical plan plus tenant and actor — and a duplicate within the window returns the
 * execution the key already names instead of starting a second run. The claim on the key
 * is an INSERT … ON CONFLICT in the submitting transaction, so two concurrent duplicates
 * serialise on the key's row and exactly one execution exists (cluster/store/exec-idempotency.ts).
 */
import { createHash } from "node:crypto";

/** JSON with object keys sorted at every level: equal plans give equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** The key of a submission. A client key is scoped to tenant and actor too. */
export function idempotencyKey(input: {
  plan: unknown;
  tenant: string;
  actor: string;
  clientKey?: string | undefined;
}): string {
  const h = createHash("sha256");
  if (input.clientKey !== undefined) h.update(`client\0${input.tenant}\0${input.actor}\0${input.clientKey}`);
  else h.update(`plan\0${input.tenant}\0${input.actor}\0${canonicalJson(input.plan)}`);
  return `sha256:${h.digest("hex")}`;
}
