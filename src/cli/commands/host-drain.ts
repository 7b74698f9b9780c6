/**
 * `novacron host drain HOST [--wait] [--timeout S] [--concurrency N] [--cancel]` and
 * `novacron host drain-status HOST [--wait]`: start, follow, cancel and report a host's
 * maintenance drain (docs/operations.md, "Draining a host").
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import { type HostDrain, type HostDrainVm, MAX_DRAIN_CONCURRENCY } from "../../api/types/drains.js";
import type { ErrorCode } from "../../lib/error-codes.js";
import { ERROR_CODES } from "../../lib/error-codes.js";
import { NovaError } from "../../lib/errors.js";
import { parsePositiveInt } from "../../lib/flags.js";
import { type ApiClient, seg } from "../client.js";
import { apiFor } from "../context.js";
import { printJson, printTable } from "../output.js";

/** How long `--wait` follows a drain by default. */
const DEFAULT_TIMEOUT_S = 1800;

/** One VM's line in the progress log: what happened to it, where, by which migration. */
export function entryLine(e: HostDrainVm): string {
  switch (e.state) {
    case "waiting":
      return `${e.vm}: waiting`;
    case "moving":
      return `${e.vm}: moving to ${e.targetHost ?? "?"} (migration ${e.migrationId})`;
    case "moved":
      return `${e.vm}: moved to ${e.targetHost ?? "?"}${e.migrationId ? ` (migration ${e.migrationId})` : ""}`;
    default:
      return `${e.vm}: ${e.state}${e.code ? ` [${e.code}]` : ""}: ${e.reason}`;
  }
}

/** The drain's report as table rows: VM, result, where it runs, migration, why. */
export function reportRows(d: HostDrain): string[][] {
  return d.vms.map((e) => [
    e.vm,
    e.state,
    e.targetHost ?? "-",
    e.migrationId ?? "-",
    e.code ? `${e.code}: ${e.reason}` : e.reason,
  ]);
}

function printReport(d: HostDrain): void {
  process.stdout.write(
    `Drain of ${d.host}: ${d.state}${d.stateReason ? ` (${d.stateReason})` : ""}${d.cancelRequested && d.state === "draining" ? " — cancel requested" : ""}\n`,
  );
  if (d.vms.length > 0) printTable(["VM", "RESULT", "HOST NOW", "MIGRATION", "REASON"], reportRows(d));
}

/**
 * Polls the host's drain until it ends, printing each VM's change to stderr (unless
 * quiet); NOVA_TIMEOUT after `timeoutMs` (the drain goes on on the server).
 */
async function followDrain(
  api: ApiClient,
  host: string,
  first: HostDrain,
  o: { timeoutMs: number; quiet: boolean },
): Promise<HostDrain> {
  const started = Date.now();
  const seen = new Map<string, string>();
  const show = (d: HostDrain) => {
    for (const e of d.vms) {
      const line = entryLine(e);
      if (seen.get(e.vm) === line) continue;
      seen.set(e.vm, line);
      if (!o.quiet) process.stderr.write(`  [${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`);
    }
  };
  let d = first;
  for (;;) {
    show(d);
    if (d.state !== "draining") return d;
    if (Date.now() - started > o.timeoutMs) {
      const done = d.vms.filter((e) => e.state !== "waiting" && e.state !== "moving").length;
      throw new NovaError(
        "NOVA_TIMEOUT",
        `The drain of ${d.host} is still under way after ${o.timeoutMs / 1000} s (${done} of ${d.vms.length} VMs done); it goes on on the server. Follow it with: novacron host drain-status ${d.host} --wait`,
        { details: { host: d.host, drain: d.id } },
      );
    }
    await sleep(500);
    d = await api.get<HostDrain>(`/v1/hosts/${seg(host)}/drain`);
  }
}

/** Exit 1 unless the drain emptied the host: the first failed VM's code, else the outcome. */
function failUnlessDrained(d: HostDrain): void {
  if (d.state === "drained") return;
  const failed = d.vms.find((e) => e.state === "failed");
  const code: ErrorCode =
    failed?.code && failed.code in ERROR_CODES ? (failed.code as ErrorCode) : "NOVA_DRAIN_MIGRATION_FAILED";
  throw new NovaError(
    d.state === "cancelled" ? "NOVA_ILLEGAL_STATE" : code,
    `The drain of ${d.host} ended ${d.state}: ${d.stateReason}`,
    { details: { host: d.host, drain: d.id, state: d.state } },
  );
}

interface DrainFlags {
  wait?: boolean;
  timeout: string;
  concurrency?: string;
  cancel?: boolean;
}

/** Registers `host drain` and `host drain-status` under `host`. */
export function registerHostDrainCommands(host: Command): void {
  host
    .command("drain <host>")
    .description(
      "Cordon a host and live-migrate every VM off it, a few at a time; it stays cordoned (--cancel stops new moves)",
    )
    .option("--wait", "follow the drain until it ends, printing each VM's move, then the report")
    .option("--timeout <seconds>", "with --wait: give up waiting after this long", String(DEFAULT_TIMEOUT_S))
    .option("--concurrency <n>", `VMs moved at once (1 … ${MAX_DRAIN_CONCURRENCY})`, "1")
    .option("--cancel", "cancel the drain under way: no new move starts, moves under way finish")
    .action(async (name: string, o: DrainFlags, cmd: Command) => {
      const timeoutMs = parsePositiveInt(o.timeout, "--timeout") * 1000;
      const concurrency = parsePositiveInt(o.concurrency ?? "1", "--concurrency");
      if (concurrency > MAX_DRAIN_CONCURRENCY)
        throw new NovaError(
          "NOVA_CONFIG",
          `--concurrency must be at most ${MAX_DRAIN_CONCURRENCY}, got ${concurrency}`,
        );
      const { api, json } = await apiFor(cmd);
      let d = o.cancel
        ? await api.delete<HostDrain>(`/v1/hosts/${seg(name)}/drain`)
        : await api.post<HostDrain>(`/v1/hosts/${seg(name)}/drain`, { concurrency });
      if (!json)
        process.stderr.write(
          o.cancel
            ? `Cancel requested for the drain of ${d.host}: no new move starts; moves under way finish\n`
            : `Draining ${d.host} (cordoned; ${d.vms.length} VM(s), ${d.concurrency} at a time; drain ${d.id})\n`,
        );
      if (!o.wait) {
        if (json) return printJson(d);
        return printReport(d);
      }
      d = await followDrain(api, name, d, { timeoutMs, quiet: json });
      if (json) printJson(d);
      else printReport(d);
      if (!o.cancel) failUnlessDrained(d);
    });

  host
    .command("drain-status <host>")
    .description("Show a host's newest drain and its report per VM")
    .option("--wait", "follow it until it ends")
    .option("--timeout <seconds>", "with --wait: give up waiting after this long", String(DEFAULT_TIMEOUT_S))
    .action(async (name: string, o: { wait?: boolean; timeout: string }, cmd: Command) => {
      const timeoutMs = parsePositiveInt(o.timeout, "--timeout") * 1000;
      const { api, json } = await apiFor(cmd);
      let d = await api.get<HostDrain>(`/v1/hosts/${seg(name)}/drain`);
      if (o.wait) d = await followDrain(api, name, d, { timeoutMs, quiet: json });
      if (json) return printJson(d);
      printReport(d);
    });
}
