/**
 * `npm run bench:migration-local`: live migration inside one cluster (QEMU's own
 * transport, disk mirror over NBD) between two agents on this machine, with a real guest
 * whose workload keeps dirtying memory. Migrates the VM back and forth `--runs` times and
 * reports, per run and as medians: total time (QEMU's, and wall clock from the API call to
 * completion), downtime (QEMU's), bytes moved, and whether the guest verified its memory
 * and disk pattern at the destination.
 *
 *   --memory MiB        guest memory (default 512)
 *   --dirty-mbps N      workload dirty rate in MiB/s (default 10)
 *   --dirty-mb N        memory the workload keeps dirtying (default 128)
 *   --runs N            migrations, alternating direction (default 3)
 *   --port N            server port; agents use N+101 and N+102 (default 17900)
 *   --json              one JSON object per line instead of the table
 */
import { parseArgs } from "node:util";
import { guestImageManifest, LocalCluster } from "../src/demo/local-cluster.js";
import { waitFor } from "../src/lib/wait.js";

interface Row {
  bench: "migration-local";
  run: number;
  from: string;
  to: string;
  ram_mib: number;
  dirty_mbps: number;
  total_s: number;
  wall_s: number;
  downtime_ms: number;
  memory_bytes: number;
  disk_bytes: number;
  base_image_copied: boolean;
  guest_pass: boolean;
}

const { values } = parseArgs({
  options: {
    memory: { type: "string", default: "512" },
    "dirty-mbps": { type: "string", default: "10" },
    "dirty-mb": { type: "string", default: "128" },
    runs: { type: "string", default: "3" },
    port: { type: "string", default: "17900" },
    json: { type: "boolean", default: false },
  },
});
const memory = Number(values.memory);
const dirtyMbps = Number(values["dirty-mbps"]);
const runs = Number(values.runs);
const port = Number(values.port);
const log = (msg: string) => process.stderr.write(`${msg}\n`);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function main(): Promise<void> {
  const manifest = await guestImageManifest();
  const c = await LocalCluster.create(port);
  const rows: Row[] = [];
  try {
    await c.startServer();
    const agentMem = String(Math.max(2048, memory * 2));
    await c.startAgent("bench-a", port + 101, ["--memory", agentMem]);
    await c.startAgent("bench-b", port + 102, ["--memory", agentMem]);
    // The image on one host only: the first migration also copies the base image.
    const imp = await c.cli(["image", "import", "guest", "--manifest", manifest, "--host", "bench-a"]);
    if (imp.code !== 0) throw new Error(imp.stderr);
    const kernelArgs = `nc.dirty_mb=${values["dirty-mb"]} nc.dirty_rate_mbps=${dirtyMbps} nc.pattern_seed=5 nc.pattern_mem_mb=16 nc.pattern_disk_mb=16 nc.verify_every=2`;
    const created = await c.api<{ host: string }>("POST", "/v1/vms", {
      name: "bench-vm",
      image: "guest",
      memoryMiB: memory,
      kernelArgs,
    });
    if (created.status !== 201) throw new Error(JSON.stringify(created.body));
    await c.waitVmState("bench-vm", "running");
    await c.waitConsole("bench-vm", /NC-DIRTY-START/, 120_000);
    await c.waitConsole("bench-vm", /NC-VERIFY PASS .*round=1/, 120_000);
    log(`guest running: ${memory} MiB, dirtying ${values["dirty-mb"]} MiB at ${dirtyMbps} MiB/s`);

    for (let run = 1; run <= runs; run++) {
      const from = String((await c.vm("bench-vm"))?.host);
      const to = from === "bench-a" ? "bench-b" : "bench-a";
      const started = Date.now();
      const res = await c.api<{ id: string }>("POST", "/v1/vms/bench-vm/migrations", { targetHost: to });
      if (res.status !== 202) throw new Error(JSON.stringify(res.body));
      const m = await waitFor(
        async () => {
          const b = (
            await c.api<{ state: string; stateReason: string; result: Record<string, number | boolean> }>(
              "GET",
              `/v1/migrations/${res.body.id}`,
            )
          ).body;
          return ["completed", "failed", "cancelled"].includes(b.state) ? b : undefined;
        },
        { timeoutMs: 600_000, intervalMs: 200, what: "the migration to end" },
      );
      const wall = (Date.now() - started) / 1000;
      if (m.state !== "completed") throw new Error(`run ${run}: migration ${m.state}: ${m.stateReason}`);
      // The guest verifies memory and disk every 2 s: wait for a verdict made on the target.
      const verdict = await c.waitConsole("bench-vm", /NC-VERIFY (PASS|FAIL)/, 60_000);
      const row: Row = {
        bench: "migration-local",
        run,
        from,
        to,
        ram_mib: memory,
        dirty_mbps: dirtyMbps,
        total_s: Number(m.result.totalTimeMs ?? 0) / 1000,
        wall_s: wall,
        downtime_ms: Number(m.result.downtimeMs ?? 0),
        memory_bytes: Number(m.result.memoryBytes ?? 0),
        disk_bytes: Number(m.result.diskBytes ?? 0),
        base_image_copied: Boolean(m.result.baseImageCopied),
        guest_pass: verdict[1] === "PASS",
      };
      rows.push(row);
      if (values.json) process.stdout.write(`${JSON.stringify(row)}\n`);
      else
        log(`run ${run}: ${from} → ${to} total ${row.total_s.toFixed(2)} s, downtime ${row.downtime_ms} ms`);
    }
  } finally {
    for (const name of [...c.daemons.keys()].reverse()) await c.stop(name, "SIGTERM");
    await c.destroy();
  }

  const summary = {
    bench: "migration-local-median",
    runs: rows.length,
    ram_mib: memory,
    dirty_mbps: dirtyMbps,
    total_s: median(rows.map((r) => r.total_s)),
    wall_s: median(rows.map((r) => r.wall_s)),
    downtime_ms: median(rows.map((r) => r.downtime_ms)),
    memory_bytes: median(rows.map((r) => r.memory_bytes)),
    guest_pass: rows.every((r) => r.guest_pass),
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return;
  }
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  const table = [
    [
      "run",
      "from → to",
      "total (QEMU)",
      "wall clock",
      "downtime",
      "memory moved",
      "disk mirrored",
      "image copied",
      "guest",
    ],
    ...rows.map((r) => [
      String(r.run),
      `${r.from} → ${r.to}`,
      `${r.total_s.toFixed(2)} s`,
      `${r.wall_s.toFixed(2)} s`,
      `${r.downtime_ms} ms`,
      mib(r.memory_bytes),
      mib(r.disk_bytes),
      r.base_image_copied ? "yes" : "no",
      r.guest_pass ? "PASS" : "FAIL",
    ]),
    [
      "median",
      "",
      `${summary.total_s.toFixed(2)} s`,
      `${summary.wall_s.toFixed(2)} s`,
      `${summary.downtime_ms} ms`,
      mib(summary.memory_bytes),
      "",
      "",
      summary.guest_pass ? "PASS" : "FAIL",
    ],
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  process.stdout.write(
    `Live migration, ${memory} MiB guest dirtying ${dirtyMbps} MiB/s, QEMU transport, two agents on one machine (TCG)\n`,
  );
  for (const r of table) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join("  ")}\n`);
}

main().catch((err) => {
  process.stderr.write(`bench:migration-local failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
