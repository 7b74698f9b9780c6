// The main job runs headless: `npm run demo -- --once` does the whole demo, cleans up
// and exits 0. As root it also crosses the emulated WAN and moves a VM from cluster east
// to cluster west, and leaves no namespace, daemon or QEMU behind.
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { emulatorUnavailableReason, listNamespaces } from "../src/testing/wanem/netns.js";
import { qemuPidsUnder, ROOT } from "./helpers/cluster.js";

const asRoot = emulatorUnavailableReason() === null;

/** The output of the last `[cluster] $ novacron ARGS` the demo echoed, up to the next command or step. */
function echoed(out: string, cluster: string, args: string): string {
  const at = out.lastIndexOf(`[${cluster}] $ novacron ${args}\n`);
  if (at === -1) return "";
  const rest = out.slice(out.indexOf("\n", at) + 1);
  const end = rest.search(/^(\[\w+\] )?\$ novacron |^== /m);
  return end === -1 ? rest : rest.slice(0, end);
}

/** PIDs of processes (any program) whose command line mentions `dir`. */
async function pidsUnder(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.split("\0").some((a) => a.includes(dir))) pids.push(Number(entry));
  }
  return pids;
}

describe("npm run demo -- --once", () => {
  it("starts a cluster, runs a VM whose guest passes its integrity check, and stops everything", async () => {
    const namespacesBefore = asRoot ? await listNamespaces() : [];
    const child = spawn("npm", ["run", "--silent", "demo", "--", "--once", "--port", "17730"], {
      cwd: ROOT,
      env: { ...process.env, NOVACRON_LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(out, out).toContain("demo-vm  running");
    expect(out).toMatch(/NC-HEARTBEAT seq=3 /);
    expect(out).toMatch(/NC-VERIFY PASS seed=2026/);
    expect(out).toMatch(/Migrated demo-vm from host-[ab] to host-[ab] over (qemu|dwcp), total/);
    expect(out).toMatch(/no reboot; NC-VERIFY PASS at the destination/);
    expect(out).toContain("demo-vm deleted");
    if (asRoot) {
      // As root: the WAN part, over DWCP there and back, the guest intact.
      expect(out).toMatch(/Migrated demo-wan from host-c to host-d over dwcp, total/);
      expect(out).toMatch(/Migrated demo-wan from host-d to host-c over dwcp, total/);
      expect(out).toContain("demo-wan: NC-VERIFY PASS after two WAN migrations over DWCP, no reboot");
      // The federation part: east's VM moves to west live, intact, and both views agree.
      expect(out).toMatch(/Migrated demo-fed from host-c to west-1 in cluster west over dwcp, total/);
      expect(echoed(out, "west", "vm console demo-fed --lines 12")).toMatch(
        /^NC-VERIFY PASS seed=2028 .*round=\d+$/m,
      );
      expect(out).toMatch(
        /demo-fed: heartbeat seq=\d+ in east before the move, seq=\d+ onward in west, no reboot; NC-VERIFY PASS in cluster west/,
      );
      for (const cluster of ["east", "west"]) {
        const view = echoed(out, cluster, "vm list --all-clusters");
        expect(view, `${cluster}'s global view`).toMatch(/^demo-fed +west +2 +running +west-1 /m);
        expect(view, `${cluster}'s global view`).toMatch(/^demo-vm +east +1 +running /m);
      }
      // West imported no image: it holds east's now, copied for the hand-off.
      expect(echoed(out, "west", "image list")).toMatch(/^guest-wan +\S+ .*west-1/m);
      expect(echoed(out, "east", "cluster handoffs")).toMatch(/^demo-fed +source +west +1→2 +completed/m);
      expect(echoed(out, "west", "cluster handoffs")).toMatch(/^demo-fed +destination +east +1→2 +owned/m);
      expect(out).toContain("demo-fed deleted");
    } else {
      expect(out).toContain("Across an emulated WAN with DWCP: skipped");
      expect(out).toContain("Two clusters in two sites, a VM live-migrated between them: skipped");
    }
    expect(code, out).toBe(0);
    const dir = /embedded PGlite in (\/tmp\/nc-cluster-[^/]+)\/server/.exec(out)?.[1];
    expect(dir).toBeDefined();
    // West's data dir is inside east's: neither cluster left a QEMU, a daemon or a namespace.
    expect(await qemuPidsUnder(dir!)).toEqual([]);
    expect(await pidsUnder(dir!)).toEqual([]);
    if (asRoot) expect((await listNamespaces()).filter((ns) => !namespacesBefore.includes(ns))).toEqual([]);
  }, 600_000);

  it("exits non-zero with usage on a bad flag", async () => {
    const child = spawn("node", ["dist/demo/main-job.js", "--port", "nope"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(2);
    expect(err).toContain("--port must be a port number");
  });
});
