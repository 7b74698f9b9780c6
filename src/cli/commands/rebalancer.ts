/** `novacron rebalancer show|set|plan`: the rebalancer's settings and what it would move now (docs/placement.md "Rebalancing"). */
import type { Command } from "commander";
import type {
  RebalancerPlan,
  RebalancerSettings,
  RebalancerSettingsPatch,
} from "../../api/types/rebalancer.js";
import { NovaError } from "../../lib/errors.js";
import { apiFor } from "../context.js";
import { printJson, printTable } from "../output.js";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses `90s`, `5m`, `1h`, `250ms` (a bare number is seconds) into milliseconds. */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m)
    throw new NovaError("NOVA_BAD_REQUEST", `${flag} ${value} is not a duration: give e.g. 90s, 5m or 1h.`, {
      details: { field: flag },
    });
  return Math.round(Number(m[1]) * UNITS[m[2] ?? "s"]!);
}

function parseFraction(value: string, flag: string): number {
  const n = Number(value.endsWith("%") ? value.slice(0, -1) : value) / (value.endsWith("%") ? 100 : 1);
  if (!Number.isFinite(n) || n < 0 || n > 1)
    throw new NovaError(
      "NOVA_BAD_REQUEST",
      `${flag} ${value} is not a fraction: give 0..1 or a percentage like 25%.`,
      {
        details: { field: flag },
      },
    );
  return n;
}

function parseCount(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new NovaError("NOVA_BAD_REQUEST", `${flag} ${value} is not a positive whole number.`, {
      details: { field: flag },
    });
  return n;
}

const pct = (x: number | null): string => (x === null ? "-" : `${Math.round(x * 100)}%`);
const dur = (ms: number): string =>
  ms % 3_600_000 === 0 && ms > 0
    ? `${ms / 3_600_000}h`
    : ms % 60_000 === 0 && ms > 0
      ? `${ms / 60_000}m`
      : `${ms / 1000}s`;

function printSettings(s: RebalancerSettings): void {
  printTable(
    ["SETTING", "VALUE"],
    [
      ["enabled", String(s.enabled)],
      ["threshold", pct(s.threshold)],
      ["min-utilization", pct(s.minUtilization)],
      ["hold", dur(s.holdMs)],
      ["margin", pct(s.margin)],
      ["cooldown", dur(s.cooldownMs)],
      ["max-per-host", String(s.maxPerHost)],
      ["max-per-cluster", String(s.maxPerCluster)],
      ["window", dur(s.windowMs)],
      ["changed", s.updatedBy ? `${s.updatedAt} by ${s.updatedBy}` : "never (defaults)"],
    ],
  );
}

/** Registers `rebalancer`. */
export function registerRebalancerCommands(program: Command): void {
  const rebalancer = program
    .command("rebalancer")
    .description("Moves VMs off hosts whose CPU stays overloaded (off by default)");
  rebalancer
    .command("show")
    .description("Show the rebalancer's settings")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const s = await api.get<RebalancerSettings>("/v1/rebalancer");
      if (json) return printJson(s);
      printSettings(s);
    });
  rebalancer
    .command("set")
    .description("Change the rebalancer's settings (the others stay as they are)")
    .option("--enable", "turn it on")
    .option("--disable", "turn it off (moves under way finish)")
    .option(
      "--threshold <fraction>",
      "overloaded: utilization above the hosts' mean by more than this (0..1 or 25%)",
    )
    .option("--min-utilization <fraction>", "a host this busy or less is never overloaded")
    .option("--hold <duration>", "overloaded this long before a VM moves (e.g. 5m)")
    .option("--margin <fraction>", "a move must narrow the two hosts' gap by this much")
    .option("--cooldown <duration>", "a VM that moved stays put this long (e.g. 30m)")
    .option("--max-per-host <n>", "migrations touching one host at once")
    .option("--max-per-cluster <n>", "migrations in the cluster at once")
    .option("--window <duration>", "utilization is averaged over this window (e.g. 60s)")
    .action(async (o: Record<string, string | boolean | undefined>, cmd: Command) => {
      if (o.enable && o.disable)
        throw new NovaError("NOVA_BAD_REQUEST", "Give --enable or --disable, not both.", {
          details: { field: "--enable" },
        });
      const change: RebalancerSettingsPatch = {
        ...(o.enable ? { enabled: true } : {}),
        ...(o.disable ? { enabled: false } : {}),
        ...(typeof o.threshold === "string" ? { threshold: parseFraction(o.threshold, "--threshold") } : {}),
        ...(typeof o.minUtilization === "string"
          ? { minUtilization: parseFraction(o.minUtilization, "--min-utilization") }
          : {}),
        ...(typeof o.hold === "string" ? { holdMs: parseDuration(o.hold, "--hold") } : {}),
        ...(typeof o.margin === "string" ? { margin: parseFraction(o.margin, "--margin") } : {}),
        ...(typeof o.cooldown === "string" ? { cooldownMs: parseDuration(o.cooldown, "--cooldown") } : {}),
        ...(typeof o.maxPerHost === "string"
          ? { maxPerHost: parseCount(o.maxPerHost, "--max-per-host") }
          : {}),
        ...(typeof o.maxPerCluster === "string"
          ? { maxPerCluster: parseCount(o.maxPerCluster, "--max-per-cluster") }
          : {}),
        ...(typeof o.window === "string" ? { windowMs: parseDuration(o.window, "--window") } : {}),
      };
      if (Object.keys(change).length === 0)
        throw new NovaError(
          "NOVA_BAD_REQUEST",
          "Nothing to change: give --enable, --disable or a setting (novacron rebalancer set --help).",
        );
      const { api, json } = await apiFor(cmd);
      const s = await api.patch<RebalancerSettings>("/v1/rebalancer", change);
      if (json) return printJson(s);
      printSettings(s);
    });
  rebalancer
    .command("plan")
    .description("What the rebalancer would move now, and why nothing else")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const p = await api.get<RebalancerPlan>("/v1/rebalancer/plan");
      if (json) return printJson(p);
      process.stdout.write(
        `${p.enabled ? "on" : "off"}; mean utilization ${pct(p.mean)}${p.idle ? `; ${p.idle}` : ""}\n`,
      );
      printTable(
        ["HOST", "UTILIZATION", "OVERLOADED FOR", "NOTE"],
        p.hosts.map((h) => [
          h.host,
          pct(h.utilization),
          h.overloaded ? dur(h.overloadedForMs) : "-",
          h.note ?? "",
        ]),
      );
      if (p.moves.length === 0) return;
      process.stdout.write("\n");
      printTable(
        ["VM", "FROM", "TO", "FROM AFTER", "TO AFTER", "GAIN"],
        p.moves.map((m) => [
          m.vm,
          `${m.from} (${pct(m.before.from)})`,
          `${m.to} (${pct(m.before.to)})`,
          pct(m.after.from),
          pct(m.after.to),
          pct(m.gain),
        ]),
      );
    });
}
