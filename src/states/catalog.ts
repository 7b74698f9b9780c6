/**
 * Every persisted state machine and where it is stored. docs/states.md and the schema
 * test (test/state-machines.test.ts, which reads each column's CHECK constraint from the
 * database) are derived from this list, so a machine added here is documented and
 * checked against its table without further wiring.
 */
import { SESSION } from "../dwcp/amst/session-state.js";
import type { StateMachine } from "../lib/state-machine.js";
import { DRAIN, DRAIN_VM } from "./drain.js";
import { EXECUTION } from "./execution.js";
import { HANDOFF_SOURCE, HANDOFF_TARGET } from "./handoff.js";
import { JOB } from "./job.js";
import { MIGRATION } from "./migration.js";
import { PEER } from "./peer.js";
import { STEP } from "./step.js";
import { USER_MFA } from "./user-mfa.js";
import { VM } from "./vm.js";

/** A machine with the file that defines it and the column that stores it (if any). */
export interface CatalogEntry {
  machine: StateMachine<string>;
  /** The defining module, relative to src/. */
  source: string;
  /** `table.column`, or null for a machine that lives only in memory. */
  column: string | null;
}

/** The machines, in the order docs/states.md lists them. */
export const STATE_MACHINES: readonly CatalogEntry[] = [
  { machine: VM, source: "states/vm.ts", column: "vms.state" },
  { machine: MIGRATION, source: "states/migration.ts", column: "migrations.state" },
  { machine: EXECUTION, source: "states/execution.ts", column: "executions.state" },
  { machine: STEP, source: "states/step.ts", column: "execution_steps.state" },
  { machine: JOB, source: "states/job.ts", column: "exec_jobs.state" },
  { machine: PEER, source: "states/peer.ts", column: "fed_peers.state" },
  { machine: HANDOFF_SOURCE, source: "states/handoff.ts", column: "acp_outgoing.state" },
  { machine: HANDOFF_TARGET, source: "states/handoff.ts", column: "acp_incoming.state" },
  { machine: DRAIN, source: "states/drain.ts", column: "host_drains.state" },
  { machine: DRAIN_VM, source: "states/drain.ts", column: "host_drain_vms.state" },
  { machine: USER_MFA, source: "states/user-mfa.ts", column: "users.mfa_state" },
  { machine: SESSION, source: "dwcp/amst/session-state.ts", column: null },
];
