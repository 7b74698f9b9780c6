/**
 * VM steps: start, stop, restart, migrate and console-check, through the same services
 * the API uses (so the VM state machine and the migration orchestration apply). Each
 * waits until the VM got where it was sent. Start and stop are idempotent (a VM already
 * there is skipped; for stop a failed VM is already down); restart and migrate save a
 * checkpoint before acting, so a retry after a crash waits for what was already started
 * instead of doing it twice.
 */
import type { PlanStep } from "../../api/types/executions.js";
import { getHost } from "../../cluster/store/hosts.js";
import { getMigration } from "../../cluster/store/migrations.js";
import { getVm, type VmRecord } from "../../cluster/store/vms.js";
import { describeError, isNovaError, NovaError } from "../../lib/errors.js";
import { type StepContext, type StepKind, sleep, vmTargets } from "./step.js";

type PowerStep = Extract<PlanStep, { kind: "vm.start" | "vm.stop" | "vm.restart" }>;
type MigrateStep = Extract<PlanStep, { kind: "vm.migrate" }>;
type ConsoleStep = Extract<PlanStep, { kind: "vm.console-check" }>;

const POLL_MS = 250;

/** Waits until the VM is in one of `want` (the first is what was asked for); a failed VM fails the step. */
async function waitVm(ctx: StepContext, name: string, ...want: string[]): Promise<VmRecord> {
  for (;;) {
    const vm = await getVm(ctx.services.store.read, name);
    if (want.includes(vm.state)) return vm;
    if (vm.state === "failed") {
      throw new NovaError(
        "NOVA_EXEC_STEP_FAILED",
        `VM ${vm.name} failed while waiting for ${want[0]}: ${vm.stateReason}`,
        {
          details: { vm: vm.name, state: vm.state },
        },
      );
    }
    await sleep(POLL_MS, ctx.signal);
  }
}

/** vm.start / vm.stop / vm.restart. */
export const vmPowerStep: StepKind<PowerStep> = {
  resumable: () => true,
  async run(step, ctx) {
    const targets = vmTargets(step);
    const done = new Set((ctx.checkpoint.done as string[] | undefined) ?? []);
    const requested = new Set((ctx.checkpoint.requested as string[] | undefined) ?? []);
    for (const [i, name] of targets.entries()) {
      ctx.progress((100 * i) / targets.length, `${step.kind} ${name}`);
      const vm = await getVm(ctx.services.store.read, name);
      if (done.has(vm.id)) continue;
      if (step.kind === "vm.start") {
        if (vm.state !== "running" && vm.state !== "starting") await ctx.services.vms.start(vm.id);
        await waitVm(ctx, vm.id, "running");
      } else if (step.kind === "vm.stop") {
        // A failed VM's QEMU is gone: it is as down as a stopped one, and the VM state
        // machine refuses to stop it, so "stop these 40 VMs" must not fail on it.
        if (vm.state === "failed") ctx.log(`${vm.name} is already down (failed: ${vm.stateReason})`, "warn");
        else {
          if (vm.state !== "stopped" && vm.state !== "stopping") await ctx.services.vms.stop(vm.id);
          await waitVm(ctx, vm.id, "stopped");
        }
      } else {
        // At most once: the request is recorded before it is made.
        if (!requested.has(vm.id)) {
          requested.add(vm.id);
          await ctx.saveCheckpoint({ requested: [...requested], done: [...done] });
          await ctx.services.vms.restart(vm.id);
        }
        await waitVm(ctx, vm.id, "running");
      }
      done.add(vm.id);
      await ctx.saveCheckpoint({ requested: [...requested], done: [...done] });
      ctx.log(`${step.kind}: ${vm.name} done`);
    }
    return { vms: targets };
  },
};

/** vm.migrate. */
export const vmMigrateStep: StepKind<MigrateStep> = {
  resumable: () => true,
  async run(step, ctx) {
    const migrations = ctx.services.migrations;
    if (!migrations) throw new NovaError("NOVA_INTERNAL", "Migrations are not available in this server");
    const started = { ...((ctx.checkpoint.migrations as Record<string, string> | undefined) ?? {}) };
    const results: Record<string, unknown>[] = [];
    const targets = vmTargets(step);
    for (const [i, name] of targets.entries()) {
      const vm = await getVm(ctx.services.store.read, name);
      let id = started[vm.id];
      if (!id) {
        const m = await migrations.create(vm.id, step.targetHost ? { targetHost: step.targetHost } : {});
        id = m.id;
        started[vm.id] = id;
        await ctx.saveCheckpoint({ migrations: started });
        ctx.log(`migrating ${vm.name} from ${m.sourceHost} to ${m.targetHost} (migration ${m.id})`);
      }
      for (;;) {
        const m = await getMigration(ctx.services.store.read, id);
        ctx.progress((100 * i) / targets.length, `${vm.name}: ${m.state}`);
        if (m.state === "completed") {
          results.push({ vm: vm.name, migration: id, to: m.targetHost, downtimeMs: m.result.downtimeMs });
          break;
        }
        if (m.state === "failed" || m.state === "cancelled") {
          throw new NovaError(
            "NOVA_EXEC_STEP_FAILED",
            `Migration of ${vm.name} ${m.state}: ${m.stateReason}`,
            {
              details: { vm: vm.name, migration: id, rollback: m.rollback },
            },
          );
        }
        try {
          await sleep(500, ctx.signal);
        } catch (err) {
          // Cancel reaches the migration too, so it rolls back rather than running on alone.
          await migrations.cancel(id).catch(() => {});
          throw err;
        }
      }
    }
    return { migrations: results };
  },
};

