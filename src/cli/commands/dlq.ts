/** `novacron dlq list|requeue`: the execution system's dead-letter queue. */
import type { Command } from "commander";
import type { DlqEntry, DlqList } from "../../api/types/executions.js";
import { NovaError } from "../../lib/errors.js";
import { apiFor } from "../context.js";
import { printJson, printTable } from "../output.js";

/** Registers `dlq`. */
export function registerDlqCommands(program: Command): void {
  const dlq = program.command("dlq").description("Inspect and requeue jobs that ran out of attempts");
  dlq
    .command("list")
    .description("List dead-lettered jobs, newest first")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { entries } = await api.get<DlqList>("/v1/dlq");
      if (json) return printJson(entries);
      printTable(
        ["JOB", "QUEUE", "EXECUTION", "STATE", "ATTEMPTS", "DEAD AT", "LAST ERROR"],
        entries.map((d) => [
          d.jobId,
          d.queue,
          d.executionId ? `${d.executionId.slice(0, 8)} ${d.executionName ?? ""}`.trim() : "",
          d.executionState,
          `${d.attempts}/${d.maxAttempts}`,
          d.deadAt,
          String(d.lastError?.message ?? "").slice(0, 80),
        ]),
      );
    });
  dlq
    .command("requeue <job>")
    .description("Requeue a dead job with fresh attempts (an execution resumes at its failed step)")
    .action(async (job: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      if (!/^\d+$/.test(job))
        throw new NovaError("NOVA_BAD_REQUEST", `Job id ${job} is not a number (see: novacron dlq list)`);
      const d = await api.post<DlqEntry>(`/v1/dlq/${job}/requeue`, {});
      if (json) printJson(d);
      else
        process.stdout.write(
          `Requeued job ${d.jobId}${d.executionId ? ` (execution ${d.executionId})` : ""}\n`,
        );
    });
}
