/** `novacron vm migrate` and `novacron migration list|show|cancel`, with a live progress bar. */
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import {
  MIGRATION_OPTION_DEFAULTS,
  type Migration,
  type MigrationList,
  type MigrationOptions,
  type MigrationProgress,
} from "../../api/types/migrations.js";
import { NovaError } from "../../lib/errors.js";
import { parsePositiveInt } from "../../lib/flags.js";
import type { ApiClient } from "../client.js";
import { seg } from "../client.js";
import { apiFor } from "../context.js";
import { formatBytes, printFields, printJson, printTable } from "../output.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** One line describing where a migration is. */
export function progressLine(m: Migration): string {
  const p = m.progress as Partial<MigrationProgress>;
  if (!p.phase) return `${m.state}${m.stateReason ? `: ${m.stateReason}` : ""}`;
  if (p.phase === "disk-mirror") {
    const pct = p.diskBytesTotal ? (100 * (p.diskBytesDone ?? 0)) / p.diskBytesTotal : 0;
    return `${bar(pct)} disk ${formatBytes(p.diskBytesDone ?? 0)}/${formatBytes(p.diskBytesTotal ?? 0)}`;
  }
  const total = p.memoryBytesTotal ?? 0;
  const sent = p.memoryBytesSent ?? 0;
  const remaining = p.memoryBytesRemaining ?? 0;
  const pct = total > 0 ? Math.min(100, (100 * (total - remaining)) / total) : 0;
  const parts = [
    `${bar(pct)} pass ${p.pass ?? 0}`,
    `sent ${formatBytes(sent)}`,
    `left ${formatBytes(remaining)}`,
    `${Math.round(p.pagesPerSecond ?? 0)} pages/s`,
    `dirty ${formatBytes(p.dirtyBytesPerSecond ?? 0)}/s`,
  ];
  if (p.expectedDowntimeMs !== null && p.expectedDowntimeMs !== undefined)
    parts.push(`downtime ~${p.expectedDowntimeMs} ms`);
  parts.push(p.etaSeconds === null || p.etaSeconds === undefined ? "ETA -" : `ETA ${p.etaSeconds}s`);
  if (p.autoConvergeThrottlePct) parts.push(`throttled ${p.autoConvergeThrottlePct}%`);
  const t = p.transport;
  if (t?.chosen === "dwcp" && t.wireBytes !== undefined)
    parts.push(
      `dwcp ${formatBytes(t.logicalBytes ?? 0)} -> ${formatBytes(t.wireBytes)} wire (${t.ratio ?? 0}x), ${t.streams ?? 0} streams, ${t.mode ?? "?"}`,
    );
  if (t?.chosen === "dwcp" && t.diskWireBytes !== undefined && t.diskLogicalBytes)
    parts.push(`disk ${formatBytes(t.diskLogicalBytes)} -> ${formatBytes(t.diskWireBytes)} wire`);
  return parts.join("  ");
}

