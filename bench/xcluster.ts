/**
 * `npm run bench:xcluster`: a live migration to another cluster against a DWCP migration
 * inside one cluster, the same guest on the same emulated link in the same run (issue 15:
 * cross ≤ 1.2× intra, downtime ≤ 500 ms, the guest verified; the hand-off's own cost
 * reported apart).
 *
 * Two sites joined by the WAN emulator (src/testing/wanem/link.ts), and its unemulated
 * management bridge for control traffic:
 *
 *   site A: east's server, agent east-a          site B: west's server, agents east-b, west-b
 *
 * Every agent talks to its server over the management network (east-b crosses the bridge
 * to east's server, not the emulated link), as bench/migration.ts keeps control traffic off
 * the link. Each server advertises its data-plane address (`--advertise-host`), so the
 * federation between them (ASS, ACP's acp/1 requests) crosses the emulated link, and so
 * does every migration's DWCP session (agents' `--data-address`).
 *
 * Per run, both from east-a and both cold, in alternating order (intra first on odd runs):
 *   intra   east-a → east-b inside east, `transport: dwcp` (an unmeasured return follows)
 *   cross   east-a → west-b, `targetCluster: west` (DWCP, the hand-off of docs/federation.md
 *           §10); an unmeasured return to east-a at the next epoch follows
 * Before each measured migration all three agents are restarted with their DWCP
 * directories emptied (page caches, VM histories and remembered paths): each migration is a
 * first one, as `dwcp` in bench/migration.ts. The guest runs a busy workload with the
 * NC-VERIFY pattern check, and must print a newer PASS on its new host (no FAIL, no reboot).
 *
 *   --profile NAME   dc | metro | wan | intercontinental (repeatable; default wan)
 *   --link SPEC      ad-hoc link, e.g. rate=20mbit,rtt=250ms,loss=1% (repeatable)
 *   --runs N         measured pairs (default 3)
 *   --workload NAME  idle | web | db as in bench/migration.ts (default web)
 *   --memory MiB     guest memory (default 1024)
 *   --timeout S      per migration (default 900)
 *   --port N         east's server (N, federation N+1, agents N+2, N+3); west's N+10,
 *                    N+11, agent N+12 (default 18300)
 *   --json           one JSON object per line: one per migration, one summary per profile
 *
 * `total s` is the API call until the source's migration record says completed (for cross:
 * after the destination signed `owned`); `downtime ms` QEMU's; `pause ms` the guest's
 * whole pause when the record has it (result.guestPauseMs; across clusters from the resume
 * time the destination's `owned` carries; without it `~N`, QEMU's downtime + release → owned,
 * see HandoffCost). The hand-off's cost comes from
 * both servers' novacron_acp_* counters around each cross migration (docs/federation.md
 * §10, "What a hand-off costs") and their `acp.handoff` events.
 */
