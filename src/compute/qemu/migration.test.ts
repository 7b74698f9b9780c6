import { describe, expect, it } from "vitest";
import { NovaError } from "../../lib/errors.js";
import { buildQemuArgv, type MachineConfig } from "./machine.js";
import {
  cancelOutgoing,
  DEFAULT_TUNING,
  MigrationError,
  parseQueryMigrate,
  resumeSourceAfterSwitchover,
  startIncoming,
  startOutgoing,
  startPostcopy,
  tcpUri,
  waitForMigration,
} from "./migration.js";
import { ScriptedQmp } from "./scripted-qmp.test-util.js";

/** Answers query-migrate with each reply in turn, repeating the last one. */
function migrateReplies(...replies: unknown[]): () => unknown {
  let i = 0;
  return () => replies[Math.min(i++, replies.length - 1)];
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected the promise to reject");
}

/** A query-migrate reply QEMU 7.2 sent during pre-copy (trimmed of fields we ignore). */
const ACTIVE_REPLY = {
  "expected-downtime": 300,
  status: "active",
  "setup-time": 3,
  "total-time": 405,
  "cpu-throttle-percentage": 20,
  ram: {
    total: 268967936,
    "dirty-sync-count": 2,
    "pages-per-second": 362076,
    "page-size": 4096,
    remaining: 9261056,
    mbps: 1979.19,
    transferred: 87777982,
    "dirty-pages-rate": 250,
    duplicate: 42583,
    normal: 21295,
  },
};

const COMPLETED_REPLY = {
  status: "completed",
  "setup-time": 3,
  downtime: 147,
  "total-time": 479,
  ram: {
    total: 268967936,
    "dirty-sync-count": 3,
    "page-size": 4096,
    remaining: 0,
    transferred: 95898325,
    mbps: 1613.8,
  },
};

describe("parseQueryMigrate", () => {
  it("maps a pre-copy reply to progress, with the dirty rate in pages and bytes", () => {
    expect(parseQueryMigrate(ACTIVE_REPLY)).toEqual({
      status: "active",
      totalBytes: 268967936,
      transferredBytes: 87777982,
      remainingBytes: 9261056,
      pass: 2,
      pagesPerSecond: 362076,
      dirtyPagesRate: 250,
      dirtyBytesPerSecond: 250 * 4096,
      mbps: 1979.19,
      pageSizeBytes: 4096,
      expectedDowntimeMs: 300,
      totalTimeMs: 405,
      setupTimeMs: 3,
      cpuThrottlePercent: 20,
    });
  });

  it("reports QEMU's measured downtime once completed, and no expected downtime", () => {
    const p = parseQueryMigrate(COMPLETED_REPLY);
    expect(p).toMatchObject({ status: "completed", downtimeMs: 147, totalTimeMs: 479, remainingBytes: 0 });
    expect(p.expectedDowntimeMs).toBeUndefined();
  });

  it('reads the empty reply of a QEMU that never migrated as status "none" with zero counters', () => {
    expect(parseQueryMigrate({})).toEqual({
      status: "none",
      totalBytes: 0,
      transferredBytes: 0,
      remainingBytes: 0,
      pass: 0,
      pagesPerSecond: 0,
      dirtyPagesRate: 0,
      dirtyBytesPerSecond: 0,
      mbps: 0,
      pageSizeBytes: 4096,
    });
  });

  it("keeps QEMU's error description of a failed migration, which has no ram section", () => {
    const p = parseQueryMigrate({ status: "failed", "error-desc": "Unable to write to socket: Broken pipe" });
    expect(p.status).toBe("failed");
    expect(p.errorDesc).toBe("Unable to write to socket: Broken pipe");
    expect(p.transferredBytes).toBe(0);
  });

  it("ignores members that are not finite numbers and replies that are not objects", () => {
    const p = parseQueryMigrate({ status: "setup", downtime: "12", ram: { total: null, mbps: Number.NaN } });
    expect(p.downtimeMs).toBeUndefined();
    expect(p.totalBytes).toBe(0);
    expect(p.mbps).toBe(0);
    expect(parseQueryMigrate(null).status).toBe("none");
    expect(parseQueryMigrate("active").status).toBe("none");
    expect(parseQueryMigrate({ status: "active", ram: "x" }).totalBytes).toBe(0);
  });
});

