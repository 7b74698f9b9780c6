/** `novacron host list|show|cordon|uncordon|join-token|remove|drain|drain-status|label|set-site|set-weight`. */

import type { Static } from "@sinclair/typebox";
import type { Command } from "commander";
import type { Host, HostList, HostRemoved, JoinTokenCreated } from "../../api/types/hosts.js";
import { parsePositiveInt } from "../../lib/flags.js";
import { seg } from "../client.js";
import { apiFor } from "../context.js";
import { formatBytes, printFields, printJson, printTable } from "../output.js";
import { registerHostDrainCommands } from "./host-drain.js";
import { labelsText, registerHostPlacementCommands } from "./placement.js";

/** The host's QEMU in a line: version, binary and the range of q35 machine types it offers. */
export function qemuLine(h: Pick<Host, "qemu">): string {
  const q = h.qemu;
  if (!q) return "not reported (the agent predates QEMU reporting; upgrade it)";
  const oldest = q.machineTypes.at(-1);
  const newest = q.machineTypes[0];
  const range = oldest && newest && oldest !== newest ? `${oldest} … ${newest}` : (newest ?? "none");
  return `${q.version} (${q.text}) at ${q.binary}; machine types ${range}, q35 = ${q.q35Alias}`;
}

/** The host's drain in a word or two: draining, cancelling, or how the last one ended; "-" when never drained. */
export function drainText(h: Pick<Host, "drain">): string {
  if (!h.drain) return "-";
  if (h.drain.state === "draining") return h.drain.cancelRequested ? "draining (cancelling)" : "draining";
  return `last ${h.drain.state}`;
}

function printHost(h: Host): void {
  printFields([
    ["Name", h.name],
    ["ID", h.id],
    ["Liveness", h.liveness],
    ["Cordoned", h.cordoned],
    ["Drain", drainText(h)],
    ["Site", h.site ?? "-"],
    ["Labels", labelsText(h.labels)],
    ["Placement weight", h.placementWeight],
    ["Accelerator", `${h.accel} (${h.accelReason})`],
    ["QEMU", qemuLine(h)],
    ["vCPUs", `${h.vcpus} (${h.allocatedVcpus} allocated)`],
    ["Memory", `${h.freeMemoryMiB} MiB free of ${h.memoryMiB} MiB (${h.allocatedMemoryMiB} MiB allocated)`],
    ["Disk", `${formatBytes(h.diskFreeBytes)} free of ${formatBytes(h.diskTotalBytes)}`],
    ["VMs", h.vmCount],
    ["Agent", `${h.agentUrl} (v${h.agentVersion})`],
    [
      "Certificate",
      h.certificate
        ? `${h.certificate.fingerprint}, serial ${h.certificate.serial}, valid until ${h.certificate.notAfter}`
        : "none (not joined with a certificate; make a join token)",
    ],
    ["Last heartbeat", h.lastHeartbeatAt],
  ]);
}

/** Registers the host commands. */
export function registerHostCommands(program: Command): void {
  const host = program.command("host").description("Add, inspect, cordon, drain and remove hypervisor hosts");
  registerHostDrainCommands(host);
  registerHostPlacementCommands(host);

  host
    .command("join-token <name>")
    .description("Make a one-time join token for an agent to join as host NAME")
    .option("--ttl <seconds>", "how long the token stays usable", "3600")
    .option("--replace", "let it take over an existing host of this name (e.g. a reinstalled machine)")
    .action(async (name: string, o: { ttl: string; replace?: boolean }, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const made = await api.post<Static<typeof JoinTokenCreated>>("/v1/join-tokens", {
        name,
        ttlSeconds: parsePositiveInt(o.ttl, "--ttl"),
        replace: Boolean(o.replace),
      });
      if (json) return printJson(made);
      process.stdout.write(
        `Join token for host ${name} (one use, expires ${made.info.expiresAt}; it pins CA ${made.caFingerprint}):

  ${made.token}

On that host run: novacron agent --server <this server's URL> --name ${name} --join-token <token>
`,
      );
    });

  host
    .command("remove <host>")
    .description("Remove a host that runs no VMs; its certificate is refused from now on")
    .action(async (name: string, _o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const r = await api.delete<Static<typeof HostRemoved>>(`/v1/hosts/${seg(name)}`);
      if (json) return printJson(r);
      process.stdout.write(
        `Host ${r.name} removed; its certificate is revoked${r.deleted ? "" : " (kept as a dead host: migration history names it)"}
`,
      );
    });

  host
    .command("list")
    .description("List hosts with liveness and capacity")
    .action(async (_o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { hosts } = await api.get<HostList>("/v1/hosts");
      if (json) return printJson(hosts);
      printTable(
        [
          "NAME",
          "LIVENESS",
          "CORDONED",
          "DRAIN",
          "SITE",
          "LABELS",
          "ACCEL",
          "QEMU",
          "VCPUS",
          "MEM FREE/TOTAL",
          "VMS",
          "AGENT",
        ],
        hosts.map((h) => [
          h.name,
          h.liveness,
          h.cordoned ? "yes" : "no",
          drainText(h),
          h.site ?? "-",
          labelsText(h.labels),
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
