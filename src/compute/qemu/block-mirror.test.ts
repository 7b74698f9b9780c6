import { describe, expect, it } from "vitest";
import { NovaError } from "../../lib/errors.js";
import {
  cancelMirror,
  diskNodeName,
  finishMirror,
  mirrorTargetNodeName,
  startMirror,
  startNbdExport,
  stopNbdExport,
  waitMirrorReady,
} from "./block-mirror.js";
import { ScriptedQmp } from "./scripted-qmp.test-util.js";

function qemuError(command: string, desc: string): NovaError {
  return new NovaError("NOVA_QEMU_ERROR", `QMP command ${command} failed: ${desc}`, {
    details: { command, qmpClass: "GenericError", desc },
  });
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected the promise to reject");
}

function job(status: string, extra: Record<string, unknown> = {}) {
  return { id: "migr-vda", type: "mirror", status, "current-progress": 100, "total-progress": 200, ...extra };
}

/** A stateful mirror job as QEMU runs it: cancel moves a ready job to concluded, dismiss removes it. */
function mirrorQmp(opts: { status: string; running?: boolean; error?: string; targetPresent?: boolean }) {
  let state: string | undefined = opts.status;
  let error: string | undefined;
  let target = opts.targetPresent ?? true;
  return new ScriptedQmp()
    .on("query-jobs", () => (state === undefined ? [] : [job(state, error === undefined ? {} : { error })]))
    .on("query-status", () =>
      opts.running ? { status: "running", running: true } : { status: "finish-migrate", running: false },
    )
    .on("block-job-cancel", () => {
      state = "concluded";
      error = opts.error;
      return {};
    })
    .on("job-dismiss", () => {
      state = undefined;
      return {};
    })
    .on("query-named-block-nodes", () => [
      { "node-name": "#block123" },
      ...(target ? [{ "node-name": "migr-vda-tgt" }] : []),
    ])
    .on("blockdev-del", () => {
      target = false;
      return {};
    });
}

describe("diskNodeName", () => {
  it("finds the auto-generated format node of a -drive, and says which drives exist otherwise", async () => {
    const qmp = new ScriptedQmp().on("query-block", () => [
      { device: "drive-vda", inserted: { "node-name": "#block158" } },
    ]);
    expect(await diskNodeName(qmp.client)).toBe("#block158");
    expect(await rejection(diskNodeName(qmp.client, "drive-vdb"))).toMatchObject({
      code: "NOVA_NOT_FOUND",
      details: { drives: ["drive-vda"] },
    });
  });
});

describe("startNbdExport", () => {
  it("starts the NBD server and exports the node writable under the export name", async () => {
    const qmp = new ScriptedQmp();
    await startNbdExport(qmp.client, {
      host: "10.0.0.2",
      port: 46002,
      exportName: "vda",
      nodeName: "#block158",
    });
    expect(qmp.calls).toEqual([
      {
        command: "nbd-server-start",
        args: { addr: { type: "inet", data: { host: "10.0.0.2", port: "46002" } } },
      },
      {
        command: "block-export-add",
        args: { type: "nbd", id: "vda", "node-name": "#block158", name: "vda", writable: true },
      },
    ]);
  });

  it("stops the server again when the export cannot be added", async () => {
    const qmp = new ScriptedQmp().on("block-export-add", () => {
      throw qemuError("block-export-add", "Cannot find node '#nope'");
    });
    const err = await rejection(
      startNbdExport(qmp.client, { host: "h", port: 1, exportName: "vda", nodeName: "#nope" }),
    );
    expect(err).toMatchObject({ code: "NOVA_QEMU_ERROR" });
    expect((err as Error).message).toMatch(/Cannot find node/);
    expect(qmp.commands).toEqual(["nbd-server-start", "block-export-add", "nbd-server-stop"]);
  });

  it("rejects export names and ports QEMU or NBD would misread, before sending anything", async () => {
    const qmp = new ScriptedQmp();
    for (const bad of [
      { exportName: "", port: 1 },
      { exportName: "a/b", port: 1 },
      { exportName: "vda", port: 0 },
    ]) {
      expect(await rejection(startNbdExport(qmp.client, { host: "h", nodeName: "n", ...bad }))).toMatchObject(
        { code: "NOVA_UNPROCESSABLE" },
      );
    }
    expect(qmp.calls).toEqual([]);
  });
});