describe("the destination's machine config", () => {
  it("adds -incoming defer to the very same argv as the source's", () => {
    const cfg: MachineConfig = {
      vmId: "0b9c8a4e-6f3d-4c1e-9a57-2d1f0e3c4b5a",
      name: "web-1",
      vcpus: 1,
      memoryMiB: 256,
      accel: "tcg",
      diskPath: "/var/lib/novacron/disks/web-1.qcow2",
      runDir: "/run/novacron/vms/0b9c8a4e",
    };
    const sourceArgv = buildQemuArgv(cfg);
    expect(sourceArgv).not.toContain("-incoming");
    expect(buildQemuArgv({ ...cfg, incoming: "defer" })).toEqual([...sourceArgv, "-incoming", "defer"]);
    expect(() => buildQemuArgv({ ...cfg, incoming: "tcp:0:4444" as "defer" })).toThrow(/incoming/);
  });
});

describe("tcpUri", () => {
  it("formats IPv4, names and bracketed IPv6 and rejects bad ports and hosts", () => {
    expect(tcpUri("10.0.0.2", 46001)).toBe("tcp:10.0.0.2:46001");
    expect(tcpUri("host-b", 1)).toBe("tcp:host-b:1");
    expect(tcpUri("::1", 46001)).toBe("tcp:[::1]:46001");
    expect(tcpUri("[::1]", 46001)).toBe("tcp:[::1]:46001");
    expect(() => tcpUri("10.0.0.2", 0)).toThrow(/port/);
    expect(() => tcpUri("10.0.0.2", 70000)).toThrow(/port/);
    expect(() => tcpUri("", 1)).toThrow(/host/);
    expect(() => tcpUri("a b", 1)).toThrow(/host/);
  });
});

describe("startIncoming", () => {
  it("turns autostart off, sets the capabilities that must match the source, then listens", async () => {
    const qmp = new ScriptedQmp().on("query-status", () => ({ status: "inmigrate", running: false }));
    await startIncoming(qmp.client, { host: "10.0.0.2", port: 46001 }, { ...DEFAULT_TUNING, postcopy: true });
    expect(qmp.calls).toEqual([
      { command: "query-status" },
      { command: "stop" },
      {
        command: "migrate-set-capabilities",
        args: {
          capabilities: [
            { capability: "events", state: true },
            { capability: "postcopy-ram", state: true },
            { capability: "multifd", state: false },
          ],
        },
      },
      { command: "migrate-set-parameters", args: { "tls-creds": "" } },
      { command: "migrate-incoming", args: { uri: "tcp:10.0.0.2:46001" } },
    ]);
  });

  it("with TLS credentials, requires TLS on the listener before it listens", async () => {
    const qmp = new ScriptedQmp().on("query-status", () => ({ status: "inmigrate", running: false }));
    await startIncoming(
      qmp.client,
      { host: "10.0.0.2", port: 46001, tlsCreds: "nc-tls-server-x" },
      DEFAULT_TUNING,
    );
    expect(qmp.calls.slice(-2)).toEqual([
      {
        command: "migrate-set-parameters",
        args: { "tls-creds": "nc-tls-server-x", "tls-authz": "nc-tls-server-x-authz" },
      },
      { command: "migrate-incoming", args: { uri: "tcp:10.0.0.2:46001" } },
    ]);
  });

  it("refuses a QEMU that was not started to receive a migration, without touching it", async () => {
    const qmp = new ScriptedQmp().on("query-status", () => ({ status: "running", running: true }));
    const err = await rejection(startIncoming(qmp.client, { host: "h", port: 1 }, DEFAULT_TUNING));
    expect(err).toMatchObject({ code: "NOVA_ILLEGAL_STATE" });
    expect(qmp.commands).toEqual(["query-status"]);
  });
});

