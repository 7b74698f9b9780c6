/** `novacron vm create|list|show|set|start|stop|restart|delete|console`. */
import { setTimeout as sleep } from "node:timers/promises";
import type { Static } from "@sinclair/typebox";
import type { Command } from "commander";
import type { FederatedVm, FederatedVmList } from "../../api/types/federation.js";
import type { VmDryRun } from "../../api/types/placement.js";
import type { Vm, VmConsole, VmList, VmsPost } from "../../api/types/vms.js";
import { isNovaError, NovaError } from "../../lib/errors.js";
import { parsePositiveInt } from "../../lib/flags.js";
import { validateMachineType } from "../../lib/qemu-support.js";
import type { ApiClient } from "../client.js";
import { seg } from "../client.js";
import { apiFor } from "../context.js";
import { printFields, printJson, printTable } from "../output.js";
import { stateLabel } from "./clusters.js";
import { collect, labelsText, parseLabels, printExplanation } from "./placement.js";

export const FEDERATED_VM_HEADERS = ["NAME", "CLUSTER", "EPOCH", "STATE", "HOST", "VCPUS", "MEMORY"];

/**
 * The rows of `vm list --all-clusters`: a VM of a cluster not heard from within the staleness
 * bound (or quarantined) is marked "(stale)", never shown as current.
 */
export function federatedVmRows(vms: readonly FederatedVm[]): (string | number | null)[][] {
  return vms.map((v) => [
    v.name,
    v.cluster.name,
    v.epoch,
    stateLabel(v.state, v.stale),
    v.host,
    v.vcpus,
    `${v.memoryMiB} MiB`,
  ]);
}

/** Which end state an action waits for. */
const WAIT_TARGET = {
  create: "running",
  start: "running",
  restart: "running",
  stop: "stopped",
  delete: "gone",
} as const;

/**
 * Polls the VM until it reaches `target` (or `gone`), printing each state change to
 * stderr; fails with the VM's reason when it lands in `failed` instead.
 */
export async function waitForVm(
  api: ApiClient,
  id: string,
  target: "running" | "stopped" | "gone",
  options: { timeoutMs: number; quiet?: boolean },
): Promise<Vm | undefined> {
  const deadline = Date.now() + options.timeoutMs;
  let last = "";
  const started = Date.now();
  for (;;) {
    let vm: Vm | undefined;
    try {
      vm = await api.get<Vm>(`/v1/vms/${seg(id)}`);
    } catch (err) {
      if (target === "gone" && isNovaError(err, "NOVA_NOT_FOUND")) {
        if (!options.quiet) process.stderr.write(`  [${elapsed(started)}] deleted\n`);
        return undefined;
      }
      throw err;
    }
    const line = `${vm.state}${vm.stateReason ? ` (${vm.stateReason})` : ""}`;
    if (line !== last && !options.quiet)
      process.stderr.write(`  [${elapsed(started)}] ${vm.name}: ${line}${vm.host ? ` on ${vm.host}` : ""}\n`);
    last = line;
    if (vm.state === target) return vm;
    if (vm.state === "failed") {
      throw new NovaError("NOVA_QEMU_ERROR", `VM ${vm.name} failed: ${vm.stateReason}`, {
        details: { vm: vm.name },
      });
    }
    if (Date.now() > deadline) {
      throw new NovaError(
        "NOVA_TIMEOUT",
        `VM ${vm.name} did not become ${target} within ${options.timeoutMs / 1000} s; it is ${line}.`,
      );
    }
    await sleep(300);
  }
}

function elapsed(started: number): string {
  return `${((Date.now() - started) / 1000).toFixed(1)}s`;
}

function printVm(v: Vm): void {
  printFields([
    ["Name", v.name],
    ["ID", v.id],
    ["State", `${v.state}${v.stateReason ? ` (${v.stateReason})` : ""}`],
    ["Desired", v.desiredState],
    ["Observed", `${v.observedState}${v.observedReason ? ` (${v.observedReason})` : ""}`],
    ["Host", v.host],
    [
      "Placement",
      `${v.requiredSite ? `site ${v.requiredSite}` : "any site"}; host labels ${labelsText(v.hostSelector)}`,
    ],
    ["Image", v.image],
    ["vCPUs", v.vcpus],
    ["Memory", `${v.memoryMiB} MiB`],
    ["Kernel args", v.kernelArgs],
    [
      "Machine type",
      v.machineType ?? "not recorded yet (q35 of its host; recorded at its next start or migration)",
    ],
    ["HA", v.ha],
    ["Disk", v.storagePool ? `storage pool ${v.storagePool}` : "its host's local disk"],
    ["Generation", v.generation],
    ["Created", v.createdAt],
    ["State since", v.stateChangedAt],
  ]);
}

