/** `novacron alert list|runbook`: the alerts Prometheus evaluates for this cluster, and their runbooks. */
import type { Command } from "commander";
import type { AlertsResponse, Runbook } from "../../api/types/alerts.js";
import { apiFor } from "../context.js";
import { printJson, printTable } from "../output.js";

/** Registers `alert`. */
export function registerAlertCommands(program: Command): void {
  const alert = program
    .command("alert")
    .description(
      "Alerts firing for this cluster (read from the server's --prometheus-url) and their runbooks",
    );
  alert
    .command("list")
    .description("List firing and pending alerts, most severe first")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const res = await api.get<AlertsResponse>("/v1/alerts");
      if (json) return printJson(res);
      if (!res.configured) {
        process.stdout.write(
          "No Prometheus is configured: start the server with --prometheus-url to see the alerts of deploy/prometheus/alerts.yml here.\n",
        );
        return;
      }
      if (res.alerts.length === 0) {
        process.stdout.write(`No alerts firing (Prometheus at ${res.source})\n`);
        return;
      }
      printTable(
        ["ALERT", "STATE", "SEVERITY", "SINCE", "SUMMARY", "RUNBOOK"],
        res.alerts.map((a) => [
          a.name,
          a.state,
          a.severity ?? "",
          a.activeAt ?? "",
          (a.summary ?? "").slice(0, 80),
          a.runbookName ? `novacron alert runbook ${a.runbookName}` : (a.runbook ?? ""),
        ]),
      );
    });
  alert
    .command("runbook <name>")
    .description("Print the runbook of an alert (docs/runbooks/<name>.md)")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const r = await api.get<Runbook>(`/v1/runbooks/${encodeURIComponent(name)}`);
      if (json) return printJson(r);
      process.stdout.write(r.markdown.endsWith("\n") ? r.markdown : `${r.markdown}\n`);
    });
}
