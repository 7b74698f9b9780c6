/**
 * The `host.command` step: asks a host's agent to run a command from the agent's own
 * allowlist (src/agent/host-commands.ts). The server names the command; the agent decides
 * what that runs, so a compromised plan cannot run arbitrary programs on hosts. A non-zero
 * exit fails the step; output lines go to the execution log (masked).
 */
import type { AgentCommandResult, PlanStep } from "../../api/types/executions.js";
import { getHost } from "../../cluster/store/hosts.js";
import { describeError, NovaError } from "../../lib/errors.js";
import { readJsonReply } from "../../lib/json-response.js";
import type { StepKind } from "./step.js";

type HostCommandStep = Extract<PlanStep, { kind: "host.command" }>;

/** Re-running a command is only safe when the plan says so. */
export const hostCommandStep: StepKind<HostCommandStep> = {
  resumable: (s) => s.idempotent ?? false,
  async run(step, ctx) {
    const host = await getHost(ctx.services.store.read, step.host);
    let res: Response;
    try {
      res = await ctx.services.agents.fetchFor(host)(`${host.agentUrl}/agent/v1/commands/run`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ command: step.command, args: step.args ?? [] }),
        signal: ctx.signal,
      });
    } catch (err) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      throw new NovaError(
        "NOVA_HOST_UNREACHABLE",
        `Failed reaching host ${host.name}: ${describeError(err)}`,
        {
          details: { host: host.name },
        },
      );
    }
    const out = (await readJsonReply(res, {
      fallbackCode: "NOVA_AGENT_ERROR",
      describe: (m) => `Host ${host.name}: ${m}`,
      details: { host: host.name },
    })) as AgentCommandResult;
    for (const line of out.stdout.split("\n").filter(Boolean)) ctx.log(`[${host.name} stdout] ${line}`);
    for (const line of out.stderr.split("\n").filter(Boolean))
      ctx.log(`[${host.name} stderr] ${line}`, "warn");
    if (out.exitCode !== 0) {
      throw new NovaError(
        "NOVA_EXEC_STEP_FAILED",
        `Command ${step.command} on ${host.name} exited with ${out.exitCode}${out.signal ? ` (signal ${out.signal})` : ""}`,
        { details: { host: host.name, exitCode: out.exitCode } },
      );
    }
    return { host: host.name, exitCode: out.exitCode, durationMs: out.durationMs };
  },
};