import { rm } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import type { MigrationResult } from "../src/api/types/migrations.js";
import { probeQemu } from "../src/compute/qemu/qemu-version.js";
import { guestImageManifest, LocalCluster } from "../src/demo/local-cluster.js";
import { waitFor } from "../src/lib/wait.js";
import { ADDR_A, ADDR_B, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";
import { median, printTable } from "./table.js";

const WORKLOADS: Record<string, string> = {
  idle: "",
  web: "nc.dirty_mb=256 nc.dirty_rate_mbps=5 nc.mix=zero:10,text:85,random:5",
  db: "nc.dirty_mb=512 nc.dirty_rate_mbps=20 nc.mix=zero:20,text:50,random:30",
};
const PATTERN = "nc.pattern_seed=5 nc.pattern_mem_mb=16 nc.pattern_disk_mb=16 nc.verify_every=3";
/** Issue 15's targets. */
const RATIO_TARGET = 1.2;
const DOWNTIME_TARGET_MS = 500;

type Method = "intra" | "cross";

/** What one hand-off cost, from both servers' counters and events. */
interface HandoffCost {
  /** acp/1 round trips each side asked (and had answered), by request. */
  source_requests: Record<string, number>;
  destination_requests: Record<string, number>;
  /** All acp/1 round trips of the hand-off, both directions. */
  round_trips: number;
  sessions_dialed: number;
  source_commits: number;
  destination_commits: number;
  /** The source's `released` to the destination's `owned` (each database's stamp). */
  release_to_owned_ms: number | null;
  /** preparing → transferring at the source: the prepare round trip and the destination's start of its copy. */
  prepare_ms: number | null;
  /** The source's `released` to its `completed` (it learned `owned`). */
  release_to_completed_ms: number | null;
  /**
   * The guest's pause, estimated as QEMU's downtime + release → owned, for a record without
   * guestPauseMs (an `owned` that did not say when the destination resumed its copy).
   * It leaves out QEMU's completion → the release commit and counts the destination's
   * resume → its `owned` commit: a few ms to tens of ms each way.
   */
  guest_pause_estimate_ms: number | null;
}

interface Row {
  kind: "migration";
  qemu_version: string;
  profile: string;
  workload: string;
  run: number;
  method: Method;
  total_s: number | null;
  downtime_ms: number | null;
  guest_pause_ms: number | null;
  bytes_on_wire: number;
  verified: boolean | null;
  state: string;
  detail: Record<string, unknown>;
  handoff?: HandoffCost;
}

interface Migration {
  id: string;
  state: string;
  stateReason: string;
  transport: string;
  result: MigrationResult;
}

const { values } = parseArgs({
  options: {
    profile: { type: "string", multiple: true },
    link: { type: "string", multiple: true },
    runs: { type: "string", default: "3" },
    workload: { type: "string", default: "web" },
    memory: { type: "string", default: "1024" },
    timeout: { type: "string", default: "900" },
    port: { type: "string", default: "18300" },
    json: { type: "boolean", default: false },
  },
});
const profiles = [...(values.profile ?? []), ...(values.link ?? [])];
if (profiles.length === 0) profiles.push("wan");
const workload = values.workload;
if (!(workload in WORKLOADS)) throw new Error(`Unknown workload ${workload}`);
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1)
  throw new Error(`--runs must be a positive integer, got ${values.runs}`);
const memoryMiB = Number(values.memory);
const timeoutS = Number(values.timeout);
const port = Number(values.port);
const log = (msg: string) => process.stderr.write(`${msg}\n`);
const QEMU_VERSION = (await probeQemu()).version;

/** A server's novacron_acp_* samples, by name and labels. */
async function acpCounters(c: LocalCluster): Promise<Record<string, number>> {
  const text = await (
    await c.fetch("/metrics", { headers: { authorization: `Bearer ${c.adminToken}` } })
  ).text();
  const out: Record<string, number> = {};
  for (const l of text.split("\n")) {
    if (!l.startsWith("novacron_acp_")) continue;
    const i = l.lastIndexOf(" ");
    out[l.slice(0, i)] = Number(l.slice(i + 1));
  }
  return out;
}

/** `after - before` for the samples that moved. */
function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) d[k] = v - (before[k] ?? 0);
  return d;
}

/**
 * When a hand-off entered each state at this server (`data.to` → its database's stamp),
 * from the `acp.handoff` events replayed by /v1/events; reads until `last` is seen.
 */
async function handoffTimes(c: LocalCluster, handoff: string, last: string): Promise<Map<string, number>> {
  const times = new Map<string, number>();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 15_000);
  try {
    const res = await c.fetch("/v1/events?since=0", {
      headers: { authorization: `Bearer ${c.adminToken}` },
      signal: abort.signal,
    });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    while (!times.has(last)) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let end = buf.indexOf("\n\n");
      while (end >= 0) {
        const data = buf
          .slice(0, end)
          .split("\n")
          .find((l) => l.startsWith("data: "));
        buf = buf.slice(end + 2);
        end = buf.indexOf("\n\n");
        if (!data) continue;
        const e = JSON.parse(data.slice(6)) as {
          type: string;
          at: string;
          resourceId: string;
          data: { to: string };
        };
        if (e.type === "acp.handoff" && e.resourceId === handoff) times.set(e.data.to, Date.parse(e.at));
      }
    }
  } catch (err) {
    if (!abort.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return times;
}

/** The acp/1 requests of a counter delta, by request, for one role. */
function requestsOf(d: Record<string, number>, role: "sent" | "answered"): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(d)) {
    const m = /^novacron_acp_requests_total\{role="(\w+)",request="(\w+)"\}$/.exec(k);
    if (m && m[1] === role) out[m[2]!] = v;
  }
  return out;
}

