/**
 * The execution-time authorisation check point. A plan is checked when it is submitted
 * and again when a worker is about to run it: the submitter's token may have been revoked
 * or its permissions narrowed in between (approvals can wait for days). Each step kind
 * needs a permission; unknown kinds and unknown principals need something nobody holds,
 * so the default is deny. Decisions go through `authorize` (policy/permissions.ts), the
 * one table RBAC roles will replace.
 */
import type { Plan } from "../api/types/executions.js";
import type { ReadQueryable } from "../cluster/store/db.js";
import { findUserById } from "../cluster/store/users.js";
import { NovaError } from "../lib/errors.js";
import { authorize, type Permission, type Principal } from "../policy/permissions.js";
import { secretRefs } from "./secrets.js";

/** What running a step of each kind requires. */
export const STEP_PERMISSIONS: Record<string, readonly Permission[]> = {
  "vm.start": ["vms:write"],
  "vm.stop": ["vms:write"],
  "vm.restart": ["vms:write"],
  "vm.migrate": ["vms:write"],
  "vm.console-check": ["vms:read"],
  http: ["executions:http"],
  "host.command": ["hosts:exec"],
  wait: ["executions:write"],
  approval: ["executions:write"],
};

/** The permissions a plan needs: every step's, plus secrets:use when it references secrets. */
export function requiredPermissions(plan: Plan): { step: number | null; permission: Permission | null }[] {
  const out: { step: number | null; permission: Permission | null }[] = [
    { step: null, permission: "executions:write" },
  ];
  plan.steps.forEach((s, i) => {
    const perms = STEP_PERMISSIONS[s.kind];
    // A kind with no entry needs a permission nobody has: deny by default.
    if (!perms) out.push({ step: i, permission: null });
    else for (const p of perms) out.push({ step: i, permission: p });
    if (secretRefs(s).size > 0) out.push({ step: i, permission: "secrets:use" });
  });
  return out;
}

/** Throws NOVA_FORBIDDEN naming the first permission `principal` lacks for `plan`. */
export function assertMayRun(principal: Principal | undefined, plan: Plan, executionId?: string): void {
  for (const need of requiredPermissions(plan)) {
    if (principal && need.permission && authorize(principal, need.permission)) continue;
    const who = !principal
      ? "an unknown or revoked token"
      : principal.kind === "user"
        ? `user ${principal.name} (role ${principal.role})`
        : `a ${principal.kind} token (${principal.name})`;
    const what =
      need.step === null ? "this execution" : `step ${need.step + 1} (${plan.steps[need.step]!.kind})`;
    throw new NovaError(
      "NOVA_FORBIDDEN",
      `${who} may not run ${what}${need.permission ? `: it needs ${need.permission}` : ": no permission covers this step kind"}.`,
      {
        details: {
          ...(executionId ? { execution: executionId } : {}),
          step: need.step,
          needs: need.permission,
          principal: principal?.kind ?? null,
        },
      },
    );
  }
}

/**
 * The submitter as it is now: its token's current record, or its user's current role
 * (undefined when revoked or gone). Host credentials never submit executions.
 */
export async function currentPrincipal(
  q: ReadQueryable,
  actor: { kind: string; id: string },
): Promise<Principal | undefined> {
  if (actor.kind === "user") {
    // A user acts with the role they have now: a demoted or deleted user's waiting
    // executions no longer run with the permissions they had when submitting.
    const user = await findUserById(q, actor.id);
    return user ? { kind: "user", id: user.id, name: user.username, role: user.role } : undefined;
  }
  if (actor.kind !== "admin" && actor.kind !== "join") return undefined;
  const { rows } = await q.query<{ id: string; name: string; kind: "admin" | "join"; grants: string[] }>(
    "SELECT id, name, kind, grants FROM api_tokens WHERE id = $1 AND revoked_at IS NULL",
    [actor.id],
  );
  return rows[0];
}
