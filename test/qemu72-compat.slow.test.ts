// QEMU 7.2 compatibility (issue 10): NovaCron's default is QEMU 10, and 7.2 (Debian 12's
// stock package) stays supported. A server, one agent on QEMU 7.2 (unpacked into
// .cache/qemu-7.2 by scripts/ensure.mjs) and one on the system's QEMU 10, with real TCG
// guests:
// - each host reports its QEMU, and `host list` shows it;
// - a VM pinned to pc-q35-7.2 runs on 7.2 and moves 7.2 → 10 over DWCP (the relay parsing
//   7.2's stream) and back 10 → 7.2 over QEMU's transport, its memory and disk intact;
// - a VM on 10's own machine type is refused a move to 7.2 before anything changes.
// Skipped, with the reason, where QEMU 7.2 could not be unpacked (not Debian 12).
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { guestImageManifest, qemuPidsUnder, ROOT, TestCluster } from "./helpers/cluster.js";

const QEMU72 = path.join(ROOT, ".cache", "qemu-7.2", "qemu-system-x86_64");
const missing = existsSync(QEMU72)
  ? null
  : `${QEMU72} is missing (scripts/ensure.mjs unpacks it on Debian 12)`;
if (missing) console.warn(`Skipping the QEMU 7.2 compatibility suite: ${missing}`);

const SERVER_PORT = 17870;
const PORTS = { q72: 17871, q10: 17872 } as const;
// No dirtier: QEMU 7.2 under TCG corrupts busy guests after several pre-copy passes
// (docs/migration.md); unthrottled on loopback an idle guest moves in one or two.
const GUEST = "nc.pattern_seed=72 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2";

interface HostBody {
  name: string;
  qemu: { version: string; major: number; q35Alias: string; machineTypes: string[] } | null;
}
interface VmBody {
  id: string;
  host: string;
  machineType: string | null;
}
interface MigrationBody {
  id: string;
  state: string;
  stateReason: string;
  transport: string;
  progress: { pass?: number };
}
interface ApiError {
  error: { code: string; message: string };
}

