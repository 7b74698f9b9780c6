/**
 * `novacron cluster list` and `novacron cluster peer token|add|list|remove|unquarantine|evidence`
 * (and `cluster leader`, control-plane.ts):
 * the federation (docs/federation.md) as an admin sees it. A peer not heard from within the
 * server's staleness bound is always shown as stale, never as current; a quarantined peer
 * shows why.
 */

import type { Static } from "@sinclair/typebox";
import type { Command } from "commander";
import type { Handoff, HandoffList } from "../../api/types/acp.js";
import {
  type EvidenceList,
  type FederatedCluster,
  type FederatedClusterList,
  type Peer,
  type PeeringTokenCreated,
  PeeringTokenPost,
  type PeerList,
  type PeerRemoved,
} from "../../api/types/federation.js";
import { NovaError } from "../../lib/errors.js";
import { seg } from "../client.js";
import { apiFor } from "../context.js";
import { printFields, printJson, printTable } from "../output.js";
import { registerControlPlaneCommand } from "./control-plane.js";

/** The bounds the server puts on a peering token's lifetime (PeeringTokenPost). */
export const PEERING_TTL_BOUNDS = {
  min: PeeringTokenPost.properties.ttlSeconds.minimum ?? 60,
  max: PeeringTokenPost.properties.ttlSeconds.maximum ?? 7 * 86_400,
} as const;

/** Parses `--ttl`: whole seconds within the bounds the server accepts (NOVA_CONFIG, exit 2, otherwise). */
export function parseTtl(value: string, flag = "--ttl"): number {
  const n = Number(value);
  const { min, max } = PEERING_TTL_BOUNDS;
  if (value.trim() === "" || !Number.isInteger(n) || n < min || n > max)
    throw new NovaError(
      "NOVA_CONFIG",
      `${flag} must be a whole number of seconds from ${min} to ${max}, got ${value}`,
    );
  return n;
}

