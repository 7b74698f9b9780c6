/**
 * `npm run bench:qemu-integrity`: does a busy guest survive a multi-pass pre-copy
 * migration under TCG, per QEMU version? The measurement behind NovaCron's QEMU 10 default
 * (docs/migration.md, "Busy guests under TCG"). For each QEMU binary, in one run: a server
 * and two agents on that binary, one 512 MiB guest pinned to pc-q35-7.2 (so both versions
 * run the same machine) with a dirtier (`web` workload of bench:migration), migrated
 * `--runs` times over QEMU's own transport capped at 16 MiB/s without auto-converge, so
 * that pre-copy needs several dirty-bitmap syncs. After each migration the guest's own
 * verifier judges memory and disk; a kernel oops, a reboot or a failed check is a FAIL,
 * and a new guest replaces it before the next run.
 *
 *   --qemu PATH   a qemu-system-x86_64 to measure (repeatable; default the system's and
 *                 .cache/qemu-7.2's when present)
 *   --runs N      migrations per binary (default 3)
 *   --port N      server port; agents use N+1, N+2 (default 17935)
 *   --json        one JSON object per line (qemu_version, run, dirty_syncs, total_s,
 *                 downtime_ms, guest_pass, evidence) instead of the table
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { probeQemu } from "../src/compute/qemu/qemu-version.js";
import { guestImageManifest, LocalCluster, ROOT } from "../src/demo/local-cluster.js";
import { waitFor } from "../src/lib/wait.js";
import { printTable } from "./table.js";

const WORKLOAD =
  "nc.dirty_mb=256 nc.dirty_rate_mbps=5 nc.mix=zero:10,text:85,random:5 nc.pattern_seed=7 nc.pattern_mem_mb=16 nc.pattern_disk_mb=16 nc.verify_every=3";
/** Guest kernel trouble on the serial console: the corruption shows here first. */
const KERNEL_TROUBLE = /BUG:|Oops|Kernel panic|general protection fault|Attempted to kill/;

interface Row {
  qemu_version: string;
  qemu_binary: string;
  run: number;
  dirty_syncs: number | null;
  total_s: number | null;
  downtime_ms: number | null;
  guest_pass: boolean;
  evidence: string;
}

const { values } = parseArgs({
  options: {
    qemu: { type: "string", multiple: true },
    runs: { type: "string", default: "3" },
    port: { type: "string", default: "17935" },
    json: { type: "boolean", default: false },
  },
});
const runs = Number(values.runs);
const port = Number(values.port);
const log = (msg: string) => process.stderr.write(`${msg}\n`);

function defaultBinaries(): string[] {
  const old = path.join(ROOT, ".cache", "qemu-7.2", "qemu-system-x86_64");
  return ["qemu-system-x86_64", ...(existsSync(old) ? [old] : [])];
}

interface Migration {
  state: string;
  stateReason: string;
  result: { totalTimeMs?: number; downtimeMs?: number };
  progress: { pass?: number };
}