function bar(pct: number): string {
  const width = 20;
  const filled = Math.round((Math.max(0, Math.min(100, pct)) / 100) * width);
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${pct.toFixed(0).padStart(3)}%`;
}

/** The summary printed when a migration ends. */
export function summaryLine(m: Migration): string {
  if (m.state !== "completed") {
    return `Migration ${m.state}: ${m.stateReason}${m.rollback ? ` (rolled back: ${m.rollback})` : ""}`;
  }
  const r = m.result;
  const parts = [`Migrated ${m.vm} from ${m.sourceHost} to ${targetOf(m)} over ${m.transport}`];
  if (r.totalTimeMs !== undefined) parts.push(`total ${(r.totalTimeMs / 1000).toFixed(1)} s`);
  if (r.downtimeMs !== undefined) {
    const b = r.downtimeBreakdown;
    parts.push(
      `downtime ${r.downtimeMs} ms${b ? ` (stopping ${b.stopMs}, finishing the disk mirror ${b.mirrorFinishMs}, final state ${b.finalMs})` : ""}`,
    );
  }
  if (r.guestPauseMs !== undefined) parts.push(`guest paused ${r.guestPauseMs} ms`);
  if (r.memoryBytes !== undefined) parts.push(`memory moved ${formatBytes(r.memoryBytes)}`);
  if (r.diskBytes !== undefined) parts.push(`disk mirrored ${formatBytes(r.diskBytes)}`);
  if (r.baseImageCopied) parts.push("base image copied");
  return parts.join(", ");
}

/** Where a migration goes: a host, or a host (once known) in another cluster. */
export function targetOf(m: Pick<Migration, "targetHost" | "targetCluster">): string {
  if (!m.targetCluster) return m.targetHost;
  return m.targetHost ? `${m.targetHost} in cluster ${m.targetCluster}` : `cluster ${m.targetCluster}`;
}

/** Follows a migration until it ends, drawing progress; returns the final state. */
export async function followMigration(api: ApiClient, id: string, quiet: boolean): Promise<Migration> {
  const tty = process.stderr.isTTY;
  let lastLine = "";
  let lastState = "";
  let lastPrinted = 0;
  for (;;) {
    const m = await api.get<Migration>(`/v1/migrations/${seg(id)}`);
    if (!quiet) {
      if (m.state !== lastState) {
        if (tty && lastLine) process.stderr.write("\n");
        process.stderr.write(`${m.state}: ${m.stateReason}\n`);
        lastState = m.state;
        lastLine = "";
      }
      const line = progressLine(m);
      // Polled often enough to show short phases; a log (no TTY) gets at most a line a second.
      if (m.state === "transferring" && line !== lastLine && (tty || Date.now() - lastPrinted >= 1000)) {
        process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
        lastLine = line;
        lastPrinted = Date.now();
      }
    }
    if (TERMINAL.has(m.state)) {
      if (!quiet && tty && lastLine) process.stderr.write("\n");
      return m;
    }
    await sleep(250);
  }
}

function printMigration(m: Migration): void {
  printFields([
    ["ID", m.id],
    ["VM", m.vm],
    ["From", m.sourceHost],
    ["To", targetOf(m)],
    ["State", `${m.state}${m.stateReason ? ` (${m.stateReason})` : ""}`],
    ["Rolled back", m.rollback],
    ["Progress", TERMINAL.has(m.state) ? "" : progressLine(m)],
    ["Result", m.state === "completed" ? summaryLine(m) : ""],
    ["Options", JSON.stringify(m.options)],
    ["Created", m.createdAt],
    ["Finished", m.finishedAt],
  ]);
}

/** Registers `vm migrate` and the `migration` commands. */
export function registerMigrationCommands(program: Command): void {
  const vm = program.commands.find((c) => c.name() === "vm");
  if (!vm) throw new Error("register the vm commands first");
  vm.command("migrate <vm>")
    .description(
      "Live-migrate a running VM to another host, or to another cluster with its ownership (memory and disk)",
    )
    .option("--to <host>", "target host (default: placement picks one; with --to-cluster, a host there)")
    .option("--to-cluster <cluster>", "a peer cluster to move the VM to (over DWCP; docs/federation.md §10)")
    .option("--host <host>", "the same as --to (a host there, with --to-cluster)")
    .option("--follow", "show a live progress bar until it ends")
    .option(
      "--downtime-ms <ms>",
      "longest pause allowed at switch-over",
      String(MIGRATION_OPTION_DEFAULTS.downtimeLimitMs),
    )
    .option("--bandwidth <MiB/s>", "cap the migration's bandwidth")
    .option("--no-auto-converge", "do not throttle a guest that dirties memory faster than the link")
    .option("--postcopy", "allow post-copy (a failure during post-copy LOSES the VM; see docs/migration.md)")
    .option(
      "--transport <auto|qemu|dwcp>",
      "how memory and disk travel (auto: by the measured network mode)",
      MIGRATION_OPTION_DEFAULTS.transport,
    )
    .option("--multifd <channels>", "QEMU multifd: send RAM over this many parallel connections")
    .option("--multifd-compression <none|zstd>", "compress multifd pages (with --multifd)")
    .option(
      "--timeout <seconds>",
      "roll back if not done by then",
      String(MIGRATION_OPTION_DEFAULTS.timeoutSeconds),
    )
    .action(
      async (
        name: string,
        o: {
          to?: string;
          host?: string;
          toCluster?: string;
          follow?: boolean;
          downtimeMs: string;
          bandwidth?: string;
          autoConverge: boolean;
          postcopy?: boolean;
          transport: string;
          multifd?: string;
          multifdCompression?: string;
          timeout: string;
        },
        cmd: Command,
      ) => {
        if (o.to && o.host && o.to !== o.host)
          throw new NovaError(
            "NOVA_BAD_REQUEST",
            `--to ${o.to} and --host ${o.host} name different hosts; give one of them`,
          );
        const targetHost = o.to ?? o.host;
        const { api, json } = await apiFor(cmd);
        const options: MigrationOptions = {
          downtimeLimitMs: parsePositiveInt(o.downtimeMs, "--downtime-ms"),
          autoConverge: o.autoConverge,
          postcopy: Boolean(o.postcopy),
          timeoutSeconds: parsePositiveInt(o.timeout, "--timeout"),
          ...(o.bandwidth ? { maxBandwidthMiBps: parsePositiveInt(o.bandwidth, "--bandwidth") } : {}),
          transport: parseTransport(o.transport),
          ...(o.multifd ? { multifdChannels: parsePositiveInt(o.multifd, "--multifd") } : {}),
          ...(o.multifdCompression ? { multifdCompression: parseCompression(o.multifdCompression) } : {}),
        };
        let m = await api.post<Migration>(`/v1/vms/${seg(name)}/migrations`, {
          ...(targetHost ? { targetHost } : {}),
          ...(o.toCluster ? { targetCluster: o.toCluster } : {}),
          options,
        });
        if (!json)
          process.stderr.write(
            `Migrating ${m.vm} from ${m.sourceHost} to ${targetOf(m)} (migration ${m.id})\n`,
          );
        if (!o.follow) return json ? printJson(m) : undefined;
        m = await followMigration(api, m.id, json);
        if (json) printJson(m);
        else process.stdout.write(`${summaryLine(m)}\n`);
        if (m.state !== "completed")
          throw new NovaError("NOVA_AGENT_ERROR", `Migration ${m.state}: ${m.stateReason}`);
      },
    );

  const mig = program.command("migration").description("Inspect and cancel live migrations");
  mig
    .command("list")
    .description("List migrations, newest first")
    .action(async (_o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { migrations } = await api.get<MigrationList>("/v1/migrations");
      if (json) return printJson(migrations);
      printTable(
        ["ID", "VM", "FROM", "TO", "STATE", "DOWNTIME", "REASON"],
        migrations.map((m) => [
          m.id.slice(0, 8),
          m.vm,
          m.sourceHost,
          m.targetHost,
          m.state,
          m.result.downtimeMs !== undefined ? `${m.result.downtimeMs} ms` : "",
          m.stateReason,
        ]),
      );
    });
  mig
    .command("show <id>")
    .description("Show one migration")
    .option("--follow", "follow it until it ends")
    .action(async (id: string, o: { follow?: boolean }, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const m = o.follow
        ? await followMigration(api, id, json)
        : await api.get<Migration>(`/v1/migrations/${seg(id)}`);
      if (json) return printJson(m);
      printMigration(m);
    });
  mig
    .command("cancel <id>")
    .description("Cancel a migration; the VM keeps running on its source")
    .option("--wait", "wait until it is rolled back")
    .action(async (id: string, o: { wait?: boolean }, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      let m = await api.delete<Migration>(`/v1/migrations/${seg(id)}`);
      if (o.wait) m = await followMigration(api, m.id, true);
      if (json) return printJson(m);
      process.stdout.write(o.wait ? `${summaryLine(m)}\n` : `Cancel requested for migration ${m.id}\n`);
    });
}

function parseCompression(v: string): "none" | "zstd" {
  if (v === "none" || v === "zstd") return v;
  throw new NovaError("NOVA_BAD_REQUEST", `--multifd-compression must be none or zstd, got "${v}"`);
}

function parseTransport(v: string): "auto" | "qemu" | "dwcp" {
  if (v === "auto" || v === "qemu" || v === "dwcp") return v;
  throw new NovaError("NOVA_BAD_REQUEST", `--transport must be auto, qemu or dwcp, got "${v}"`);
}
