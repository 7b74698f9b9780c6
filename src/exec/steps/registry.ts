/** Step kinds by name. An unknown kind has no entry and is refused (plan validation, RBAC). */
import type { PlanStep } from "../../api/types/executions.js";
import { hostCommandStep } from "./host-command.js";
import { httpStep } from "./http.js";
import type { StepKind } from "./step.js";
import { vmConsoleCheckStep, vmMigrateStep, vmPowerStep } from "./vm.js";
import { waitStep } from "./wait.js";

/** Every kind the runner executes itself (approval is handled by the runner). */
export const STEP_KINDS: Record<Exclude<PlanStep["kind"], "approval">, StepKind<never>> = {
  "vm.start": vmPowerStep as StepKind<never>,
  "vm.stop": vmPowerStep as StepKind<never>,
  "vm.restart": vmPowerStep as StepKind<never>,
  "vm.migrate": vmMigrateStep as StepKind<never>,
  "vm.console-check": vmConsoleCheckStep as StepKind<never>,
  http: httpStep as StepKind<never>,
  "host.command": hostCommandStep as StepKind<never>,
  wait: waitStep as StepKind<never>,
};