const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

/** Median (the mean of the middle two for an even count), null for none. */
async function main(): Promise<void> {
  const why = emulatorUnavailableReason();
  if (why) {
    console.log(`bench:xcluster skipped: ${why}`);
    return;
  }
  const manifest = await guestImageManifest();
  const rows: Row[] = [];
  const summaries: Summary[] = [];
  for (const profile of profiles) {
    const link = await WanLink.create({ spec: profile, management: true });
    const net = link.management!;
    const east = await LocalCluster.create(port);
    const west = await LocalCluster.create(port + 10);
    try {
      await east.startServer(
        ["--cluster-name", "east", "--federation-port", String(port + 1), "--advertise-host", ADDR_A],
        { listenHost: "0.0.0.0", netns: link.nsA, reachAt: net.a },
      );
      await west.startServer(
        ["--cluster-name", "west", "--federation-port", String(port + 11), "--advertise-host", ADDR_B],
        { listenHost: "0.0.0.0", netns: link.nsB, reachAt: net.b },
      );
      const agentFlags = ["--memory", String(memoryMiB * 3), "--stop-grace", "5"];
      const agents = [
        { c: east, name: "east-a", ns: link.nsA, host: net.a, data: ADDR_A, port: port + 2 },
        { c: east, name: "east-b", ns: link.nsB, host: net.b, data: ADDR_B, port: port + 3 },
        { c: west, name: "west-b", ns: link.nsB, host: net.b, data: ADDR_B, port: port + 12 },
      ];
      const startAgent = (a: (typeof agents)[number]) =>
        a.c.startAgent(a.name, a.port, [...agentFlags, "--data-address", a.data], {
          netns: a.ns,
          host: a.host,
          serverUrl: a.c.serverUrl,
        });
      const alive = (a: (typeof agents)[number]) =>
        waitFor(
          async () =>
            (await a.c.api<{ liveness: string }>("GET", `/v1/hosts/${a.name}`)).body.liveness === "alive" ||
            undefined,
          { timeoutMs: 60_000, what: `${a.name} alive` },
        );
      for (const a of agents) await startAgent(a);
      for (const a of agents) await alive(a);
      /** Every agent restarted (VMs keep running) with its DWCP directory emptied: cold caches. */
      const coldAgents = async () => {
        for (const a of agents) {
          await a.c.stop(a.name);
          await rm(path.join(a.c.agentDir(a.name), "dwcp"), { recursive: true, force: true });
        }
        for (const a of agents) await startAgent(a);
        for (const a of agents) await alive(a);
      };
      for (const c of [east, west]) {
        const imp = await c.cli(["image", "import", "guest", "--manifest", manifest]);
        if (imp.code !== 0) throw new Error(`image import failed: ${imp.stderr}`);
      }
      const token = await east.api<{ token: string }>("POST", "/v1/federation/tokens", {});
      const added = await west.api("POST", "/v1/federation/peers", { token: token.body.token });
      if (added.status !== 201) throw new Error(`peering failed: ${JSON.stringify(added.body)}`);
      for (const [c, other] of [
        [east, "west"],
        [west, "east"],
      ] as const)
        await waitFor(
          async () => {
            const cs = (
              await c.api<{ clusters: { name: string; stale: boolean }[] }>("GET", "/v1/federation/clusters")
            ).body.clusters;
            return cs.some((x) => x.name === other && !x.stale) || undefined;
          },
          { timeoutMs: 60_000, what: `${other} in the federation view` },
        );

      // The guest, on east-a (east-b cordoned while it is placed).
      const name = `xbench-${workload}`;
      await east.api("POST", "/v1/hosts/east-b/cordon", {});
      const created = await east.api("POST", "/v1/vms", {
        name,
        image: "guest",
        memoryMiB,
        kernelArgs: `${PATTERN} ${WORKLOADS[workload]}`.trim(),
      });
      if (created.status !== 201) throw new Error(`create failed: ${JSON.stringify(created.body)}`);
      await east.waitVmState(name, "running", 180_000);
      await east.api("POST", "/v1/hosts/east-b/uncordon", {});
      await east.waitConsole(name, /NC-VERIFY PASS seed=5 .*round=1/, 180_000);
      // Let the workload fill its memory and reach its steady dirty rate.
      await new Promise((r) => setTimeout(r, 10_000));

      const lastRound = async (c: LocalCluster) =>
        Math.max(
          0,
          ...(await c.console(name, 400)).map((l) =>
            Number(/NC-VERIFY PASS .*round=(\d+)/.exec(l)?.[1] ?? 0),
          ),
        );
      /** A newer PASS on its new host, no FAIL, no boot. */
      const verify = async (c: LocalCluster, after: number): Promise<{ pass: boolean; lines: string[] }> => {
        const seen = await waitFor(
          async () => {
            const lines = await c.console(name, 400);
            const done = lines.some(
              (l) =>
                l.includes("NC-VERIFY FAIL") ||
                l.startsWith("NC-READY") ||
                Number(/NC-VERIFY PASS .*round=(\d+)/.exec(l)?.[1] ?? 0) > after,
            );
            return done ? lines : undefined;
          },
          { timeoutMs: 120_000, intervalMs: 500, what: `${name} to verify its pattern again` },
        ).catch(() => null);
        const lines = seen ?? (await c.console(name, 400));
        const pass =
          seen !== null && !lines.some((l) => l.includes("NC-VERIFY FAIL") || l.startsWith("NC-READY"));
        return { pass, lines: lines.filter((l) => /NC-VERIFY|NC-READY|NC-ERROR/.test(l)).slice(-3) };
      };
      /** Both sides' records of a hand-off settled (the copy removed, the rows final). */
      const settled = async (id: string) => {
        for (const c of [east, west])
          await waitFor(
            async () =>
              (
                await c.api<{ handoffs: { id: string; settled: boolean }[] }>(
                  "GET",
                  "/v1/federation/handoffs",
                )
              ).body.handoffs.find((h) => h.id === id)?.settled || undefined,
            { timeoutMs: 120_000, what: `hand-off ${id} settled at ${c === east ? "east" : "west"}` },
          );
      };

      /** One migration through `c`'s API; the wall time until its record ended. */
      const migrate = async (c: LocalCluster, body: Record<string, unknown>) => {
        const wire0 = await link.siteABytes();
        const t0 = performance.now();
        const res = await c.api<Migration>("POST", `/v1/vms/${name}/migrations`, {
          ...body,
          options: { timeoutSeconds: timeoutS, transport: "dwcp" },
        });
        if (res.status !== 202) throw new Error(`migrate failed: ${JSON.stringify(res.body)}`);
        const m = await waitFor(
          async () => {
            const x = (await c.api<Migration>("GET", `/v1/migrations/${res.body.id}`)).body;
            return ["completed", "failed", "cancelled"].includes(x.state) ? x : undefined;
          },
          // A coarse poll would add up to its interval to every figure.
          { timeoutMs: (timeoutS + 120) * 1000, intervalMs: 100, what: `migration of ${name}` },
        );
        const wall = (performance.now() - t0) / 1000;
        return { m, wall, wire: (await link.siteABytes()) - wire0 };
      };

      const measured = async (run: number, method: Method) => {
        log(
          `${profile} run ${run + 1} of ${runs}: ${method}: restarting the agents with their DWCP caches emptied`,
        );
        await coldAgents();
        const before = await lastRound(east);
        const counters0 = await Promise.all([acpCounters(east), acpCounters(west)]);
        log(`${profile} run ${run + 1} of ${runs}: ${method}: migrating...`);
        const r =
          method === "intra"
            ? await migrate(east, { targetHost: "east-b" })
            : await migrate(east, { targetCluster: "west", targetHost: "west-b" });
        const ok = r.m.state === "completed";
        const now = method === "intra" ? east : west;
        const v = ok ? await verify(now, before) : null;
        let handoff: HandoffCost | undefined;
        if (method === "cross" && ok) {
          await settled(r.m.id);
          const [de, dw] = [
            delta(await acpCounters(east), counters0[0]),
            delta(await acpCounters(west), counters0[1]),
          ];
          const src = await handoffTimes(east, r.m.id, "completed");
          const dst = await handoffTimes(west, r.m.id, "owned");
          const span = (a: number | undefined, b: number | undefined) =>
            a !== undefined && b !== undefined ? Math.round(b - a) : null;
          const source_requests = requestsOf(de, "sent");
          const destination_requests = requestsOf(dw, "sent");
          handoff = {
            source_requests,
            destination_requests,
            round_trips: sum(source_requests) + sum(destination_requests),
            sessions_dialed:
              (de.novacron_acp_sessions_dialed_total ?? 0) + (dw.novacron_acp_sessions_dialed_total ?? 0),
            source_commits: de['novacron_acp_commits_total{side="source"}'] ?? 0,
            destination_commits: dw['novacron_acp_commits_total{side="destination"}'] ?? 0,
            release_to_owned_ms: span(src.get("released"), dst.get("owned")),
            prepare_ms: span(src.get("preparing"), src.get("transferring")),
            release_to_completed_ms: span(src.get("released"), src.get("completed")),
            guest_pause_estimate_ms: null,
          };
          const rto = handoff.release_to_owned_ms;
          if (rto !== null && r.m.result.downtimeMs !== undefined)
            handoff.guest_pause_estimate_ms = rto + r.m.result.downtimeMs;
        }
        const row: Row = {
          kind: "migration",
          qemu_version: QEMU_VERSION,
          profile: link.spec.name,
          workload,
          run,
          method,
          total_s: ok ? Number(r.wall.toFixed(2)) : null,
          downtime_ms: r.m.result.downtimeMs ?? null,
          guest_pause_ms: r.m.result.guestPauseMs ?? null,
          bytes_on_wire: r.wire,
          verified: v ? v.pass : null,
          state: ok ? "completed" : `${r.m.state}: ${r.m.stateReason}`,
          detail: {
            transport: r.m.transport,
            qemu_total_ms: r.m.result.totalTimeMs,
            ...(r.m.result.downtimeBreakdown ? { downtime_breakdown: r.m.result.downtimeBreakdown } : {}),
            memory_bytes: r.m.result.memoryBytes,
            disk_bytes: r.m.result.diskBytes,
            guest_lines: v?.lines ?? [],
          },
          ...(handoff ? { handoff } : {}),
        };
        rows.push(row);
        if (values.json) console.log(JSON.stringify(row));
        else log(`  -> ${row.state}, ${row.total_s ?? "-"} s, downtime ${row.downtime_ms ?? "-"} ms`);
        if (!ok) {
          // What the daemons said about it (warnings and errors), for whoever reads the run.
          for (const [c, d] of [
            [east, "server"],
            [west, "server"],
            ...agents.map((a) => [a.c, a.name] as const),
          ] as const)
            for (const l of c
              .daemonLog(d)
              .filter((l) => /"level":(40|50|60)/.test(l))
              .slice(-8))
              log(`  ${c === east ? "east" : "west"} ${d}: ${l}`);
          throw new Error(`${method} migration did not complete: ${row.state}`);
        }
        // Back to east-a, unmeasured, so that every measured migration starts there.
        log(`${profile} run ${run + 1} of ${runs}: ${method}: return trip`);
        const back =
          method === "intra"
            ? await migrate(east, { targetHost: "east-a" })
            : await migrate(west, { targetCluster: "east", targetHost: "east-a" });
        if (back.m.state !== "completed")
          throw new Error(`the return trip did not complete: ${back.m.state}: ${back.m.stateReason}`);
        if (method === "cross") await settled(back.m.id);
        await east.waitVmState(name, "running", 60_000);
      };

      for (let run = 0; run < runs; run++) {
        const order: Method[] = run % 2 === 0 ? ["intra", "cross"] : ["cross", "intra"];
        for (const method of order) await measured(run, method);
      }
      const summary = summarize(rows.filter((r) => r.profile === link.spec.name));
      summaries.push(summary);
      if (values.json) console.log(JSON.stringify(summary));
    } finally {
      await west.destroy();
      await east.destroy();
      await link.close();
    }
  }
  if (!values.json) printHuman(rows, summaries);
}

