/** `novacron host list|show|cordon|uncordon`. */
import type { Command } from "commander";
import type { Host, HostList } from "../../api/types/hosts.js";
import { seg } from "../client.js";
import { apiFor } from "../context.js";
import { formatBytes, printFields, printJson, printTable } from "../output.js";

/** The host's QEMU in a line: version, binary and the range of q35 machine types it offers. */
export function qemuLine(h: Pick<Host, "qemu">): string {
  const q = h.qemu;
  if (!q) return "not reported (the agent predates QEMU reporting; upgrade it)";
  const oldest = q.machineTypes.at(-1);
  const newest = q.machineTypes[0];
  const range = oldest && newest && oldest !== newest ? `${oldest} … ${newest}` : (newest ?? "none");
  return `${q.version} (${q.text}) at ${q.binary}; machine types ${range}, q35 = ${q.q35Alias}`;
}

function printHost(h: Host): void {
  printFields([
    ["Name", h.name],
    ["ID", h.id],
    ["Liveness", h.liveness],
    ["Cordoned", h.cordoned],
    ["Accelerator", `${h.accel} (${h.accelReason})`],
    ["QEMU", qemuLine(h)],
    ["vCPUs", h.vcpus],
    ["Memory", `${h.freeMemoryMiB} MiB free of ${h.memoryMiB} MiB (${h.allocatedMemoryMiB} MiB allocated)`],
    ["Disk", `${formatBytes(h.diskFreeBytes)} free of ${formatBytes(h.diskTotalBytes)}`],
    ["VMs", h.vmCount],
    ["Agent", `${h.agentUrl} (v${h.agentVersion})`],
    ["Last heartbeat", h.lastHeartbeatAt],
  ]);
}

/** Registers the host commands. */
export function registerHostCommands(program: Command): void {
  const host = program.command("host").description("Inspect and cordon hypervisor hosts");

  host
    .command("list")
    .description("List hosts with liveness and capacity")
    .action(async (_o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { hosts } = await api.get<HostList>("/v1/hosts");
      if (json) return printJson(hosts);
      printTable(
        ["NAME", "LIVENESS", "CORDONED", "ACCEL", "QEMU", "VCPUS", "MEM FREE/TOTAL", "VMS", "AGENT"],
        hosts.map((h) => [
          h.name,
          h.liveness,
          h.cordoned ? "yes" : "no",
          h.accel,
          h.qemu?.version ?? "-",
          h.vcpus,
          `${h.freeMemoryMiB}/${h.memoryMiB} MiB`,
          h.vmCount,
          h.agentUrl,
        ]),
      );
    });

  host
    .command("show <host>")
    .description("Show one host")
    .action(async (name: string, _o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const h = await api.get<Host>(`/v1/hosts/${seg(name)}`);
      if (json) return printJson(h);
      printHost(h);
    });

  for (const [verb, cordoned] of [
    ["cordon", true],
    ["uncordon", false],
  ] as const) {
    host
      .command(`${verb} <host>`)
      .description(
        cordoned ? "Stop placing new VMs on a host (running VMs stay)" : "Allow placing VMs on a host again",
      )
      .action(async (name: string, _o, cmd: Command) => {
        const { api, json } = await apiFor(cmd);
        const h = await api.post<Host>(`/v1/hosts/${seg(name)}/cordon`, { cordoned });
        if (json) return printJson(h);
        process.stdout.write(`Host ${h.name} ${cordoned ? "cordoned" : "uncordoned"}\n`);
      });
  }
}
