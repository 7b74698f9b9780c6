/**
 * `novacron exec submit|list|show|logs|cancel|approve|reject|retry` and
 * `novacron exec secret set|list|delete`: plans from YAML or JSON files, live logs.
 */
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import YAML from "yaml";
import type { Execution, ExecutionList, ExecutionLogs, SecretList } from "../../api/types/executions.js";
import { describeError, NovaError } from "../../lib/errors.js";
import type { ApiClient } from "../client.js";
import { seg } from "../client.js";
import { apiFor } from "../context.js";
import { printFields, printJson, printTable } from "../output.js";

const SETTLED = new Set(["completed", "failed", "cancelled", "timed_out", "partial", "rejected"]);

/** Reads a plan file: YAML (a superset of JSON) or `-` for stdin. */
export async function readPlan(file: string): Promise<unknown> {
  let text: string;
  try {
    text = file === "-" ? await readStdin() : await readFile(file, "utf8");
  } catch (err) {
    throw new NovaError("NOVA_CONFIG", `Cannot read plan ${file}: ${describeError(err)}`);
  }
  try {
    return YAML.parse(text) as unknown;
  } catch (err) {
    throw new NovaError("NOVA_BAD_REQUEST", `Plan ${file} is not valid YAML or JSON: ${describeError(err)}`);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Follows the log until the execution settles; returns its final state. */
export async function followLogs(
  api: ApiClient,
  id: string,
  print: boolean,
  untilSettled = true,
): Promise<string> {
  let after = 0;
  for (;;) {
    const page = await api.get<ExecutionLogs>(`/v1/executions/${seg(id)}/logs?after=${after}`);
    if (print) {
      for (const l of page.lines) {
        const step = l.step === null ? "" : ` [step ${l.step + 1}]`;
        process.stdout.write(
          `${l.at}${step} ${l.level === "info" ? "" : `${l.level.toUpperCase()} `}${l.message}\n`,
        );
      }
    }
    after = page.next;
    if (page.lines.length > 0) continue;
    if (!untilSettled || SETTLED.has(page.state) || page.state === "pending_approval") return page.state;
    await sleep(300);
  }
}

function printExecution(e: Execution): void {
  printFields([
    ["ID", e.id],
    ["Name", e.name],
    ["State", `${e.state}${e.stateReason ? ` (${e.stateReason})` : ""}`],
    ["SLA / mode", `${e.sla} / ${e.mode}, priority ${e.priority}`],
    ["Submitted by", e.actor],
    ["Attempts", `${e.attempts}/${e.maxAttempts}`],
    ["Assets", `${e.assets.join(", ")} (held ${e.lock === "step" ? "per step" : "for the whole run"})`],
    ["Approval until", e.approvalExpiresAt],
    ["Created", e.createdAt],
    ["Finished", e.finishedAt],
  ]);
  process.stdout.write("\n");
  printTable(
    ["#", "KIND", "NAME", "STATE", "PROGRESS", "MESSAGE"],
    e.steps.map((s) => [
      s.index + 1,
      s.kind,
      s.name,
      s.state,
      `${Math.round(s.progressPct)}%`,
      s.message.length > 80 ? `${s.message.slice(0, 77)}...` : s.message,
    ]),
  );
}

function failIfBad(e: Execution): void {
  if (
    e.state === "completed" ||
    e.state === "pending_approval" ||
    e.state === "queued" ||
    e.state === "running"
  )
    return;
  throw new NovaError("NOVA_EXEC_STEP_FAILED", `Execution ${e.id} ended ${e.state}: ${e.stateReason}`);
}

/** Registers `exec` and `dlq`. */
export function registerExecCommands(program: Command): void {
  const exec = program
    .command("exec")
    .description("Run plans of operations on VMs, hosts and external assets");

  exec
    .command("submit <plan>")
    .description("Submit a plan (YAML or JSON file, - for stdin)")
    .option("--wait", "follow its log and wait until it ends (or waits for approval)")
    .option("--idempotency-key <key>", "your own key; default: hash of the plan, tenant and you")
    .action(async (file: string, o: { wait?: boolean; idempotencyKey?: string }, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const plan = await readPlan(file);
      let e = await api.post<Execution>("/v1/executions", {
        plan,
        ...(o.idempotencyKey ? { idempotencyKey: o.idempotencyKey } : {}),
      });
      if (!json) {
        process.stderr.write(
          e.duplicate
            ? `Duplicate of execution ${e.id} (${e.state}); nothing new was started.\n`
            : `Submitted execution ${e.id} (${e.state})\n`,
        );
      }
      if (o.wait) {
        await followLogs(api, e.id, !json);
        e = await api.get<Execution>(`/v1/executions/${seg(e.id)}`);
      }
      if (json) printJson(e);
      else if (o.wait)
        process.stdout.write(`Execution ${e.id}: ${e.state}${e.stateReason ? ` (${e.stateReason})` : ""}\n`);
      else process.stdout.write(`${e.id}\n`);
      if (o.wait) failIfBad(e);
    });

  exec
    .command("list")
    .description("List executions, newest first")
    .option("--state <state>", "only this state")
    .action(async (o: { state?: string }, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { executions } = await api.get<ExecutionList>(
        `/v1/executions${o.state ? `?state=${encodeURIComponent(o.state)}` : ""}`,
      );
      if (json) return printJson(executions);
      printTable(
        ["ID", "NAME", "STATE", "STEP", "SLA", "CREATED", "REASON"],
        executions.map((e) => [
          e.id.slice(0, 8),
          e.name,
          e.state,
          `${Math.min(e.currentStep + 1, e.steps.length)}/${e.steps.length}`,
          e.sla,
          e.createdAt,
          e.stateReason.length > 60 ? `${e.stateReason.slice(0, 57)}...` : e.stateReason,
        ]),
      );
    });

  exec
    .command("show <id>")
    .description("Show an execution and its steps")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const e = await api.get<Execution>(`/v1/executions/${seg(id)}`);
      if (json) printJson(e);
      else printExecution(e);
    });

  exec
    .command("logs <id>")
    .description("Print an execution's log (masked)")
    .option("--follow", "keep printing until it ends")
    .action(async (id: string, o: { follow?: boolean }, cmd: Command) => {
      const { api } = await apiFor(cmd);
      await followLogs(api, id, true, Boolean(o.follow));
    });

  for (const action of ["cancel", "approve", "reject", "retry"] as const) {
    const c = exec.command(`${action} <id>`).description(
      {
        cancel: "Cancel: a running step is stopped (cooperatively, then forced after the grace period)",
        approve: "Approve an execution waiting for approval",
        reject: "Reject an execution waiting for approval",
        retry: "Retry a failed, partial or timed-out execution from the step it stopped at",
      }[action],
    );
    if (action !== "retry") c.option("--reason <text>", "recorded with the decision");
    c.action(async (id: string, o: { reason?: string }, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const e = await api.post<Execution>(
        `/v1/executions/${seg(id)}/${action}`,
        o.reason ? { reason: o.reason } : {},
      );
      if (json) printJson(e);
      else
        process.stdout.write(`Execution ${e.id}: ${e.state}${e.stateReason ? ` (${e.stateReason})` : ""}\n`);
    });
  }

  const secret = exec
    .command("secret")
    .description("Secrets that plan steps reference by name (docs/executions.md)");
  secret
    .command("set <name>")
    .description("Store a secret (value from --value-file or stdin; encrypted at rest)")
    .option("--value-file <file>", "read the value from this file (default: stdin)")
    .action(async (name: string, o: { valueFile?: string }, cmd: Command) => {
      const { api } = await apiFor(cmd);
      const raw = o.valueFile ? await readFile(o.valueFile, "utf8") : await readStdin();
      await api.post("/v1/secrets", { name, value: raw.replace(/\r?\n$/, "") });
      process.stdout.write(`Stored secret ${name}\n`);
    });
  secret
    .command("list")
    .description("List secret names (values never leave the server)")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { secrets } = await api.get<SecretList>("/v1/secrets");
      if (json) return printJson(secrets);
      printTable(
        ["NAME", "UPDATED"],
        secrets.map((s) => [s.name, s.updatedAt]),
      );
    });
  secret
    .command("delete <name>")
    .description("Delete a secret")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { api } = await apiFor(cmd);
      await api.delete(`/v1/secrets/${seg(name)}`);
      process.stdout.write(`Deleted secret ${name}\n`);
    });
}