/** Medians per method, the ratio against the targets, and the hand-off's median cost. */
interface Summary {
  kind: "summary";
  method: "cross/intra";
  qemu_version: string;
  profile: string;
  workload: string;
  runs: number;
  intra: MethodMedians;
  cross: MethodMedians;
  /** cross median total over intra median total. */
  ratio: number | null;
  ratio_target: number;
  ratio_met: boolean | null;
  downtime_target_ms: number;
  /** The cross migrations' median downtime within the target, every guest verified. */
  downtime_met: boolean | null;
  /** Medians over the cross runs. */
  handoff: {
    round_trips: number | null;
    sessions_dialed: number | null;
    source_commits: number | null;
    destination_commits: number | null;
    release_to_owned_ms: number | null;
    prepare_ms: number | null;
    release_to_completed_ms: number | null;
    guest_pause_estimate_ms: number | null;
  };
}

interface MethodMedians {
  completed: number;
  verified: number;
  total_s: number | null;
  total_s_min: number | null;
  total_s_max: number | null;
  downtime_ms: number | null;
  downtime_ms_max: number | null;
  guest_pause_ms: number | null;
  bytes_on_wire: number | null;
}

function summarize(rows: Row[]): Summary {
  const first = rows[0]!;
  const of = (method: Method): MethodMedians => {
    const mine = rows.filter((r) => r.method === method);
    // A run counts when it completed and its guest passed: a broken guest is no result.
    const ok = mine.filter((r) => r.total_s !== null && r.verified === true);
    const nums = (f: (r: Row) => number | null) =>
      ok.map(f).filter((x): x is number => typeof x === "number");
    const totals = nums((r) => r.total_s);
    const downs = nums((r) => r.downtime_ms);
    return {
      completed: mine.filter((r) => r.total_s !== null).length,
      verified: mine.filter((r) => r.verified === true).length,
      total_s: round(median(totals), 2),
      total_s_min: totals.length ? Math.min(...totals) : null,
      total_s_max: totals.length ? Math.max(...totals) : null,
      downtime_ms: round(median(downs), 0),
      downtime_ms_max: downs.length ? Math.max(...downs) : null,
      guest_pause_ms: round(median(nums((r) => r.guest_pause_ms)), 0),
      bytes_on_wire: round(median(nums((r) => r.bytes_on_wire)), 0),
    };
  };
  const intra = of("intra");
  const cross = of("cross");
  const ratio = intra.total_s && cross.total_s !== null ? round(cross.total_s / intra.total_s, 3) : null;
  const costs = rows.filter((r) => r.method === "cross" && r.handoff).map((r) => r.handoff!);
  const med = (f: (h: HandoffCost) => number | null) =>
    round(median(costs.map(f).filter((x): x is number => typeof x === "number")), 0);
  const crossRows = rows.filter((r) => r.method === "cross");
  return {
    kind: "summary",
    method: "cross/intra",
    qemu_version: QEMU_VERSION,
    profile: first.profile,
    workload: first.workload,
    runs: Math.max(...rows.map((r) => r.run)) + 1,
    intra,
    cross,
    ratio,
    ratio_target: RATIO_TARGET,
    ratio_met: ratio === null ? null : ratio <= RATIO_TARGET,
    downtime_target_ms: DOWNTIME_TARGET_MS,
    downtime_met:
      cross.downtime_ms === null
        ? null
        : cross.downtime_ms <= DOWNTIME_TARGET_MS && crossRows.every((r) => r.verified === true),
    handoff: {
      round_trips: med((h) => h.round_trips),
      sessions_dialed: med((h) => h.sessions_dialed),
      source_commits: med((h) => h.source_commits),
      destination_commits: med((h) => h.destination_commits),
      release_to_owned_ms: med((h) => h.release_to_owned_ms),
      prepare_ms: med((h) => h.prepare_ms),
      release_to_completed_ms: med((h) => h.release_to_completed_ms),
      guest_pause_estimate_ms: med((h) => h.guest_pause_estimate_ms),
    },
  };
}

