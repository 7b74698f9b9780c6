/**
 * `novacron cluster leader`: the server replicas of this cluster's control plane, which one
 * leads (epoch, since when) and which answered (docs/operations.md "Running replicas").
 */
import type { Command } from "commander";
import type { ControlPlane } from "../../api/types/control-plane.js";
import { apiFor } from "../context.js";
import { printFields, printJson, printTable } from "../output.js";
import { formatSeconds } from "./clusters.js";

export const REPLICA_HEADERS = ["REPLICA", "ROLE", "API", "HOST", "VERSION", "LAST SEEN", "LIVE"];

/** The rows of the replica table: the leader first, then the live ones. */
export function replicaRows(cp: ControlPlane): string[][] {
  const order = (r: ControlPlane["replicas"][number]) => (r.leader ? 0 : r.live ? 1 : 2);
  return [...cp.replicas]
    .sort((a, b) => order(a) - order(b))
    .map((r) => [
      `${r.id}${r.id === cp.self ? " (answered)" : ""}`,
      r.leader ? "leader" : "follower",
      r.apiUrl,
      r.hostName,
      r.version,
      formatSeconds(r.lastSeenAgeSeconds),
      r.live ? "yes" : "no",
    ]);
}

/** Registers `cluster leader` under the `cluster` command. */
export function registerControlPlaneCommand(cluster: Command): void {
  cluster
    .command("leader")
    .description("Show the control plane's server replicas and which one leads (runs the controllers)")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const cp = await api.get<ControlPlane>("/v1/control-plane");
      if (json) return printJson(cp);
      const leader = cp.leader;
      printFields([
        [
          "Leader",
          leader
            ? `${leader.replica}${leader.apiUrl ? ` (${leader.apiUrl})` : ""}`
            : "none (an election is under way)",
        ],
        ["Epoch", cp.epoch],
        ["Leader since", leader?.since ?? ""],
        [
          "Lease",
          leader
            ? `runs out in ${(leader.expiresInMs / 1000).toFixed(1)} s unless renewed (TTL ${cp.leaseTtlMs / 1000} s)`
            : "",
        ],
      ]);
      process.stdout.write("\n");
      printTable(REPLICA_HEADERS, replicaRows(cp));
    });
}
