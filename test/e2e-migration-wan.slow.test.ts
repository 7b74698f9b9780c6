/**
 * Live migration over DWCP across the emulated `wan` profile (100 Mbit/s, 50 ms RTT,
 * 0.1 % loss): two agents in two network namespaces, the server in the initial one, the
 * control plane on the unemulated management network and every migration byte on the
 * emulated link. The guest's memory and disk arrive intact with unbroken heartbeats; a
 * DWCP connection killed mid-migration changes nothing; a link that stays down rolls back
 * (at the migration's timeout at the latest) with the VM running at its source; a corrupted
 * destination cache is detected, never yields wrong data, and a retry completes. Skips
 * when not root.
 *
 * The guest runs its memory dirtier, so capped migrations take several pre-copy passes;
 * its integrity is judged after every one (QEMU 10: 7.2 under TCG corrupted such guests,
 * docs/migration.md).
 */
import { execFile } from "node:child_process";
import { open, readdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { authenticatedOnly, isLoopback, listListeners, probeFrom } from "../src/testing/port-scan.js";
import { ADDR_A, ADDR_B, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";
import { guestImageManifest, qemuPidsUnder, TestCluster } from "./helpers/cluster.js";

const execFileP = promisify(execFile);
const unavailable = emulatorUnavailableReason();
if (unavailable) console.warn(`Skipping the WAN migration suite: ${unavailable}`);

const PORT = 17780;
const DWCP_PORT = { "wan-a": 17791, "wan-b": 17792 } as const;
const GUEST =
  "nc.pattern_seed=21 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2 nc.dirty_mb=32 nc.dirty_rate_mbps=1";

interface MigrationBody {
  id: string;
  state: string;
  stateReason: string;
  rollback: string;
  transport: string;
  targetHost: string;
  result: { downtimeMs?: number; totalTimeMs?: number };
  progress: {
    /** QEMU's dirty-bitmap syncs when last polled. */
    pass?: number;
    transport?: {
      chosen: string;
      mode: string | null;
      wireBytes?: number;
      logicalBytes?: number;
      startedFromPath?: { streams: number; capacityBps: number };
    };
  };
}

describe.skipIf(unavailable !== null)(
  "live migration over DWCP across an emulated WAN",
  { timeout: 240_000 },
  () => {
    let link: WanLink;
    let c: TestCluster;
    const sites = () => [
      { name: "wan-a", ns: link.nsA, mgmt: link.management!.a, data: ADDR_A, port: PORT + 1 },
      { name: "wan-b", ns: link.nsB, mgmt: link.management!.b, data: ADDR_B, port: PORT + 2 },
    ];

    beforeAll(async () => {
      const manifest = await guestImageManifest();
      link = await WanLink.create({ spec: "wan", management: true });
      c = await TestCluster.create(PORT);
      await c.startServer(["--heartbeat-timeout", "10"], { listenHost: "0.0.0.0" });
      for (const s of sites()) {
        await c.startAgent(
          s.name,
          s.port,
          [
            "--memory",
            "1024",
            "--stop-grace",
            "5",
            "--data-address",
            s.data,
            "--dwcp-port",
            String(DWCP_PORT[s.name as "wan-a"]),
          ],
          { netns: s.ns, host: s.mgmt, serverUrl: `https://${link.management!.host}:${PORT}` },
        );
      }
      const res = await c.cli(["image", "import", "guest", "--manifest", manifest, "--host", "wan-a"]);
      expect(res.code, res.stderr).toBe(0);
      const vm = await c.api("POST", "/v1/vms", {
        name: "w",
        image: "guest",
        memoryMiB: 256,
        kernelArgs: GUEST,
      });
      expect(vm.status).toBe(201);
      await c.waitVmState("w", "running", 120_000);
      await c.waitConsole("w", /NC-VERIFY PASS seed=21 .*round=1/);
    }, 240_000);

    // A test that failed half-way must not leave its migration running into the next one.
    afterEach(async () => {
      const list = (await c.api<{ migrations: MigrationBody[] }>("GET", "/v1/vms/w/migrations")).body
        .migrations;
      for (const m of list.filter((x) => !["completed", "failed", "cancelled"].includes(x.state))) {
        await c.api("DELETE", `/v1/migrations/${m.id}`);
        await end(m.id);
      }
    });

    afterAll(async () => {
      await c?.destroy();
      await link?.close();
    });

    const where = async () => ((await c.vm("w")) as { host: string; id: string }).host;
    const other = (h: string) => (h === "wan-a" ? "wan-b" : "wan-a");
    const siteOf = (name: string) => sites().find((s) => s.name === name)!;

    async function start(options: Record<string, unknown> = {}): Promise<MigrationBody> {
      const res = await c.api<MigrationBody>("POST", "/v1/vms/w/migrations", {
        targetHost: other(await where()),
        options: { timeoutSeconds: 120, ...options },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return res.body;
    }

    const end = (id: string) => c.waitMigrationEnd<MigrationBody>(id);

    /** Waits until the migration's memory stream has carried its first MiB. */
    const flowing = (id: string) =>
      waitFor(
        async () =>
          ((await c.api<MigrationBody>("GET", `/v1/migrations/${id}`)).body.progress.transport
            ?.logicalBytes ?? 0) >
          2 ** 20,
        { timeoutMs: 60_000, intervalMs: 100, what: "the memory stream to flow" },
      );

    /** The guest went on where it was: later verification rounds, no reboot, heartbeats in sequence. */
    async function expectGuestIntact(before: number): Promise<void> {
      await c.waitConsole("w", /NC-VERIFY PASS seed=21 .*round=(\d+)/);
      // The verification line can come before the destination's first heartbeat line.
      await c.waitConsole("w", /NC-HEARTBEAT seq=/);
      const all = await c.console("w", 400);
      // The serial log is appended across boots: judge what came after the heartbeat the
      // test started from (all of the window if that one is no longer in it).
      const at = all.findLastIndex((l) => l.startsWith(`NC-HEARTBEAT seq=${before} `));
      const lines = at === -1 ? all : all.slice(at + 1);
      expect(lines.filter((l) => l.startsWith("NC-READY") || l.includes("NC-VERIFY FAIL"))).toEqual([]);
      const seqs = lines
        .map((l) => Number(/^NC-HEARTBEAT seq=(\d+)/.exec(l)?.[1] ?? Number.NaN))
        .filter(Number.isFinite);
      expect(seqs.length, `heartbeats in the console:\n${lines.slice(-30).join("\n")}`).toBeGreaterThan(0);
      expect(seqs[0]).toBeGreaterThan(before);
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe(seqs[i - 1]! + 1);
    }

    /** The sequence number of the latest heartbeat line (after a reboot, the new boot's). */
    async function lastHeartbeat(): Promise<number> {
      const lines = await c.console("w", 50);
      const seqs = lines.map((l) => Number(/^NC-HEARTBEAT seq=(\d+)/.exec(l)?.[1] ?? Number.NaN));
      return seqs.filter(Number.isFinite).at(-1) ?? 0;
    }

    async function runningOnceOn(host: string): Promise<void> {
      const vm = (await c.waitVmState("w", "running", 60_000)) as { host: string; id: string };
      expect(vm.host).toBe(host);
      await waitFor(
        async () =>
          (await qemuPidsUnder(path.join(c.agentDir("wan-a"), "vms", vm.id))).length +
            (await qemuPidsUnder(path.join(c.agentDir("wan-b"), "vms", vm.id))).length ===
          1,
        { timeoutMs: 30_000, what: "exactly one QEMU for the VM" },
      );
    }

    it("chooses DWCP by itself on the WAN and moves memory and disk intact, then back with a warm cache", async () => {
      const seqBefore = await lastHeartbeat();
      const first = await end((await start()).id);
      expect(first.state, first.stateReason).toBe("completed");
      expect(first.transport).toBe("dwcp");
      expect(first.progress.transport?.mode).toBe("internet");
      await runningOnceOn(first.targetHost);
      await expectGuestIntact(seqBefore);
      const coldWire = first.progress.transport!.wireBytes!;
      expect(coldWire).toBeLessThan(first.progress.transport!.logicalBytes!);

      const back = await end((await start()).id);
      expect(back.state, back.stateReason).toBe("completed");
      await runningOnceOn(back.targetHost);
      await expectGuestIntact(seqBefore);
      console.log(
        `wan: cold ${first.result.totalTimeMs} ms, wire ${(coldWire / 2 ** 20).toFixed(1)} of ${(first.progress.transport!.logicalBytes! / 2 ** 20).toFixed(1)} MiB; ` +
          `back ${back.result.totalTimeMs} ms, wire ${(back.progress.transport!.wireBytes! / 2 ** 20).toFixed(2)} MiB; downtime ${first.result.downtimeMs}/${back.result.downtimeMs} ms`,
      );
    });

    it("completes when one DWCP connection is killed mid-migration", async () => {
      const from = await where();
      const to = other(from);
      const before = await lastHeartbeat();
      // Capped so that the transfer is still running when the fault is injected.
      const m = await start({ transport: "dwcp", maxBandwidthMiBps: 4 });
      // Wait for the memory stream to flow, then reset one established DWCP connection.
      await waitFor(
        async () => {
          const x = (await c.api<MigrationBody>("GET", `/v1/migrations/${m.id}`)).body;
          const ended = ["completed", "failed", "cancelled"].includes(x.state);
          return (x.progress.transport?.logicalBytes ?? 0) > 4 * 2 ** 20 || ended ? x : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 100, what: "the memory stream to flow" },
      );
      const dst = siteOf(to);
      const { stdout } = await execFileP("ip", [
        "netns",
        "exec",
        siteOf(from).ns,
        "ss",
        "-tnH",
        "state",
        "established",
        "dst",
        dst.data,
        "dport",
        "=",
        String(DWCP_PORT[to as "wan-a"]),
      ]);
      const sport = /:(\d+)\s+\S+:\d+\s*$/m.exec(stdout.trim().split("\n")[0] ?? "")?.[1];
      expect(sport, `an established DWCP connection in:\n${stdout}`).toBeDefined();
      await execFileP("ip", [
        "netns",
        "exec",
        siteOf(from).ns,
        "ss",
        "-K",
        "dst",
        dst.data,
        "dport",
        "=",
        String(DWCP_PORT[to as "wan-a"]),
        "sport",
        "=",
        sport!,
      ]);
      const done = await end(m.id);
      expect(done.state, done.stateReason).toBe("completed");
      // The first test moved the VM the same way: this session started from what that one
      // sustained (streams and capacity), not from a guess (path-memory.ts).
      expect(
        done.progress.transport?.startedFromPath?.streams,
        JSON.stringify(done.progress.transport),
      ).toBeGreaterThan(0);
      await runningOnceOn(to);
      // The destination resumed only after the relay verified the whole stream (SHA-256);
      // capped at 4 MiB/s with the dirtier running this took several pre-copy passes.
      console.log(`connection reset: completed after ${done.progress.pass} dirty syncs`);
      await expectGuestIntact(before);
    });

    it("a port scan during a migration finds nothing that acts on an unauthenticated byte off loopback", async () => {
      const from = await where();
      // `auto`: the destination QEMU listens on the data address (with TLS) before the
      // source chooses, so its listeners are in the scan too.
      const m = await start({ maxBandwidthMiBps: 2, timeoutSeconds: 120 });
      await flowing(m.id);
      // Every listener of the agents and their QEMUs (each site's namespace holds only
      // ours) and of the server, probed from the other site as an attacker there would.
      const serverPid = c.daemonPid("server")!;
      const targets: { where: string; from: string; host: string; port: number; who: string }[] = [];
      for (const s of sites()) {
        const otherNs = sites().find((x) => x.name !== s.name)!.ns;
        for (const l of await listListeners(s.ns)) {
          if (isLoopback(l.address)) continue;
          const hosts = l.address === "0.0.0.0" || l.address === "*" ? [s.mgmt, s.data] : [l.address];
          for (const host of hosts)
            targets.push({ where: s.name, from: otherNs, host, port: l.port, who: l.processes.join(",") });
        }
      }
      for (const l of await listListeners()) {
        if (!l.pids.includes(serverPid) || isLoopback(l.address)) continue;
        targets.push({
          where: "server",
          from: link.nsA,
          host: link.management!.host,
          port: l.port,
          who: "server",
        });
      }
      // The agents' APIs, DWCP listeners, the destination QEMU and the server's API at least.
      expect(targets.length).toBeGreaterThanOrEqual(6);
      expect(targets.some((t) => t.who.includes("qemu"))).toBe(true);
      console.log(`port scan: ${targets.map((t) => `${t.where} ${t.who} ${t.host}:${t.port}`).join("; ")}`);
      const open: string[] = [];
      for (const t of targets) {
        const r = await probeFrom(t.from, t.host, t.port);
        if (!authenticatedOnly(r)) open.push(`${t.where} ${t.who} ${t.host}:${t.port} ${JSON.stringify(r)}`);
      }
      expect(open).toEqual([]);
      // The migration was not disturbed by the probes.
      await c.api("DELETE", `/v1/migrations/${m.id}`);
      const done = await end(m.id);
      expect(["cancelled", "completed"]).toContain(done.state);
      await c.waitVmState("w", "running", 60_000);
      expect(await where()).toBe(done.state === "completed" ? other(from) : from);
    });

    it("rolls back, the VM running at its source, when the link stays down", async () => {
      const from = await where();
      const before = await lastHeartbeat();
      // Capped so that the transfer is still running when the fault is injected. A link that
      // carries nothing (99.99 % loss) keeps the DWCP session's connections open; nothing
      // moves, which ends the migration after a minute (the stall grace) or at its deadline
      // (25 s here, to keep the suite short), and the reason names the link.
      const m = await start({ transport: "dwcp", maxBandwidthMiBps: 4, timeoutSeconds: 25 });
      await flowing(m.id);
      await link.set("both", "rate=100mbit,rtt=50ms,loss=99.99%");
      try {
        const done = await end(m.id);
        expect(done.state).toBe("failed");
        expect(done.stateReason).toMatch(
          new RegExp(
            `^timed out after 25 s: nothing moved toward target host ${other(from)} for the last \\d+ s`,
          ),
        );
        expect(done.rollback).toContain(`kept running on ${from}`);
      } finally {
        await link.set("both", "rate=100mbit,rtt=50ms,loss=0.1%");
      }
      await runningOnceOn(from);
      await expectGuestIntact(before);
    });

    it("detects a corrupted destination cache: no wrong data reaches the guest, and a retry completes", async () => {
      const from = await where();
      const to = other(from);
      // Every page slot of the destination's warm cache gets garbage over its first bytes.
      const cacheDir = path.join(c.agentDir(to), "dwcp", "page-cache");
      const files = await readdir(cacheDir);
      expect(files).toContain("pages.dat");
      const fh = await open(path.join(cacheDir, "pages.dat"), "r+");
      const { size } = await fh.stat();
      const junk = Buffer.alloc(64, 0xa5);
      for (let off = 0; off < size; off += 4096) await fh.write(junk, 0, junk.length, off);
      await fh.close();
      const m = await end((await start({ transport: "dwcp" })).id);
      console.log(`corrupted cache: migration ${m.state} (${m.stateReason})`);
      if (m.state === "completed") {
        await runningOnceOn(to);
      } else {
        expect(m.rollback).toContain(`kept running on ${from}`);
        await runningOnceOn(from);
        const retry = await end((await start({ transport: "dwcp" })).id);
        expect(retry.state, retry.stateReason).toBe("completed");
        await runningOnceOn(to);
      }
      await expectGuestIntact(0);
    });
  },
);
