/**
 * Placement commands (docs/placement.md): `novacron placement group create|list|show|
 * add-member|remove-member|delete`, `novacron placement explain VM`, the host's placement
 * settings (`host label|set-site|set-weight`), and the printing of an explanation that
 * `vm create --dry-run` shares.
 */
import type { Command } from "commander";
import type { Host } from "../../api/types/hosts.js";
import type {
  HostLabelsPost,
  PlacementExplanation,
  PlacementGroup,
  PlacementGroupList,
  PlacementGroupsPost,
} from "../../api/types/placement.js";
import { NovaError } from "../../lib/errors.js";
import { seg } from "../client.js";
import { apiFor } from "../context.js";
import { printFields, printJson, printTable } from "../output.js";

/** Commander's collector for a repeatable option. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `k=v` arguments as labels; NOVA_UNPROCESSABLE naming one that is not `key=value`. */
export function parseLabels(pairs: readonly string[], flag: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf("=");
    if (i <= 0 || i === p.length - 1)
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        `${flag} ${JSON.stringify(p)} is not a label: write key=value, e.g. disk=ssd.`,
        { details: { field: flag, value: p } },
      );
    labels[p.slice(0, i)] = p.slice(i + 1);
  }
  return labels;
}

/** A host's labels in one line (`-` for none). */
export function labelsText(labels: Readonly<Record<string, string>>): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return pairs.length > 0 ? pairs.join(",") : "-";
}

/** The rows of an explanation's table: each host's verdict, best first. */
export function explanationRows(e: PlacementExplanation): (string | number)[][] {
  return e.hosts.map((v) =>
    v.feasible
      ? [
          v.host === e.chosen ? `${v.host} *` : v.host,
          "ok",
          v.score,
          Object.entries(v.scores)
            .map(([k, s]) => `${k}=${s}`)
            .join(" "),
        ]
      : [v.host, `rejected: ${v.rejectedBy}`, "-", v.reason],
  );
}

/** One line summing up why hosts were turned away (`memory: 2 hosts, affinity: 1 host`). */
export function rejectedText(e: PlacementExplanation): string {
  const parts = Object.entries(e.rejected)
    .sort((a, b) => b[1] - a[1])
    .map(([check, n]) => `${check}: ${n} host${n === 1 ? "" : "s"}`);
  return parts.length > 0 ? parts.join(", ") : "none";
}

/** Prints an explanation: the chosen host, the policy, every host's verdict. */
export function printExplanation(e: PlacementExplanation, heading: string): void {
  process.stdout.write(
    `${heading}: ${e.chosen ?? "no host can take it"} (strategy ${e.policy.strategy}, memory ×${e.policy.memoryOvercommit}, vCPUs ×${e.policy.vcpuOvercommit}; rejected: ${rejectedText(e)})\n`,
  );
  printTable(["HOST", "VERDICT", "SCORE", "SCORES / REASON"], explanationRows(e));
}

function printGroup(g: PlacementGroup): void {
  printFields([
    ["Name", g.name],
    ["ID", g.id],
    ["Policy", `${g.policy} per ${g.scope} (${g.enforcement})`],
    ["Members", g.members.length > 0 ? g.members.join(", ") : "none"],
    ["Updated", g.updatedAt],
  ]);
}

/** Registers `host label`, `host set-site` and `host set-weight` under `host`. */
export function registerHostPlacementCommands(host: Command): void {
  host
    .command("label <host> [labels...]")
    .description(
      "Set labels on a host (key=value ...) and remove others (--remove key); VMs select hosts by them",
    )
    .option("--remove <key>", "remove this label (repeatable)", collect, [])
    .action(async (name: string, pairs: string[], o: { remove: string[] }, cmd: Command) => {
      const body: HostLabelsPost = { set: parseLabels(pairs, "label"), remove: o.remove };
      const { api, json } = await apiFor(cmd);
      const h = await api.post<Host>(`/v1/hosts/${seg(name)}/labels`, body);
      if (json) return printJson(h);
      process.stdout.write(`Host ${h.name} labels: ${labelsText(h.labels)}\n`);
    });

  host
    .command("set-site <host> [site]")
    .description("Put a host in a site (datacenter); --none takes it out of any")
    .option("--none", "the host is in no site")
    .action(async (name: string, site: string | undefined, o: { none?: boolean }, cmd: Command) => {
      if ((site === undefined) === !o.none)
        throw new NovaError("NOVA_UNPROCESSABLE", "Give a site name, or --none (not both).", {
          details: { field: "site" },
        });
      const { api, json } = await apiFor(cmd);
      const h = await api.put<Host>(`/v1/hosts/${seg(name)}/site`, { site: site ?? null });
      if (json) return printJson(h);
      process.stdout.write(`Host ${h.name} is in site ${h.site ?? "(none)"}\n`);
    });

  host
    .command("set-weight <host> <weight>")
    .description("The operator's preference for a host, -1 (avoid) .. 1 (prefer); 0: none")
    .action(async (name: string, weight: string, _o, cmd: Command) => {
      const w = Number(weight);
      if (weight.trim() === "" || !Number.isFinite(w) || w < -1 || w > 1)
        throw new NovaError(
          "NOVA_UNPROCESSABLE",
          `Weight ${JSON.stringify(weight)} is not a number from -1 to 1.`,
          {
            details: { field: "weight", value: weight },
          },
        );
      const { api, json } = await apiFor(cmd);
      const h = await api.put<Host>(`/v1/hosts/${seg(name)}/weight`, { weight: w });
      if (json) return printJson(h);
      process.stdout.write(`Host ${h.name} placement weight ${h.placementWeight}\n`);
    });
}