describe("startOutgoing", () => {
  it("sets capabilities, then downtime limit and bandwidth, then migrates", async () => {
    const qmp = new ScriptedQmp().on("query-migrate", () => ({}));
    await startOutgoing(
      qmp.client,
      "tcp:10.0.0.2:46001",
      { downtimeLimitMs: 500, maxBandwidthBytesPerSec: 1 << 20, autoConverge: false, postcopy: true },
      { pauseBeforeSwitchover: true },
    );
    expect(qmp.calls).toEqual([
      { command: "query-migrate" },
      {
        command: "migrate-set-capabilities",
        args: {
          capabilities: [
            { capability: "events", state: true },
            { capability: "auto-converge", state: false },
            { capability: "postcopy-ram", state: true },
            { capability: "pause-before-switchover", state: true },
            { capability: "multifd", state: false },
          ],
        },
      },
      { command: "migrate-set-parameters", args: { "downtime-limit": 500, "max-bandwidth": 1048576 } },
      // Cleared: the parameters outlive an earlier migration that used TLS.
      { command: "migrate-set-parameters", args: { "tls-creds": "", "tls-hostname": "" } },
      { command: "migrate", args: { uri: "tcp:10.0.0.2:46001" } },
    ]);
  });

  it("with TLS, names the credentials and the destination's host name before migrating", async () => {
    const qmp = new ScriptedQmp().on("query-migrate", () => ({}));
    await startOutgoing(qmp.client, "tcp:10.0.0.2:46001", DEFAULT_TUNING, {
      tls: { creds: "nc-tls-client-x", hostname: "host-b" },
    });
    expect(qmp.calls.slice(-2)).toEqual([
      {
        command: "migrate-set-parameters",
        args: { "tls-creds": "nc-tls-client-x", "tls-hostname": "host-b" },
      },
      { command: "migrate", args: { uri: "tcp:10.0.0.2:46001" } },
    ]);
  });

  it("uses the defaults: 300 ms downtime, no practical bandwidth cap, auto-converge, no post-copy or pause", async () => {
    const qmp = new ScriptedQmp().on("query-migrate", () => ({ status: "failed" }));
    await startOutgoing(qmp.client, "tcp:h:1", DEFAULT_TUNING);
    const caps = qmp.calls[1]!.args!.capabilities;
    expect(caps).toEqual([
      { capability: "events", state: true },
      { capability: "auto-converge", state: true },
      { capability: "postcopy-ram", state: false },
      { capability: "pause-before-switchover", state: false },
      { capability: "multifd", state: false },
    ]);
    expect(qmp.calls[2]!.args).toEqual({ "downtime-limit": 300, "max-bandwidth": 16 * 1024 ** 3 });
  });

  it("refuses to start while another migration runs", async () => {
    const qmp = new ScriptedQmp().on("query-migrate", () => ({ status: "active" }));
    const err = await rejection(startOutgoing(qmp.client, "tcp:h:1", DEFAULT_TUNING));
    expect(err).toMatchObject({ code: "NOVA_ILLEGAL_STATE", details: { migrationStatus: "active" } });
    expect(qmp.commands).toEqual(["query-migrate"]);
  });

  it("rejects invalid tuning before sending anything", async () => {
    const qmp = new ScriptedQmp();
    for (const bad of [
      { ...DEFAULT_TUNING, downtimeLimitMs: 0 },
      { ...DEFAULT_TUNING, downtimeLimitMs: 1.5 },
      { ...DEFAULT_TUNING, maxBandwidthBytesPerSec: -1 },
    ]) {
      expect(await rejection(startOutgoing(qmp.client, "tcp:h:1", bad))).toMatchObject({
        code: "NOVA_UNPROCESSABLE",
      });
    }
    expect(qmp.calls).toEqual([]);
  });
});