interface WaitOptions {
  wait?: boolean;
  timeout?: string;
}

/** Registers the VM commands. */
export function registerVmCommands(program: Command): void {
  const vm = program.command("vm").description("Create and operate virtual machines");

  vm.command("create <name>")
    .description(
      "Create a VM; placement (ITP) picks the host, --dry-run shows where and why without creating it",
    )
    .requiredOption("--image <image>", "image name or id")
    .option("--vcpus <n>", "virtual CPUs", "1")
    .option("--memory <MiB>", "memory in MiB", "256")
    .option("--kernel-args <args>", "appended to the image's kernel command line (e.g. nc.dirty_mb=64)")
    .option(
      "--machine-type <type>",
      "pin the QEMU machine type, e.g. pc-q35-7.2 to keep the VM movable to QEMU 7.2 hosts (default: the newest of the host it is placed on)",
    )
    .option(
      "--storage-pool <pool>",
      "keep its disk in this shared storage pool (novacron storage pool list) instead of its host's local disk; needed for --ha restart",
    )
    .option(
      "--ha <mode>",
      "restart: run it again on another host that sees its storage pool when its host dies; none (default): stay down with the host",
    )
    .option("--no-start", "create it stopped")
    .option("--host-label <key=value>", "run only on hosts with this label (repeatable)", collect, [])
    .option("--site <site>", "run only in this site")
    .option("--group <group>", "join this placement group (repeatable)", collect, [])
    .option("--dry-run", "create nothing: show the host it would go to and every host's verdict")
    .option("--wait", "wait until it runs, showing progress")
    .option("--timeout <seconds>", "with --wait: give up after this long", "300")
    .action(
      async (
        name: string,
        o: {
          image: string;
          vcpus: string;
          memory: string;
          kernelArgs?: string;
          machineType?: string;
          storagePool?: string;
          ha?: string;
          start: boolean;
          hostLabel: string[];
          site?: string;
          group: string[];
          dryRun?: boolean;
        } & WaitOptions,
        cmd: Command,
      ) => {
        if (o.machineType !== undefined) validateMachineType(o.machineType, "--machine-type");
        const { api, json } = await apiFor(cmd);
        const body: VmsPost = {
          name,
          image: o.image,
          vcpus: parsePositiveInt(o.vcpus, "--vcpus"),
          memoryMiB: parsePositiveInt(o.memory, "--memory"),
          start: o.start,
          ...(o.kernelArgs ? { kernelArgs: o.kernelArgs } : {}),
          ...(o.machineType !== undefined ? { machineType: o.machineType } : {}),
          ...(o.hostLabel.length > 0 ? { hostSelector: parseLabels(o.hostLabel, "--host-label") } : {}),
          ...(o.site !== undefined ? { site: o.site } : {}),
          ...(o.group.length > 0 ? { groups: o.group } : {}),
          ...(o.storagePool !== undefined ? { storagePool: o.storagePool } : {}),
          ...(o.ha !== undefined ? { ha: parseHa(o.ha) } : {}),
        };
        if (o.dryRun) {
          const d = await api.post<VmDryRun>("/v1/vms?dryRun=true", body);
          if (json) return printJson(d);
          return printExplanation(d.explanation, `Dry run, nothing created: VM ${name} would be placed on`);
        }
        let v = await api.post<Vm>("/v1/vms", body);
        if (!json)
          process.stderr.write(
            `Created VM ${v.name} (${v.id}) on host ${v.host}${v.machineType ? `, machine type ${v.machineType}` : ""}\n`,
          );
        if (o.wait && o.start)
          v =
            (await waitForVm(api, v.id, "running", { timeoutMs: Number(o.timeout) * 1000, quiet: json })) ??
            v;
        if (json) return printJson(v);
        process.stdout.write(`${v.name} ${v.state} on ${v.host}\n`);
      },
    );

  vm.command("set <vm>")
    .description("Change a VM's settings: --ha restart|none")
    .requiredOption(
      "--ha <mode>",
      "restart: run it again on another host when its host dies (its disk must be in a storage pool); none: stay down with the host",
    )
    .action(async (name: string, o: { ha: string }, cmd: Command) => {
      const ha = parseHa(o.ha);
      const { api, json } = await apiFor(cmd);
      const v = await api.patch<Vm>(`/v1/vms/${seg(name)}`, { ha });
      if (json) return printJson(v);
      process.stdout.write(`${v.name}: ha ${v.ha}\n`);
    });

  vm.command("list")
    .description("List VMs")
    .option(
      "--all-clusters",
      "list the VMs of every cluster of the federation (this one and its peers), marking those of stale clusters",
    )
    .action(async (o: { allClusters?: boolean }, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      if (o.allClusters) {
        const { vms } = await api.get<Static<typeof FederatedVmList>>("/v1/federation/vms");
        if (json) return printJson(vms);
        return printTable(FEDERATED_VM_HEADERS, federatedVmRows(vms));
      }
      const { vms } = await api.get<VmList>("/v1/vms");
      if (json) return printJson(vms);
      printTable(
        ["NAME", "STATE", "HOST", "IMAGE", "VCPUS", "MEMORY", "REASON"],
        vms.map((v) => [
          v.name,
          v.state,
          v.host,
          v.image,
          v.vcpus,
          `${v.memoryMiB} MiB`,
          v.stateReason || "",
        ]),
      );
    });

  vm.command("show <vm>")
    .description("Show one VM")
    .action(async (name: string, _o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const v = await api.get<Vm>(`/v1/vms/${seg(name)}`);
      if (json) return printJson(v);
      printVm(v);
    });

  for (const action of ["start", "stop", "restart", "delete"] as const) {
    const descriptions = {
      start: "Start a stopped or failed VM",
      stop: "Stop a VM (ACPI shutdown, hard stop after the grace period)",
      restart: "Restart a running VM (stop, then start)",
      delete: "Delete a VM and its disk",
    };
    vm.command(`${action} <vm>`)
      .description(descriptions[action])
      .option("--wait", "wait until it is done, showing progress")
      .option("--timeout <seconds>", "with --wait: give up after this long", "300")
      .action(async (name: string, o: WaitOptions, cmd: Command) => {
        const { api, json } = await apiFor(cmd);
        const route = action === "delete" ? `/v1/vms/${seg(name)}` : `/v1/vms/${seg(name)}/${action}`;
        let v: Vm | undefined = action === "delete" ? await api.delete<Vm>(route) : await api.post<Vm>(route);
        const accepted = v;
        if (o.wait)
          v = await waitForVm(api, accepted.id, WAIT_TARGET[action], {
            timeoutMs: Number(o.timeout) * 1000,
            quiet: json,
          });
        if (json) return printJson(v ?? { id: accepted.id, name: accepted.name, deleted: true });
        process.stdout.write(v ? `${v.name} ${v.state}\n` : `${accepted.name} deleted\n`);
      });
  }

  vm.command("console <vm>")
    .description("Show the tail of the VM's serial console")
    .option("-n, --lines <n>", "how many lines", "20")
    .option("-f, --follow", "keep printing new lines until interrupted")
    .action(async (name: string, o: { lines: string; follow?: boolean }, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const n = parsePositiveInt(o.lines, "--lines");
      const tail = await api.get<VmConsole>(`/v1/vms/${seg(name)}/console?lines=${n}`);
      if (json && !o.follow) return printJson(tail);
      for (const line of tail.lines) process.stdout.write(`${line}\n`);
      if (!o.follow) return;
      let seen = tail.lines;
      for (;;) {
        await sleep(1000);
        const next = (await api.get<VmConsole>(`/v1/vms/${seg(name)}/console?lines=200`)).lines;
        for (const line of newLines(seen, next)) process.stdout.write(`${line}\n`);
        seen = next;
      }
    });
}

/** Lines of `next` that come after the last line of `prev` (all of `next` if they don't overlap). */
export function newLines(prev: readonly string[], next: readonly string[]): string[] {
  if (prev.length === 0) return [...next];
  const last = prev[prev.length - 1];
  const at = next.lastIndexOf(last!);
  return at === -1 ? [...next] : next.slice(at + 1);
}

/** The --ha flag's value, or NOVA_CONFIG naming the choices. */
function parseHa(value: string): "none" | "restart" {
  if (value === "none" || value === "restart") return value;
  throw new NovaError("NOVA_CONFIG", `--ha must be restart or none, not "${value}".`, {
    details: { flag: "--ha", value },
  });
}
