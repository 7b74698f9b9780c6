/**
 * `npm run bench:ha`: HA restart with fencing, with default settings (issue 17: from the
 * host's death to the VM running elsewhere ≤ 30 s; detection, fencing wait and restart
 * reported apart).
 *
 * A real server and two agents on this machine, a storage pool in a local directory both
 * mount (the same path), a TCG guest with `ha: restart` on one of them. Per run the VM's
 * agent is killed with SIGKILL (its QEMU survives, so the agent's fence watchdog must kill
 * it) and the VM is timed until it runs on the other host; then the killed agent is
 * restarted (it releases its leftover copy), the VM deleted, and the next run kills the
 * other host.
 *
 *   detection   the kill → the server marks the host dead (its host.liveness event)
 *   fencing     dead → the server restarts the VM elsewhere (ha.restart: the host's last
 *               heartbeat + lease 15 s + margin 5 s passed)
 *   restart     ha.restart → the VM is running on the other host (its vm.state event)
 *   total       the kill → running elsewhere
 *   self-fence  the kill → the old host's watchdog killed the old QEMU (before the restart)
 *
 *   --runs N     measured runs (default 3)
 *   --port N     the server (N), agents N+1, N+2 (default 18730)
 *   --json       one JSON object per line: one per run, then a summary
 */
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { guestImageManifest, LocalCluster, type StreamedEvent } from "../src/demo/local-cluster.js";
import { waitFor } from "../src/lib/wait.js";
import { median, printTable } from "./table.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    port: { type: "string", default: "18730" },
    json: { type: "boolean", default: false },
  },
});
const RUNS = Number(values.runs);
const PORT = Number(values.port);
const TARGET_S = 30;
const AGENT_FLAGS = ["--memory", "1536", "--stop-grace", "5"];

type Event = StreamedEvent;

/** One run's times, seconds. */
interface Row {
  run: number;
  from: string;
  to: string;
  detection_s: number;
  fencing_wait_s: number;
  restart_s: number;
  total_s: number;
  self_fence_s: number;
}

const secs = (from: number, to: number) => Math.round((to - from) / 10) / 100;

async function main(): Promise<void> {
  const manifest = await guestImageManifest();
  const c = await LocalCluster.create(PORT);
  const agents = { a1: PORT + 1, a2: PORT + 2 } as const;
  type Name = keyof typeof agents;
  const rows: Row[] = [];
  try {
    await c.startServer();
    for (const [name, port] of Object.entries(agents)) await c.startAgent(name, port, AGENT_FLAGS);
    const imp = await c.cli(["image", "import", "guest", "--manifest", manifest]);
    if (imp.code !== 0) throw new Error(imp.stderr);
    const pool = path.join(c.dir, "pool");
    await mkdir(pool);
    await c.api("POST", "/v1/storage-pools", { name: "shared", path: pool });
    await waitFor(
      async () =>
        (await c.api<{ hosts: string[] }>("GET", "/v1/storage-pools/shared")).body.hosts.length === 2 ||
        undefined,
      { timeoutMs: 30_000, what: "both hosts to see the pool" },
    );
    for (let run = 1; run <= RUNS; run++) {
      const from: Name = run % 2 === 1 ? "a1" : "a2";
      const other: Name = from === "a1" ? "a2" : "a1";
      const name = `ha-bench-${run}`;
      await c.api("POST", `/v1/hosts/${other}/cordon`, {});
      const created = await c.api<{ id: string; host: string }>("POST", "/v1/vms", {
        name,
        image: "guest",
        memoryMiB: 256,
        storagePool: "shared",
        ha: "restart",
      });
      await c.api("POST", `/v1/hosts/${other}/uncordon`, {});
      if (created.body.host !== from) throw new Error(`${name} landed on ${created.body.host}, not ${from}`);
      const id = created.body.id;
      await c.waitVmState(name, "running");
      await c.waitConsole(name, /NC-READY/);
      const before = (await c.events(0)).at(-1)?.id ?? 0;

      const killedAt = Date.now();
      await c.stop(from, "SIGKILL");
      await waitFor(
        async () => {
          const v = (await c.vm(name)) as { host: string; state: string } | undefined;
          return v?.host === other && v.state === "running" ? v : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 100, what: `${name} to run on ${other}` },
      );
      const events = await c.events(before);
      const at = (pred: (e: Event) => boolean, what: string) => {
        const e = events.find(pred);
        if (!e) throw new Error(`no ${what} event`);
        return Date.parse(e.at);
      };
      const deadAt = at(
        (e) => e.type === "host.liveness" && e.data.liveness === "dead" && e.data.name === from,
        "host dead",
      );
      const restartAt = at((e) => e.type === "ha.restart" && e.resourceId === id, "ha.restart");
      const runningAt = at(
        (e) =>
          e.type === "vm.state" &&
          e.resourceId === id &&
          e.data.to === "running" &&
          Date.parse(e.at) > restartAt,
        "vm running",
      );
      const fenced = JSON.parse(
        await readFile(path.join(c.agentDir(from), "vms", id, "fenced.json"), "utf8"),
      ) as {
        at: string;
      };
      const row: Row = {
        run,
        from,
        to: other,
        detection_s: secs(killedAt, deadAt),
        fencing_wait_s: secs(deadAt, restartAt),
        restart_s: secs(restartAt, runningAt),
        total_s: secs(killedAt, runningAt),
        self_fence_s: secs(killedAt, Date.parse(fenced.at)),
      };
      rows.push(row);
      if (values.json) console.log(JSON.stringify(row));
      else console.error(`run ${run}: ${JSON.stringify(row)}`);

      // Bring the host back (it releases its leftover copy) and clear the VM for the next run.
      await c.startAgent(from, agents[from], AGENT_FLAGS);
      await c.api("DELETE", `/v1/vms/${name}`);
      await waitFor(async () => ((await c.vm(name)) === undefined ? true : undefined), {
        timeoutMs: 60_000,
        what: `${name} deleted`,
      });
      await waitFor(
        async () =>
          (await c.api<{ liveness: string }>("GET", `/v1/hosts/${from}`)).body.liveness === "alive" ||
          undefined,
        { timeoutMs: 30_000, what: `${from} alive` },
      );
    }
  } finally {
    await c.destroy();
  }
  const med = (f: (r: Row) => number) => median(rows.map(f)) ?? Number.NaN;
  const summary = {
    summary: true,
    runs: rows.length,
    detection_s: med((r) => r.detection_s),
    fencing_wait_s: med((r) => r.fencing_wait_s),
    restart_s: med((r) => r.restart_s),
    total_s: med((r) => r.total_s),
    self_fence_s: med((r) => r.self_fence_s),
    target_s: TARGET_S,
    met: med((r) => r.total_s) <= TARGET_S,
  };
  if (values.json) {
    console.log(JSON.stringify(summary));
    return;
  }
  const f = (x: number) => x.toFixed(2);
  printTable(
    ["run", "from → to", "detection s", "fencing wait s", "restart s", "total s", "self-fence s"],
    [
      ...rows.map((r) => [
        String(r.run),
        `${r.from} → ${r.to}`,
        f(r.detection_s),
        f(r.fencing_wait_s),
        f(r.restart_s),
        f(r.total_s),
        f(r.self_fence_s),
      ]),
      [
        "median",
        "",
        f(summary.detection_s),
        f(summary.fencing_wait_s),
        f(summary.restart_s),
        f(summary.total_s),
        f(summary.self_fence_s),
      ],
    ],
  );
  console.log(`target: total ≤ ${TARGET_S} s: ${summary.met ? "met" : "MISSED"}`);
}

await main();