describe("waitForMigration", () => {
  it("resolves with the completed progress and reports every poll", async () => {
    const qmp = new ScriptedQmp().on(
      "query-migrate",
      migrateReplies({ status: "setup" }, ACTIVE_REPLY, COMPLETED_REPLY),
    );
    const seen: string[] = [];
    const done = await waitForMigration(qmp.client, {
      timeoutMs: 5_000,
      pollMs: 1,
      onProgress: (p) => seen.push(p.status),
    });
    expect(done).toMatchObject({ status: "completed", downtimeMs: 147 });
    expect(seen).toEqual(["setup", "active", "completed"]);
  });

  it("re-reads a completed migration until QEMU has filled in total time and downtime", async () => {
    const qmp = new ScriptedQmp().on(
      "query-migrate",
      migrateReplies({ ...COMPLETED_REPLY, downtime: 0, "total-time": 0 }, COMPLETED_REPLY),
    );
    const done = await waitForMigration(qmp.client, { timeoutMs: 5_000, pollMs: 1 });
    expect(done).toMatchObject({ downtimeMs: 147, totalTimeMs: 479 });
  });

  it("resolves at pre-switchover by default, and not when told to wait for completion only", async () => {
    const qmp = new ScriptedQmp().on("query-migrate", () => ({ status: "pre-switchover" }));
    expect((await waitForMigration(qmp.client, { timeoutMs: 1_000, pollMs: 1 })).status).toBe(
      "pre-switchover",
    );
    const err = await rejection(waitForMigration(qmp.client, { timeoutMs: 30, pollMs: 5, resolveOn: [] }));
    expect(err).toMatchObject({ reason: "timeout", code: "NOVA_TIMEOUT" });
    expect((err as MigrationError).message).toMatch(/status pre-switchover/);
  });

  it("rejects with QEMU's reason when the migration fails, as a retryable error", async () => {
    const qmp = new ScriptedQmp().on(
      "query-migrate",
      migrateReplies(ACTIVE_REPLY, {
        status: "failed",
        "error-desc": "Unable to write to socket: Broken pipe",
      }),
    );
    const err = await rejection(waitForMigration(qmp.client, { timeoutMs: 5_000, pollMs: 1 }));
    expect(err).toBeInstanceOf(MigrationError);
    expect(err).toBeInstanceOf(NovaError);
    expect(err).toMatchObject({
      reason: "failed",
      code: "NOVA_QEMU_ERROR",
      retryable: true,
      details: {
        reason: "failed",
        migrationStatus: "failed",
        errorDesc: "Unable to write to socket: Broken pipe",
      },
    });
    expect((err as Error).message).toBe("Migration failed: Unable to write to socket: Broken pipe");
  });

  it("rejects when the migration is cancelled", async () => {
    const qmp = new ScriptedQmp().on(
      "query-migrate",
      migrateReplies({ status: "cancelling" }, { status: "cancelled" }),
    );
    expect(await rejection(waitForMigration(qmp.client, { timeoutMs: 5_000, pollMs: 1 }))).toMatchObject({
      reason: "cancelled",
      code: "NOVA_ILLEGAL_STATE",
    });
  });

  it("rejects when post-copy lost its connection, as not retryable", async () => {
    const qmp = new ScriptedQmp().on("query-migrate", () => ({ status: "postcopy-paused" }));
    expect(await rejection(waitForMigration(qmp.client, { timeoutMs: 5_000, pollMs: 1 }))).toMatchObject({
      reason: "postcopy-paused",
      retryable: false,
    });
  });

  it("reports a lost source QMP session as source-lost", async () => {
    const qmp = new ScriptedQmp().on("query-migrate", () => {
      throw new NovaError("NOVA_QMP_PROTOCOL", "QMP connection closed by QEMU");
    });
    expect(await rejection(waitForMigration(qmp.client, { timeoutMs: 5_000, pollMs: 1 }))).toMatchObject({
      reason: "source-lost",
      code: "NOVA_QMP_PROTOCOL",
    });
  });

  it("stops waiting when the caller aborts", async () => {
    const qmp = new ScriptedQmp().on("query-migrate", () => ACTIVE_REPLY);
    const ac = new AbortController();
    const waiting = rejection(
      waitForMigration(qmp.client, { timeoutMs: 5_000, pollMs: 10_000, signal: ac.signal }),
    );
    setTimeout(() => ac.abort(new Error("user cancelled")), 5);
    expect(await waiting).toMatchObject({ reason: "aborted", progress: { status: "active" } });
  });

  it("polls again as soon as QEMU emits a MIGRATION event instead of waiting out the interval", async () => {
    let status = "active";
    const qmp = new ScriptedQmp().on("query-migrate", () => ({ ...COMPLETED_REPLY, status }));
    const started = Date.now();
    const waiting = waitForMigration(qmp.client, { timeoutMs: 20_000, pollMs: 10_000 });
    setTimeout(() => {
      status = "completed";
      qmp.emit("MIGRATION", { status: "completed" });
    }, 10);
    expect((await waiting).status).toBe("completed");
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe("cancelOutgoing", () => {
  it("cancels, waits for QEMU to roll back and returns the final progress", async () => {
    const qmp = new ScriptedQmp()
      .on("query-migrate", migrateReplies(ACTIVE_REPLY, { status: "cancelling" }, { status: "cancelled" }))
      .on("query-status", () => ({ status: "running", running: true }));
    const final = await cancelOutgoing(qmp.client);
    expect(final.status).toBe("cancelled");
    expect(qmp.commands.filter((c) => c === "migrate_cancel")).toHaveLength(1);
    expect(qmp.commands).not.toContain("cont");
  });

  it("resumes a source whose vCPUs the migration left stopped, unless told not to", async () => {
    const make = () =>
      new ScriptedQmp()
        .on("query-migrate", migrateReplies({ status: "pre-switchover" }, { status: "cancelled" }))
        .on("query-status", () => ({ status: "postmigrate", running: false }));
    const qmp = make();
    await cancelOutgoing(qmp.client);
    expect(qmp.commands.at(-1)).toBe("cont");
    const keepPaused = make();
    await cancelOutgoing(keepPaused.client, { resume: false });
    expect(keepPaused.commands).not.toContain("cont");
  });

  it("refuses after the switch-over: completed or post-copy", async () => {
    for (const status of ["completed", "postcopy-active"]) {
      const qmp = new ScriptedQmp().on("query-migrate", () => ({ status }));
      expect(await rejection(cancelOutgoing(qmp.client))).toMatchObject({
        code: "NOVA_ILLEGAL_STATE",
        details: { migrationStatus: status },
      });
      expect(qmp.commands).not.toContain("migrate_cancel");
    }
  });

  it("refuses when the cancel lost the race with completion", async () => {
    const qmp = new ScriptedQmp().on(
      "query-migrate",
      migrateReplies({ status: "device" }, { status: "completed" }),
    );
    expect(await rejection(cancelOutgoing(qmp.client))).toMatchObject({ code: "NOVA_ILLEGAL_STATE" });
    expect(qmp.commands).toContain("migrate_cancel");
    expect(qmp.commands).not.toContain("cont");
  });
});

describe("startPostcopy", () => {
  it("switches an active pre-copy to post-copy and refuses in any other state", async () => {
    const qmp = new ScriptedQmp().on("query-migrate", () => ACTIVE_REPLY);
    await startPostcopy(qmp.client);
    expect(qmp.commands).toEqual(["query-migrate", "migrate-start-postcopy"]);
    const idle = new ScriptedQmp().on("query-migrate", () => ({}));
    expect(await rejection(startPostcopy(idle.client))).toMatchObject({ code: "NOVA_ILLEGAL_STATE" });
    expect(idle.commands).toEqual(["query-migrate"]);
  });
});

describe("resumeSourceAfterSwitchover", () => {
  it("resumes a source left in postmigrate by a completed migration", async () => {
    const qmp = new ScriptedQmp()
      .on("query-migrate", () => COMPLETED_REPLY)
      .on("query-status", () => ({ status: "postmigrate", running: false }));
    await resumeSourceAfterSwitchover(qmp.client);
    expect(qmp.commands).toEqual(["query-migrate", "query-status", "cont"]);
  });

  it("does nothing for a source that runs again already (a repeated undo)", async () => {
    const qmp = new ScriptedQmp()
      .on("query-migrate", () => COMPLETED_REPLY)
      .on("query-status", () => ({ status: "running", running: true }));
    await resumeSourceAfterSwitchover(qmp.client);
    expect(qmp.commands).toEqual(["query-migrate", "query-status"]);
  });

  it("refuses while the migration is not completed or the VM is not in postmigrate", async () => {
    for (const [migration, vm] of [
      [ACTIVE_REPLY, { status: "running", running: true }],
      [{ status: "cancelled" }, { status: "paused", running: false }],
    ] as const) {
      const qmp = new ScriptedQmp().on("query-migrate", () => migration).on("query-status", () => vm);
      expect(await rejection(resumeSourceAfterSwitchover(qmp.client))).toMatchObject({
        code: "NOVA_ILLEGAL_STATE",
      });
      expect(qmp.commands).not.toContain("cont");
    }
  });
});