/** Registers `placement`. */
export function registerPlacementCommands(program: Command): void {
  const placement = program
    .command("placement")
    .description("Placement groups (affinity rules) and why a VM goes where it goes");

  placement
    .command("explain <vm>")
    .description("Where an existing VM could move: every host's verdict (why it was rejected, or its scores)")
    .action(async (vm: string, _o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const e = await api.get<PlacementExplanation>(`/v1/vms/${seg(vm)}/placement`);
      if (json) return printJson(e);
      printExplanation(e, `VM ${e.vm} would move to`);
    });

  const group = placement.command("group").description("Placement groups: VMs that run together or apart");

  group
    .command("create <name>")
    .description("Create a placement group")
    .requiredOption("--policy <policy>", "affinity (together) or anti-affinity (apart)")
    .option("--scope <scope>", "host or site", "host")
    .option("--enforcement <enforcement>", "hard (a rule) or soft (a preference)", "hard")
    .option("--vm <vm>", "a member VM (repeatable)", collect, [])
    .action(
      async (
        name: string,
        o: { policy: string; scope: string; enforcement: string; vm: string[] },
        cmd: Command,
      ) => {
        const body = {
          name,
          policy: oneOf(o.policy, ["affinity", "anti-affinity"], "--policy"),
          scope: oneOf(o.scope, ["host", "site"], "--scope"),
          enforcement: oneOf(o.enforcement, ["hard", "soft"], "--enforcement"),
          members: o.vm,
        } as PlacementGroupsPost;
        const { api, json } = await apiFor(cmd);
        const g = await api.post<PlacementGroup>("/v1/placement-groups", body);
        if (json) return printJson(g);
        printGroup(g);
      },
    );

  group
    .command("list")
    .description("List placement groups")
    .action(async (_o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { groups } = await api.get<PlacementGroupList>("/v1/placement-groups");
      if (json) return printJson(groups);
      printTable(
        ["NAME", "POLICY", "SCOPE", "ENFORCEMENT", "MEMBERS"],
        groups.map((g) => [g.name, g.policy, g.scope, g.enforcement, g.members.join(",") || "-"]),
      );
    });

  group
    .command("show <name>")
    .description("Show a placement group")
    .action(async (name: string, _o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const g = await api.get<PlacementGroup>(`/v1/placement-groups/${seg(name)}`);
      if (json) return printJson(g);
      printGroup(g);
    });

  group
    .command("add-member <name> <vms...>")
    .description("Add VMs to a placement group")
    .action(async (name: string, vms: string[], _o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const g = await api.post<PlacementGroup>(`/v1/placement-groups/${seg(name)}/members`, { vms });
      if (json) return printJson(g);
      printGroup(g);
    });

  group
    .command("remove-member <name> <vm>")
    .description("Remove a VM from a placement group")
    .action(async (name: string, vm: string, _o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const g = await api.delete<PlacementGroup>(`/v1/placement-groups/${seg(name)}/members/${seg(vm)}`);
      if (json) return printJson(g);
      printGroup(g);
    });

  group
    .command("delete <name>")
    .description("Delete a placement group (its VMs stay where they are)")
    .action(async (name: string, _o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const g = await api.delete<PlacementGroup>(`/v1/placement-groups/${seg(name)}`);
      if (json) return printJson(g);
      process.stdout.write(`Placement group ${g.name} deleted\n`);
    });
}

function oneOf(value: string, allowed: readonly string[], flag: string): string {
  if (!allowed.includes(value))
    throw new NovaError(
      "NOVA_UNPROCESSABLE",
      `${flag} ${JSON.stringify(value)}: use ${allowed.join(" or ")}.`,
      {
        details: { field: flag, value },
      },
    );
  return value;
}
