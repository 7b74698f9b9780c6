/**
 * The state sets the console groups by. Typed against the wire unions (which src/states/
 * defines), so a renamed state fails the typecheck; not imported from src/states at run
 * time, which would bundle the server's error registry into the page.
 */
import type { Execution } from "../api/types/executions.js";
import type { Migration } from "../api/types/migrations.js";

/** Migrations that have ended. */
export const FINAL_MIGRATION: ReadonlySet<string> = new Set<Migration["state"]>([
  "completed",
  "failed",
  "cancelled",
]);

/** Executions not yet ended: waiting, queued or running. */
export const ACTIVE_EXECUTION: ReadonlySet<string> = new Set<Execution["state"]>([
  "pending_approval",
  "approved",
  "queued",
  "running",
]);