/**
 * vm.console-check: the serial console shows a matching line before the step's time limit.
 * The serial log spans boots (QEMU appends to it), so `since: "any"` (the default) matches
 * any of the last `lines` lines, old ones too, while `since: "step"` only counts lines
 * printed after the step started — what "restart, then check it came up" needs.
 */
export const vmConsoleCheckStep: StepKind<ConsoleStep> = {
  resumable: () => true,
  async run(step, ctx) {
    const re = new RegExp(step.pattern);
    const fresh = step.since === "step";
    const matched: Record<string, string> = {};
    for (const name of vmTargets(step)) {
      // Where the log stood when we first looked, per host (a migration moves the log).
      let seen: { hostId: string; tail: string[] } | undefined;
      for (;;) {
        const vm = await getVm(ctx.services.store.read, name);
        if (!vm.hostId)
          throw new NovaError("NOVA_ILLEGAL_STATE", `VM ${vm.name} has no host, so it has no console.`);
        const host = await getHost(ctx.services.store.read, vm.hostId);
        let lines: string[] | undefined;
        try {
          lines = (await ctx.services.agents.client(host).consoleTail(vm.id, step.lines ?? 200)).lines;
        } catch (err) {
          // An agent restarting, or a VM switching hosts mid-migration, is not a failed
          // check: keep looking until the step's time limit says otherwise.
          if (!isNovaError(err) || !TRANSIENT_CONSOLE_ERRORS.has(err.code)) throw err;
          ctx.progress(0, `${vm.name}: console not readable yet (${describeError(err)})`);
        }
        if (lines) {
          let candidates = lines;
          if (fresh) {
            candidates = seen?.hostId === vm.hostId ? linesAfter(seen.tail, lines) : [];
            seen = { hostId: vm.hostId, tail: lines };
          }
          const line = candidates.find((l) => re.test(l));
          if (line !== undefined) {
            matched[vm.name] = line;
            ctx.log(`${vm.name}: console matched ${re}: ${line}`);
            break;
          }
          ctx.progress(0, `${vm.name}: waiting for ${re} on the console`);
        }
        await sleep(1000, ctx.signal);
      }
    }
    return { matched };
  },
};

const TRANSIENT_CONSOLE_ERRORS = new Set(["NOVA_HOST_UNREACHABLE", "NOVA_NOT_FOUND", "NOVA_AGENT_ERROR"]);

/** How many lines of the earlier tail anchor where it ended in the later one. */
const ANCHOR_LINES = 8;

/**
 * The lines of `now` (a later tail of the same log) that came after `before` ended: the
 * last place where `before`'s final lines appear in `now` marks it. Taking the last such
 * place can only drop new lines (when new output repeats the anchor), never count old ones
 * as new. `before`'s last line may have been caught half-written; if the anchor is not
 * found whole, it is looked for without that line, and the line's completed form is not
 * counted as new either. When neither is in `now`, more than a whole tail was printed
 * since: all of `now` is new.
 */
export function linesAfter(before: string[], now: string[]): string[] {
  if (before.length === 0) return now;
  const whole = lastEnd(before.slice(-ANCHOR_LINES), now);
  if (whole !== undefined) return now.slice(whole);
  const settled = lastEnd(before.slice(-ANCHOR_LINES - 1, -1), now);
  if (settled !== undefined) return now.slice(settled + 1);
  return now;
}

/** Where the last occurrence of `anchor` in `lines` ends (an empty anchor ends at 0). */
function lastEnd(anchor: string[], lines: string[]): number | undefined {
  if (anchor.length === 0) return 0;
  for (let end = lines.length; end >= anchor.length; end--) {
    if (anchor.every((l, k) => lines[end - anchor.length + k] === l)) return end;
  }
  return undefined;
}