describe("stopNbdExport", () => {
  it("drops the export hard, stops the server and waits until the export is gone", async () => {
    let exports = [{ id: "vda" }];
    const qmp = new ScriptedQmp()
      .on("nbd-server-stop", () => {
        exports = [];
        return {};
      })
      .on("query-block-exports", () => exports);
    await stopNbdExport(qmp.client, "vda");
    expect(qmp.calls.slice(0, 2)).toEqual([
      { command: "block-export-del", args: { id: "vda", mode: "hard" } },
      { command: "nbd-server-stop" },
    ]);
  });

  it("is idempotent: an export or server already gone is fine", async () => {
    const qmp = new ScriptedQmp()
      .on("block-export-del", () => {
        throw qemuError("block-export-del", "Export 'vda' is not found");
      })
      .on("nbd-server-stop", () => {
        throw qemuError("nbd-server-stop", "NBD server not running");
      })
      .on("query-block-exports", () => []);
    await stopNbdExport(qmp.client, "vda");
  });
});

describe("startMirror", () => {
  it("adds an NBD client node for the export and mirrors the top layer into it, keeping the job after it ends", async () => {
    const qmp = new ScriptedQmp();
    await startMirror(qmp.client, {
      jobId: "migr-vda",
      sourceNode: "drive-vda",
      nbd: { host: "10.0.0.2", port: 46002, exportName: "vda" },
    });
    expect(qmp.calls).toEqual([
      {
        command: "blockdev-add",
        args: {
          driver: "nbd",
          "node-name": "migr-vda-tgt",
          server: { type: "inet", host: "10.0.0.2", port: "46002" },
          export: "vda",
        },
      },
      {
        command: "blockdev-mirror",
        args: {
          "job-id": "migr-vda",
          device: "drive-vda",
          target: "migr-vda-tgt",
          sync: "top",
          "auto-dismiss": false,
        },
      },
    ]);
  });

  it("passes copy mode and speed through", async () => {
    const qmp = new ScriptedQmp();
    await startMirror(qmp.client, {
      jobId: "j",
      sourceNode: "drive-vda",
      nbd: { host: "h", port: 1, exportName: "vda" },
      copyMode: "write-blocking",
      speedBytesPerSec: 1000,
    });
    expect(qmp.calls[1]!.args).toMatchObject({ "copy-mode": "write-blocking", speed: 1000 });
  });

  it("removes the target node when the mirror cannot start", async () => {
    const qmp = new ScriptedQmp().on("blockdev-mirror", () => {
      throw qemuError("blockdev-mirror", "Need a root block node");
    });
    const err = await rejection(
      startMirror(qmp.client, {
        jobId: "migr-vda",
        sourceNode: "x",
        nbd: { host: "h", port: 1, exportName: "vda" },
      }),
    );
    expect(err).toMatchObject({ code: "NOVA_QEMU_ERROR", details: { jobId: "migr-vda" } });
    expect(qmp.calls.at(-1)).toEqual({ command: "blockdev-del", args: { "node-name": "migr-vda-tgt" } });
  });

  it("rejects job ids that would make an invalid or too long node name", () => {
    expect(mirrorTargetNodeName("migr-vda")).toBe("migr-vda-tgt");
    expect(mirrorTargetNodeName("a".repeat(27))).toHaveLength(31);
    for (const bad of ["", "1abc", "a".repeat(28), "a b", "#block1"]) {
      expect(() => mirrorTargetNodeName(bad)).toThrow(/Invalid mirror job id/);
    }
  });
});

describe("waitMirrorReady", () => {
  it("resolves once the job is ready, reporting progress on the way", async () => {
    const states = ["running", "running", "ready"];
    let i = 0;
    const qmp = new ScriptedQmp().on("query-jobs", () => [job(states[Math.min(i++, states.length - 1)]!)]);
    const progress: Array<[number, number]> = [];
    await waitMirrorReady(qmp.client, "migr-vda", {
      timeoutMs: 5_000,
      pollMs: 1,
      onProgress: (o, l) => progress.push([o, l]),
    });
    expect(progress).toEqual([
      [100, 200],
      [100, 200],
      [100, 200],
    ]);
  });

  it("rejects with QEMU's error when the job fails before it is in sync", async () => {
    const qmp = new ScriptedQmp().on("query-jobs", () => [job("concluded", { error: "Input/output error" })]);
    const err = await rejection(waitMirrorReady(qmp.client, "migr-vda", { timeoutMs: 5_000, pollMs: 1 }));
    expect(err).toMatchObject({ code: "NOVA_QEMU_ERROR", details: { error: "Input/output error" } });
  });

  it("rejects when the job does not exist, and times out when it never gets ready", async () => {
    const none = new ScriptedQmp().on("query-jobs", () => []);
    expect(await rejection(waitMirrorReady(none.client, "migr-vda", { timeoutMs: 1_000 }))).toMatchObject({
      code: "NOVA_NOT_FOUND",
    });
    const slow = new ScriptedQmp().on("query-jobs", () => [job("running")]);
    expect(
      await rejection(waitMirrorReady(slow.client, "migr-vda", { timeoutMs: 20, pollMs: 5 })),
    ).toMatchObject({
      code: "NOVA_TIMEOUT",
    });
  });
});