async function measure(binary: string, rows: Row[]): Promise<void> {
  const version = (await probeQemu(binary)).version;
  const c = await LocalCluster.create(port);
  try {
    await c.startServer();
    for (const [i, name] of ["qi-a", "qi-b"].entries())
      await c.startAgent(name, port + 1 + i, ["--memory", "2048", "--stop-grace", "5"], {
        qemuBinary: binary,
      });
    const imp = await c.cli(["image", "import", "guest", "--manifest", await guestImageManifest()]);
    if (imp.code !== 0) throw new Error(imp.stderr);
    let generation = 0;
    let vm = "";
    /** A new guest (its own console), booted, dirtying and verified once. */
    const boot = async () => {
      vm = `qi-${++generation}`;
      const created = await c.api("POST", "/v1/vms", {
        name: vm,
        image: "guest",
        memoryMiB: 512,
        machineType: "pc-q35-7.2",
        kernelArgs: WORKLOAD,
      });
      if (created.status !== 201) throw new Error(JSON.stringify(created.body));
      await c.waitVmState(vm, "running", 180_000);
      await c.waitConsole(vm, /NC-DIRTY-START/, 180_000);
      await c.waitConsole(vm, /NC-VERIFY PASS seed=7 .*round=1/, 180_000);
    };
    await boot();
    const seqOf = (l: string) => Number(/^NC-HEARTBEAT seq=(\d+)/.exec(l)?.[1] ?? Number.NaN);
    for (let run = 1; run <= runs; run++) {
      const before = await c.console(vm, 400);
      const lastRound = Math.max(
        0,
        ...before.map((l) => Number(/NC-VERIFY PASS seed=7 .*round=(\d+)/.exec(l)?.[1] ?? 0)),
      );
      const lastSeq = Math.max(0, ...before.map(seqOf).filter(Number.isFinite));
      const from = String((await c.vm(vm))?.host);
      const res = await c.api<{ id: string }>("POST", `/v1/vms/${vm}/migrations`, {
        targetHost: from === "qi-a" ? "qi-b" : "qi-a",
        options: { transport: "qemu", maxBandwidthMiBps: 16, autoConverge: false, timeoutSeconds: 300 },
      });
      if (res.status !== 202) throw new Error(JSON.stringify(res.body));
      const m = await waitFor(
        async () => {
          const b = (await c.api<Migration>("GET", `/v1/migrations/${res.body.id}`)).body;
          return ["completed", "failed", "cancelled"].includes(b.state) ? b : undefined;
        },
        { timeoutMs: 420_000, intervalMs: 250, what: "the migration to end" },
      );
      let pass = false;
      let evidence = `${m.state}: ${m.stateReason}`;
      if (m.state === "completed") {
        // The verdict: a verification round after the migration (PASS), or the first sign
        // of trouble (FAIL) — a kernel oops, a failed check, a reboot — within 90 s.
        const verdict = await waitFor(
          async () => {
            // Only what the guest printed since the migration began: a host it returns to
            // still holds its boot lines from an earlier stay.
            const all = await c.console(vm, 400);
            const lines = all.slice(all.findLastIndex((l) => seqOf(l) <= lastSeq) + 1);
            const bad = lines.find(
              (l) => KERNEL_TROUBLE.test(l) || l.includes("NC-VERIFY FAIL") || l.startsWith("NC-READY"),
            );
            if (bad) return { pass: false, evidence: bad.slice(0, 160) };
            const round = Math.max(
              0,
              ...lines.map((l) => Number(/NC-VERIFY PASS seed=7 .*round=(\d+)/.exec(l)?.[1] ?? 0)),
            );
            // Two rounds after: the first may have been verified before the switch-over.
            return round > lastRound + 1 ? { pass: true, evidence: `verified round ${round}` } : undefined;
          },
          { timeoutMs: 90_000, intervalMs: 500, what: "the guest's verdict" },
        ).catch(() => ({ pass: false, evidence: "no verification round within 90 s (hung guest)" }));
        pass = verdict.pass;
        evidence = verdict.evidence;
      }
      const row: Row = {
        qemu_version: version,
        qemu_binary: binary,
        run,
        dirty_syncs: m.progress.pass ?? null,
        total_s: m.result.totalTimeMs === undefined ? null : m.result.totalTimeMs / 1000,
        downtime_ms: m.result.downtimeMs ?? null,
        guest_pass: pass,
        evidence,
      };
      rows.push(row);
      if (values.json) process.stdout.write(`${JSON.stringify(row)}\n`);
      else log(`QEMU ${version} run ${run}: ${pass ? "PASS" : "FAIL"} (${evidence})`);
      if (!pass && run < runs) {
        // A broken guest would make every later run meaningless: a new one takes its place.
        const gone = vm;
        await waitFor(
          async () => {
            if ((await c.vm(gone)) === undefined) return true;
            await c.api("DELETE", `/v1/vms/${gone}`);
            return undefined;
          },
          { timeoutMs: 180_000, intervalMs: 1000, what: `${gone} deleted` },
        );
        await boot();
      }
    }
  } finally {
    await c.destroy();
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const binary of values.qemu ?? defaultBinaries()) await measure(binary, rows);
  if (values.json) return;
  printTable(
    ["QEMU", "run", "dirty syncs", "total s", "downtime ms", "guest", "evidence"],
    rows.map((r) => [
      r.qemu_version,
      String(r.run),
      String(r.dirty_syncs ?? "-"),
      r.total_s?.toFixed(1) ?? "-",
      String(r.downtime_ms ?? "-"),
      r.guest_pass ? "PASS" : "FAIL",
      r.evidence,
    ]),
  );
  const versions = [...new Set(rows.map((r) => r.qemu_version))];
  for (const v of versions) {
    const mine = rows.filter((r) => r.qemu_version === v);
    log(`QEMU ${v}: guest intact in ${mine.filter((r) => r.guest_pass).length} of ${mine.length} runs`);
  }
}

main().catch((err) => {
  process.stderr.write(`bench:qemu-integrity failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