describe.skipIf(missing !== null)("QEMU 7.2 beside QEMU 10", { timeout: 240_000 }, () => {
  let c: TestCluster;

  beforeAll(async () => {
    const manifest = await guestImageManifest();
    c = await TestCluster.create(SERVER_PORT);
    await c.startServer(["--heartbeat-timeout", "10"]);
    // The 7.2 host first and alone, so that the pinned VM is placed there.
    await c.startAgent("q72", PORTS.q72, ["--memory", "1024", "--stop-grace", "5"], { qemuBinary: QEMU72 });
    const res = await c.cli(["image", "import", "guest", "--manifest", manifest, "--host", "q72"]);
    expect(res.code, res.stderr).toBe(0);
  }, 180_000);

  afterAll(async () => {
    await c?.destroy();
  });

  const end = (id: string) => c.waitMigrationEnd<MigrationBody>(id);

  async function runningOnceOn(name: string, host: string): Promise<VmBody> {
    const vm = (await c.waitVmState(name, "running", 60_000)) as unknown as VmBody;
    expect(vm.host).toBe(host);
    await waitFor(
      async () =>
        (await qemuPidsUnder(path.join(c.agentDir("q72"), "vms", vm.id))).length +
          (await qemuPidsUnder(path.join(c.agentDir("q10"), "vms", vm.id))).length ===
        1,
      { timeoutMs: 30_000, what: `exactly one QEMU for ${name}` },
    );
    return vm;
  }

  /** A later verification round than `round`, on the destination's console, with no boot. */
  async function expectIntactAfter(name: string, round: number): Promise<number> {
    const m = await waitFor(
      async () => {
        const lines = await c.console(name, 400);
        const last = Math.max(
          0,
          ...lines.map((l) => Number(/NC-VERIFY PASS seed=72 .*round=(\d+)/.exec(l)?.[1] ?? 0)),
        );
        return last > round ? { lines, last } : undefined;
      },
      { timeoutMs: 60_000, what: `${name} to verify a round after ${round}` },
    );
    expect(m.lines.filter((l) => l.includes("NC-VERIFY FAIL") || l.includes("NC-ERROR"))).toEqual([]);
    return m.last;
  }

  async function lastRound(name: string): Promise<number> {
    const lines = await c.console(name, 400);
    return Math.max(0, ...lines.map((l) => Number(/NC-VERIFY PASS seed=72 .*round=(\d+)/.exec(l)?.[1] ?? 0)));
  }

  it("runs a VM pinned to pc-q35-7.2 on QEMU 7.2", async () => {
    const res = await c.api<VmBody>("POST", "/v1/vms", {
      name: "old",
      image: "guest",
      memoryMiB: 256,
      machineType: "pc-q35-7.2",
      kernelArgs: GUEST,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const vm = await runningOnceOn("old", "q72");
    expect(vm.machineType).toBe("pc-q35-7.2");
    await c.waitConsole("old", /NC-VERIFY PASS seed=72 .*round=1/);
    // Now the QEMU 10 host joins.
    await c.startAgent("q10", PORTS.q10, ["--memory", "2048", "--stop-grace", "5"]);
  });

  it("reports each host's QEMU: the API and `host list` show 7.2 and 10", async () => {
    const q72 = (await c.api<HostBody>("GET", "/v1/hosts/q72")).body;
    const q10 = (await c.api<HostBody>("GET", "/v1/hosts/q10")).body;
    expect(q72.qemu?.version).toMatch(/^7\.2\.\d+$/);
    expect(q72.qemu?.q35Alias).toBe("pc-q35-7.2");
    expect(q10.qemu?.major).toBeGreaterThanOrEqual(10);
    expect(q10.qemu?.machineTypes).toContain("pc-q35-7.2");
    const list = await c.cli(["host", "list"]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/q72.*7\.2\.\d+/);
    expect(list.stdout).toMatch(new RegExp(`q10.*${q10.qemu!.version.replaceAll(".", "\\.")}`));
  });

  it("moves the pinned VM from QEMU 7.2 to QEMU 10 over DWCP, intact", async () => {
    const round = await lastRound("old");
    const res = await c.api<MigrationBody>("POST", "/v1/vms/old/migrations", {
      targetHost: "q10",
      options: { transport: "dwcp", timeoutSeconds: 150 },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const m = await end(res.body.id);
    expect(m.state, m.stateReason).toBe("completed");
    expect(m.transport).toBe("dwcp");
    const vm = await runningOnceOn("old", "q10");
    // The destination QEMU 10 runs the VM as the 7.2 machine it was.
    expect(vm.machineType).toBe("pc-q35-7.2");
    await expectIntactAfter("old", round);
    console.log(`7.2 → 10 over DWCP: ${m.progress.pass} dirty syncs`);
  });

  it("moves it back from QEMU 10 to QEMU 7.2 over QEMU's transport, intact", async () => {
    const round = await lastRound("old");
    const res = await c.api<MigrationBody>("POST", "/v1/vms/old/migrations", {
      targetHost: "q72",
      options: { transport: "qemu", timeoutSeconds: 150 },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const m = await end(res.body.id);
    expect(m.state, m.stateReason).toBe("completed");
    await runningOnceOn("old", "q72");
    await expectIntactAfter("old", round);
  });

  it("refuses to move a VM on QEMU 10's machine type to QEMU 7.2, changing nothing", async () => {
    // q10 has the most free memory, so the VM lands there with what q35 means on QEMU 10.
    const res = await c.api<VmBody>("POST", "/v1/vms", {
      name: "new",
      image: "guest",
      memoryMiB: 256,
      kernelArgs: GUEST,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const vm = await runningOnceOn("new", "q10");
    const q10 = (await c.api<HostBody>("GET", "/v1/hosts/q10")).body;
    expect(vm.machineType).toBe(q10.qemu!.q35Alias);

    const refused = await c.api<ApiError>("POST", "/v1/vms/new/migrations", { targetHost: "q72" });
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe("NOVA_MACHINE_TYPE_UNSUPPORTED");
    expect(refused.body.error.message).toContain(q10.qemu!.q35Alias);
    expect(refused.body.error.message).toMatch(/7\.2\.\d+/);
    expect(refused.body.error.message).toContain(q10.qemu!.version);
    const cli = await c.cli(["vm", "migrate", "new", "--to", "q72"]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toContain("NOVA_MACHINE_TYPE_UNSUPPORTED");

    // Nothing changed: no migration recorded, the VM still running once on q10.
    const list = (await c.api<{ migrations: unknown[] }>("GET", "/v1/vms/new/migrations")).body.migrations;
    expect(list).toEqual([]);
    await runningOnceOn("new", "q10");
  });
});
