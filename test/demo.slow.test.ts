// The main job runs headless: `npm run demo -- --once` does the whole demo, cleans up
// and exits 0.
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";
import { qemuPidsUnder, ROOT } from "./helpers/cluster.js";

describe("npm run demo -- --once", () => {
  it("starts a cluster, runs a VM whose guest passes its integrity check, and stops everything", async () => {
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
    if (emulatorUnavailableReason() === null) {
      // As root: the WAN part, over DWCP there and back, the guest intact.
      expect(out).toMatch(/Migrated demo-wan from host-c to host-d over dwcp, total/);
      expect(out).toMatch(/Migrated demo-wan from host-d to host-c over dwcp, total/);
      expect(out).toContain("demo-wan: NC-VERIFY PASS after two WAN migrations over DWCP, no reboot");
    } else {
      expect(out).toContain("Across an emulated WAN with DWCP: skipped");
    }
    expect(code, out).toBe(0);
    const dir = /embedded PGlite in (\/tmp\/nc-cluster-[^/]+)\/server/.exec(out)?.[1];
    expect(dir).toBeDefined();
    expect(await qemuPidsUnder(dir!)).toEqual([]);
  }, 300_000);

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