function round(x: number | null, d: number): number | null {
  return x === null ? null : Number(x.toFixed(d));
}

function printHuman(rows: Row[], summaries: Summary[]): void {
  const mib = (b: number | null) => (b === null ? "-" : (b / 2 ** 20).toFixed(1));
  printTable(
    [
      "profile",
      "run",
      "method",
      "total s",
      "downtime ms",
      "pause ms",
      "MiB wire",
      "guest",
      "acp RTs",
      "commits S+D",
      "release→owned ms",
      "state",
    ],
    rows.map((r) => [
      r.profile,
      String(r.run + 1),
      r.method,
      r.total_s?.toFixed(2) ?? "-",
      r.downtime_ms?.toString() ?? "-",
      r.guest_pause_ms?.toString() ??
        (r.handoff?.guest_pause_estimate_ms != null ? `~${r.handoff.guest_pause_estimate_ms}` : "-"),
      mib(r.bytes_on_wire),
      r.verified === null ? "-" : r.verified ? "PASS" : "FAIL",
      r.handoff ? String(r.handoff.round_trips) : "-",
      r.handoff ? `${r.handoff.source_commits}+${r.handoff.destination_commits}` : "-",
      r.handoff?.release_to_owned_ms?.toString() ?? "-",
      r.state,
    ]),
  );
  console.log("");
  const spread = (m: MethodMedians) =>
    m.total_s === null
      ? "-"
      : `${m.total_s.toFixed(2)} (${m.total_s_min!.toFixed(2)}–${m.total_s_max!.toFixed(2)})`;
  const yes = (b: boolean | null) => (b === null ? "-" : b ? "met" : "NOT met");
  printTable(
    ["profile", "method", "ok / verified", "total s (min–max)", "downtime ms", "pause ms", "MiB wire"],
    summaries.flatMap((s) =>
      (["intra", "cross"] as const).map((k) => [
        s.profile,
        k,
        `${s[k].completed} / ${s[k].verified}`,
        spread(s[k]),
        s[k].downtime_ms?.toString() ?? "-",
        s[k].guest_pause_ms?.toString() ??
          (k === "cross" && s.handoff.guest_pause_estimate_ms !== null
            ? `~${s.handoff.guest_pause_estimate_ms}`
            : "-"),
        mib(s[k].bytes_on_wire),
      ]),
    ),
  );
  console.log("");
  printTable(
    [
      "profile",
      "cross / intra",
      `≤ ${RATIO_TARGET}`,
      `downtime ≤ ${DOWNTIME_TARGET_MS} ms`,
      "acp RTs",
      "commits S+D",
      "prepare ms",
      "release→owned ms",
      "release→completed ms",
    ],
    summaries.map((s) => [
      s.profile,
      s.ratio?.toFixed(2) ?? "-",
      yes(s.ratio_met),
      yes(s.downtime_met),
      s.handoff.round_trips?.toString() ?? "-",
      `${s.handoff.source_commits ?? "-"}+${s.handoff.destination_commits ?? "-"}`,
      s.handoff.prepare_ms?.toString() ?? "-",
      s.handoff.release_to_owned_ms?.toString() ?? "-",
      s.handoff.release_to_completed_ms?.toString() ?? "-",
    ]),
  );
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