describe("finishMirror", () => {
  it("completes a ready mirror without pivoting, then dismisses the job and removes the target node", async () => {
    const qmp = mirrorQmp({ status: "ready" });
    await finishMirror(qmp.client, "migr-vda");
    expect(
      qmp.calls.filter((c) => c.command !== "query-jobs" && c.command !== "query-named-block-nodes"),
    ).toEqual([
      { command: "query-status" },
      { command: "block-job-cancel", args: { device: "migr-vda", force: false } },
      { command: "job-dismiss", args: { id: "migr-vda" } },
      { command: "blockdev-del", args: { "node-name": "migr-vda-tgt" } },
    ]);
  });

  it("accepts a ready job that the vCPU stop put in standby", async () => {
    await finishMirror(mirrorQmp({ status: "standby" }).client, "migr-vda");
  });

  it("refuses while the source vCPUs run, since the copy would be stale at once", async () => {
    const qmp = mirrorQmp({ status: "ready", running: true });
    expect(await rejection(finishMirror(qmp.client, "migr-vda"))).toMatchObject({
      code: "NOVA_ILLEGAL_STATE",
    });
    expect(qmp.commands).not.toContain("block-job-cancel");
  });

  it("refuses a mirror that is not in sync yet", async () => {
    const qmp = mirrorQmp({ status: "running" });
    expect(await rejection(finishMirror(qmp.client, "migr-vda"))).toMatchObject({
      code: "NOVA_ILLEGAL_STATE",
      details: { jobStatus: "running" },
    });
    expect(qmp.commands).not.toContain("block-job-cancel");
  });

  it("fails when the final sync fails, so the switch-over does not go ahead", async () => {
    const qmp = mirrorQmp({ status: "ready", error: "Input/output error" });
    const err = await rejection(finishMirror(qmp.client, "migr-vda"));
    expect(err).toMatchObject({ code: "NOVA_QEMU_ERROR", details: { error: "Input/output error" } });
    expect((err as Error).message).toMatch(/final sync/);
  });

  it("fails for a job that already failed", async () => {
    const qmp = new ScriptedQmp().on("query-jobs", () => [
      job("concluded", { error: "No space left on device" }),
    ]);
    expect(await rejection(finishMirror(qmp.client, "migr-vda"))).toMatchObject({ code: "NOVA_QEMU_ERROR" });
  });
});

describe("cancelMirror", () => {
  it("force-cancels the job, dismisses it and removes the target node", async () => {
    const qmp = mirrorQmp({ status: "ready", error: "Operation canceled" });
    await cancelMirror(qmp.client, "migr-vda");
    expect(qmp.calls).toContainEqual({
      command: "block-job-cancel",
      args: { device: "migr-vda", force: true },
    });
    expect(qmp.calls).toContainEqual({ command: "job-dismiss", args: { id: "migr-vda" } });
    expect(qmp.calls.at(-1)).toEqual({ command: "blockdev-del", args: { "node-name": "migr-vda-tgt" } });
  });

  it("only dismisses and cleans up a job that already failed on its own", async () => {
    const qmp = mirrorQmp({ status: "concluded", error: "Input/output error" });
    await cancelMirror(qmp.client, "migr-vda");
    expect(qmp.commands).not.toContain("block-job-cancel");
    expect(qmp.commands).toContain("job-dismiss");
    expect(qmp.commands).toContain("blockdev-del");
  });

  it("does nothing when neither job nor target node exists", async () => {
    const qmp = new ScriptedQmp()
      .on("query-jobs", () => [])
      .on("query-named-block-nodes", () => [{ "node-name": "#block1" }]);
    await cancelMirror(qmp.client, "migr-vda");
    expect(qmp.commands).toEqual(["query-jobs", "query-named-block-nodes"]);
  });
});