/** "3s ago", "5m ago", "2h ago", "4d ago" for an age in seconds (never negative). */
export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 120) return `${s}s ago`;
  if (s < 2 * 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 2 * 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** How long ago `at` was by this machine's clock; "never" when it never happened. */
export function formatAge(at: string | null, now: number): string {
  if (at === null) return "never";
  const t = Date.parse(at);
  if (Number.isNaN(t)) return at;
  // This machine's clock may run behind the server's: a contact "in the future" is just now.
  return formatSeconds((now - t) / 1000);
}

/**
 * The age of a last contact: the server's own figure (its database clock) when it gives
 * one, so a CLI machine whose clock is off still shows the truth; else by this clock.
 */
export function contactAge(
  x: { lastContactAt: string | null; lastContactAgeSeconds?: number | null },
  now: number,
): string {
  if (x.lastContactAt === null) return "never";
  return typeof x.lastContactAgeSeconds === "number"
    ? formatSeconds(x.lastContactAgeSeconds)
    : formatAge(x.lastContactAt, now);
}

/** A state with the stale marker: "active (stale)" for data that may be out of date. */
export function stateLabel(state: string, stale: boolean): string {
  return stale ? `${state} (stale)` : state;
}

/** "1 record", "3 records". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Why a peer is not plain active: its quarantine ("kind: reason (N proofs)") or its last error. */
export function peerReason(p: Pick<Peer, "quarantine" | "lastError">): string {
  if (p.quarantine) {
    const q = p.quarantine;
    return `${q.kind ? `${q.kind}: ` : ""}${q.reason} (${plural(q.evidence, "proof")})`;
  }
  return p.lastError ? `last error: ${p.lastError}` : "";
}

export const CLUSTER_HEADERS = ["NAME", "SELF", "STATE", "VMS", "HOSTS", "LAG", "LAST CONTACT", "STALE"];

/** The rows of `cluster list`. */
export function clusterRows(clusters: readonly FederatedCluster[], now: number): string[][] {
  return clusters.map((c) => [
    c.name,
    c.self ? "*" : "",
    stateLabel(c.state, c.stale),
    String(c.vms),
    String(c.hosts),
    c.self ? "-" : plural(c.lagRecords, "record"),
    // This cluster is never "contacted"; "never" would read as a problem.
    c.self ? "-" : contactAge(c, now),
    c.stale ? "yes" : "no",
  ]);
}

export const PEER_HEADERS = ["NAME", "STATE", "FEDERATION", "LAG", "LAST CONTACT", "STALE", "REASON"];

/** The rows of `cluster peer list`. */
export function peerRows(peers: readonly Peer[], now: number): string[][] {
  return peers.map((p) => [
    p.name,
    stateLabel(p.state, p.stale),
    p.federation,
    plural(p.lagRecords, "record"),
    contactAge(p, now),
    p.stale ? "yes" : "no",
    peerReason(p),
  ]);
}

/** What `cluster peer remove` says the peer still held. */
export function removedSummary(r: PeerRemoved): string {
  const { hosts, vms, images } = r.held;
  return `${r.peer.name} held ${plural(hosts, "host")}, ${plural(vms, "VM")}, ${plural(images, "image")}; their records are dropped from this cluster's view`;
}

type EvidenceItem = Static<typeof EvidenceList>["evidence"][number];

export const EVIDENCE_HEADERS = ["ID", "KIND", "DETECTED AT", "RECORDS", "DETAIL"];

/** The rows of `cluster peer evidence`. */
export function evidenceRows(evidence: readonly EvidenceItem[]): string[][] {
  return evidence.map((e) => [String(e.id), e.kind, e.detectedAt, String(e.records.length), e.detail]);
}

function printPeer(p: Peer, now: number): void {
  printFields([
    ["Name", p.name],
    ["ID", p.id],
    ["State", stateLabel(p.state, p.stale)],
    ["API", p.apiUrl],
    ["Federation address", p.federation],
    ["CA fingerprint", p.caFingerprint],
    ["Signing key fingerprint", p.signingKeyFingerprint],
    ["Protocol", p.protocol],
    ["Added", p.addedAt],
    ["Last contact", p.lastContactAt ? `${contactAge(p, now)} (${p.lastContactAt})` : "never"],
    ["Lag", plural(p.lagRecords, "record")],
    ["Last error", p.lastError],
    [
      "Quarantine",
      p.quarantine
        ? `${peerReason(p)} since ${p.quarantine.at}; see: novacron cluster peer evidence ${p.name}`
        : "",
    ],
  ]);
}

export const HANDOFF_HEADERS = ["VM", "SIDE", "PEER", "EPOCH", "STATE", "WAITS FOR"];

/**
 * The rows of `cluster handoffs`: a hand-off that only an operator can move on says so
 * ("decision: …"); one still at work says what it is doing.
 */
export function handoffRows(handoffs: readonly Handoff[]): (string | number | null)[][] {
  return handoffs.map((h) => [
    h.vm,
    h.side,
    h.peer.name ?? h.peer.id,
    `${h.fromEpoch}→${h.state === "returned" || h.state === "reclaimed" ? h.fromEpoch + 2 : h.fromEpoch + 1}`,
    h.state,
    h.needsDecision ? `decision: ${h.needsDecision}` : h.settled ? "" : h.reason,
  ]);
}

/** Registers `cluster`. */
export function registerClusterCommands(program: Command): void {
  const cluster = program
    .command("cluster")
    .description(
      "The federation: this cluster and its peers, peering, quarantine; its control plane's leader",
    );
  registerControlPlaneCommand(cluster);

  cluster
    .command("list")
    .description("List this cluster and every peer with VM and host counts, lag and staleness")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { clusters } = await api.get<Static<typeof FederatedClusterList>>("/v1/federation/clusters");
      if (json) return printJson(clusters);
      printTable(CLUSTER_HEADERS, clusterRows(clusters, Date.now()));
    });

  cluster
    .command("handoffs")
    .description(
      "List the VM ownership hand-offs with peers (migrations between clusters) and what each waits for",
    )
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { handoffs } = await api.get<HandoffList>("/v1/federation/handoffs");
      if (json) return printJson(handoffs);
      printTable(HANDOFF_HEADERS, handoffRows(handoffs));
    });

  const peer = cluster.command("peer").description("Peer with other clusters, inspect and remove peers");

  peer
    .command("token")
    .description("Make a one-time peering token for another cluster to add this one as a peer")
    .option(
      "--ttl <seconds>",
      `how long the token stays usable (${PEERING_TTL_BOUNDS.min} to ${PEERING_TTL_BOUNDS.max})`,
      "3600",
    )
    .action(async (o: { ttl: string }, cmd: Command) => {
      const ttlSeconds = parseTtl(o.ttl);
      const { api, json } = await apiFor(cmd);
      const made = await api.post<PeeringTokenCreated>("/v1/federation/tokens", { ttlSeconds });
      if (json) return printJson(made);
      process.stdout.write(
        `Peering token (one use, expires ${made.expiresAt}):

  ${made.token}

On the other cluster run: novacron cluster peer add ${made.token}
`,
      );
    });

  peer
    .command("add <token>")
    .description("Peer with the cluster that made TOKEN (novacron cluster peer token, run there)")
    .action(async (token: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const p = await api.post<Peer>("/v1/federation/peers", { token });
      if (json) return printJson(p);
      process.stderr.write(`Peered with cluster ${p.name}\n`);
      printPeer(p, Date.now());
    });

  peer
    .command("list")
    .description("List peers with their state, lag, last contact and, when quarantined, why")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { peers } = await api.get<Static<typeof PeerList>>("/v1/federation/peers");
      if (json) return printJson(peers);
      printTable(PEER_HEADERS, peerRows(peers, Date.now()));
    });

  peer
    .command("remove <name>")
    .description("Remove a peer: no more exchange, its records are dropped from this cluster's view")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const r = await api.delete<PeerRemoved>(`/v1/federation/peers/${seg(name)}`);
      if (json) return printJson(r);
      process.stdout.write(`Peer ${r.peer.name} removed. ${removedSummary(r)}\n`);
    });

  peer
    .command("unquarantine <name>")
    .description("Lift a peer's quarantine (an admin's decision; the evidence is kept)")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const p = await api.post<Peer>(`/v1/federation/peers/${seg(name)}/unquarantine`);
      if (json) return printJson(p);
      process.stderr.write(`Quarantine of peer ${p.name} lifted\n`);
      printPeer(p, Date.now());
    });

  peer
    .command("evidence <name>")
    .description("List the stored evidence against a peer (what got it quarantined)")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { evidence } = await api.get<Static<typeof EvidenceList>>(
        `/v1/federation/peers/${seg(name)}/evidence`,
      );
      if (json) return printJson(evidence);
      printTable(EVIDENCE_HEADERS, evidenceRows(evidence));
    });
}
