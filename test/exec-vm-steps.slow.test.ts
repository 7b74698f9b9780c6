// The execution system's VM and host-command steps end to end: a real server, two real
// agents and a real QEMU (TCG) guest. A plan submitted through the CLI stops, starts and
// restarts the VM, checks its console, runs an allowlisted command on its host and
// live-migrates it; the VM really goes through those states (QEMU processes, guest
// console, events). Commands outside the agent's allowlist fail with their stable code.
import { spawn } from "node:child_process";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { guestImageManifest, qemuPidsUnder, ROOT, TestCluster } from "./helpers/cluster.js";
import { fetchEvents } from "./helpers/events.js";

// This suite's ports (the execution suites own 17950-17999).
const SERVER_PORT = 17980;
const AGENT_PORTS: Record<string, number> = { x1: 17981, x2: 17982 };
// --no-dwcp: QEMU's own migration transport; DWCP migrations have their own suites.
const AGENT_FLAGS = ["--memory", "1024", "--stop-grace", "20", "--no-dwcp"];

interface Step {
  index: number;
  kind: string;
  state: string;
  attempts: number;
  message: string;
  result: Record<string, unknown>;
  error: { code?: string; message?: string; details?: Record<string, unknown> } | null;
}
interface Exec {
  id: string;
  state: string;
  stateReason: string;
  assets: string[];
  steps: Step[];
}
interface VmBody {
  id: string;
  name: string;
  state: string;
  host: string;
}

const SETTLED = ["completed", "failed", "partial", "cancelled", "timed_out", "rejected"];

describe("VM and host-command steps on a real cluster", { timeout: 180_000 }, () => {
  let c: TestCluster;

  beforeAll(async () => {
    // A TCG guest: the same everywhere (nested KVM may pass the agent's probe and still
    // hang a real guest kernel).
    process.env.NOVACRON_ACCEL = "tcg";
    const manifest = await guestImageManifest();
    c = await TestCluster.create(SERVER_PORT);
    // Each agent's operator allows two commands: a greeting that takes a checked argument,
    // and one that always fails.
    for (const name of Object.keys(AGENT_PORTS)) {
      await mkdir(c.agentDir(name), { recursive: true });
      await writeFile(
        path.join(c.agentDir(name), "host-commands.json"),
        JSON.stringify({
          commands: {
            greet: {
              argv: ["/bin/echo", `hello from ${name}:`],
              argPattern: "^[a-z0-9-]+$",
              timeoutSeconds: 10,
            },
            fail: { argv: ["/bin/false"] },
            nap: { argv: ["/bin/sleep"], argPattern: "^[0-9.]+$" },
          },
        }),
      );
    }
    // Execution settings from a file, the pool's size from flags that override it.
    const execConfig = path.join(c.dir, "exec.json");
    await writeFile(
      execConfig,
      JSON.stringify({ pool: { minWorkers: 1, maxWorkers: 8 }, sla: { fast: { cancelGraceMs: 2000 } } }),
    );
    await c.startServer([
      "--heartbeat-timeout",
      "6",
      "--exec-config",
      execConfig,
      "--exec-workers-min",
      "2",
      "--exec-workers-max",
      "3",
    ]);
    for (const [name, port] of Object.entries(AGENT_PORTS)) await c.startAgent(name, port, AGENT_FLAGS);
    const imported = await c.cli(["image", "import", "guest", "--manifest", manifest]);
    expect(imported.code, imported.stderr).toBe(0);
    const created = await c.api<VmBody>("POST", "/v1/vms", { name: "ev1", image: "guest", memoryMiB: 256 });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await c.waitVmState("ev1", "running");
    await c.waitConsole("ev1", /NC-HEARTBEAT seq=2 /);
  }, 180_000);

  afterAll(async () => {
    await c?.destroy();
  });

  const vm = async () => (await c.vm("ev1")) as unknown as VmBody;
  const qemuPids = async (v: VmBody) => qemuPidsUnder(`${c.agentDir(v.host)}/vms/${v.id}`);
  const getExec = async (id: string) => (await c.api<Exec>("GET", `/v1/executions/${id}`)).body;
  const settled = (id: string, timeoutMs = 60_000) =>
    waitFor(
      async () => {
        const e = await getExec(id);
        return SETTLED.includes(e.state) ? e : undefined;
      },
      { timeoutMs, intervalMs: 250, what: `execution ${id} to end` },
    );

  it("sizes the worker pool from the server's flags over its config file, and refuses a bad mix naming the flag", async () => {
    const health = (await (await c.fetch("/healthz")).json()) as {
      executionWorkers: { status: string; minWorkers: number; maxWorkers: number };
    };
    expect(health.executionWorkers).toMatchObject({ status: "ok", minWorkers: 2, maxWorkers: 3 });
    const bad = await c.cli(
      [
        "server",
        "--data-dir",
        path.join(c.dir, "bad-server"),
        "--listen",
        "127.0.0.1:17989",
        "--exec-workers-min",
        "5",
        "--exec-workers-max",
        "2",
      ],
      60_000,
    );
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain(
      "minWorkers 5 (from --exec-workers-min) is larger than maxWorkers 2 (from --exec-workers-max)",
    );
    const typo = await c.cli(
      [
        "server",
        "--data-dir",
        path.join(c.dir, "bad-server"),
        "--listen",
        "127.0.0.1:17989",
        "--exec-workers-max",
        "lots",
      ],
      60_000,
    );
    expect(typo.code).not.toBe(0);
    expect(typo.stderr).toContain('--exec-workers-max must be a whole number >= 1, got "lots"');
  });

  it("stops, starts, checks, restarts, runs a host command on and migrates a VM; the VM really does it", async () => {
    const before = await vm();
    const source = before.host;
    const target = source === "x1" ? "x2" : "x1";
    const [pidBefore] = await qemuPids(before);
    expect(pidBefore).toBeDefined();
    const eventsFrom = await latestEventId(c);

    const planFile = path.join(c.dir, "vm-plan.yaml");
    await writeFile(
      planFile,
      [
        "name: vm-steps",
        "sla: medium",
        "steps:",
        "  - kind: vm.stop",
        "    vm: ev1",
        "  - kind: vm.start",
        "    vm: ev1",
        // The serial log spans boots: only a line of the new boot may satisfy this.
        "  - kind: vm.console-check",
        "    vm: ev1",
        "    pattern: ^NC-READY",
        "    since: step",
        "    timeoutSeconds: 60",
        "  - kind: vm.restart",
        "    vm: ev1",
        "  - kind: host.command",
        `    host: ${source}`,
        "    command: greet",
        "    args: [from-the-plan]",
        "  - kind: vm.migrate",
        "    vm: ev1",
        `    targetHost: ${target}`,
        // Alive on the target: a heartbeat printed there after the migration.
        "  - kind: vm.console-check",
        "    vm: ev1",
        '    pattern: "^NC-HEARTBEAT seq=[0-9]+ "',
        "    since: step",
        "    timeoutSeconds: 30",
        "",
      ].join("\n"),
    );

    // Submit in the background and follow the log live with the CLI, as an operator would.
    const submitted = await c.cli(["exec", "submit", planFile, "--json"]);
    expect(submitted.code, submitted.stderr).toBe(0);
    const id = (JSON.parse(submitted.stdout) as Exec).id;
    const follow = followCli(c, ["exec", "logs", id, "--follow"]);
    // A line about the first step arrives while the execution still runs: the log is live.
    await waitFor(() => follow.lines.some((l) => /step 1\/7 .* started/.test(l)), {
      timeoutMs: 30_000,
      what: "the followed log to show step 1 starting",
    });
    expect((await getExec(id)).state).toBe("running");

    const done = await settled(id, 150_000);
    expect(done.state, `${done.stateReason}\n${JSON.stringify(done.steps, null, 1)}`).toBe("completed");
    expect(done.steps.map((s) => s.state)).toEqual(Array(7).fill("completed"));
    expect(done.steps.map((s) => s.attempts)).toEqual(Array(7).fill(1));
    // Every asset the plan acts on is one of its mutexes.
    expect(done.assets).toEqual(expect.arrayContaining([`vm:${before.id}`, expect.stringMatching(/^host:/)]));
    expect(await follow.exit).toBe(0);
    expect(follow.lines.join("\n")).toMatch(/completed: all 7 steps done/);

    // Step results say what happened.
    expect(done.steps[2]!.result).toMatchObject({ matched: { ev1: expect.stringMatching(/^NC-READY/) } });
    expect(done.steps[6]!.result).toMatchObject({ matched: { ev1: expect.stringMatching(/^NC-HEARTBEAT/) } });
    expect(done.steps[4]!.result).toMatchObject({ host: source, exitCode: 0 });
    const migrated = done.steps[5]!.result as { migrations: { vm: string; to: string }[] };
    expect(migrated.migrations).toEqual([expect.objectContaining({ vm: "ev1", to: target })]);
    const logs = await c.api<{ lines: { message: string }[] }>("GET", `/v1/executions/${id}/logs`);
    expect(logs.body.lines.map((l) => l.message)).toContain(
      `[${source} stdout] hello from ${source}: from-the-plan`,
    );

    // The VM really went through it: a graceful shutdown, new QEMU processes, the other host.
    const after = await vm();
    expect(after.state).toBe("running");
    expect(after.host).toBe(target);
    expect(await qemuPidsUnder(`${c.agentDir(source)}/vms/${before.id}`)).toEqual([]);
    const [pidAfter] = await qemuPids(after);
    expect(pidAfter).toBeDefined();
    expect(pidAfter).not.toBe(pidBefore);
    const events = await fetchEvents(c, eventsFrom);
    const vmStates = events
      .filter((e) => e.type === "vm.state" && e.data.name === "ev1")
      .map((e) => String(e.data.to));
    // stop, start, restart (a full stop then start), then the migration's hand-over.
    expect(vmStates.slice(0, 8)).toEqual([
      "stopping",
      "stopped",
      "starting",
      "running",
      "stopping",
      "stopped",
      "starting",
      "running",
    ]);
    expect(vmStates).toContain("migrating");
    // The execution's own durable events: created, then each step's states, then completed.
    const execEvents = events.filter((e) => e.resourceId === id);
    expect(execEvents[0]?.type).toBe("execution.created");
    expect(
      execEvents.filter((e) => e.type === "execution.step" && e.data.state === "completed"),
    ).toHaveLength(7);
    expect(execEvents.at(-1)).toMatchObject({ type: "execution.state", data: { to: "completed" } });
  });

  it("treats a VM whose QEMU died as already stopped, and starts it again", async () => {
    const dead = await vm();
    const [pid] = await qemuPids(dead);
    process.kill(pid!, "SIGKILL");
    await c.waitVmState("ev1", "failed", 30_000);
    const res = await c.api<Exec>("POST", "/v1/executions", {
      plan: {
        name: "recover",
        sla: "fast",
        steps: [
          { kind: "vm.stop", vm: "ev1" },
          { kind: "vm.start", vm: "ev1" },
          { kind: "vm.console-check", vm: "ev1", pattern: "^NC-READY", since: "step", timeoutSeconds: 60 },
        ],
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const done = await settled(res.body.id);
    expect(done.state, done.stateReason).toBe("completed");
    expect(done.steps.map((s) => s.state)).toEqual(["completed", "completed", "completed"]);
    const after = await vm();
    expect(after.state).toBe("running");
    const [pidAfter] = await qemuPids(after);
    expect(pidAfter).toBeDefined();
    expect(pidAfter).not.toBe(pid);
  });

  it("cancels a running host command: the agent kills the process and the execution records where it stopped", async () => {
    const host = (await vm()).host;
    const res = await c.api<Exec>("POST", "/v1/executions", {
      plan: {
        name: "nap",
        sla: "fast",
        steps: [{ kind: "host.command", host, command: "nap", args: ["47.25"] }],
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const napping = () => processesWithArgs(["/bin/sleep", "47.25"]);
    await waitFor(async () => (await napping()).length === 1, {
      timeoutMs: 20_000,
      what: "the command to run",
    });
    const cancelled = await c.cli(["exec", "cancel", res.body.id]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    const done = await settled(res.body.id, 20_000);
    expect(done.state).toBe("cancelled");
    expect(done.stateReason).toMatch(/cancelled at step 1\/1/);
    expect(done.steps[0]!.state).toBe("cancelled");
    await waitFor(async () => (await napping()).length === 0, {
      timeoutMs: 10_000,
      what: "the command to be killed",
    });
  });

  it("refuses a command outside the agent's allowlist, and arguments its pattern refuses, with NOVA_COMMAND_NOT_ALLOWED", async () => {
    const host = (await vm()).host;
    const run = async (command: string, args: string[]) => {
      const res = await c.api<Exec>("POST", "/v1/executions", {
        plan: { name: `cmd-${command}`, sla: "fast", steps: [{ kind: "host.command", host, command, args }] },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return settled(res.body.id);
    };
    const refused = await run("rm-everything", []);
    expect(refused.state).toBe("failed");
    expect(refused.steps[0]).toMatchObject({ state: "failed", attempts: 1 });
    expect(refused.steps[0]!.error).toMatchObject({
      code: "NOVA_COMMAND_NOT_ALLOWED",
      details: { command: "rm-everything", host },
    });
    // Not retryable: straight to the dead-letter queue after one attempt.
    const dlq = await c.api<{ entries: { executionId: string; attempts: number }[] }>("GET", "/v1/dlq");
    expect(dlq.body.entries.find((d) => d.executionId === refused.id)).toMatchObject({ attempts: 1 });

    const badArg = await run("greet", ["$(reboot)"]);
    expect(badArg.state).toBe("failed");
    expect(badArg.steps[0]!.error).toMatchObject({ code: "NOVA_COMMAND_NOT_ALLOWED" });
    expect(badArg.steps[0]!.error?.message).toMatch(/does not match its argPattern/);

    const nonZero = await run("fail", []);
    expect(nonZero.state).toBe("failed");
    expect(nonZero.steps[0]!.error).toMatchObject({
      code: "NOVA_EXEC_STEP_FAILED",
      details: { host, exitCode: 1 },
    });
  });

  it("drives executions from the CLI: approval by a second token, show, list, reject, retry and the DLQ", async () => {
    const host = (await vm()).host;
    const writePlan = async (name: string, plan: object) => {
      const file = path.join(c.dir, `${name}.json`);
      await writeFile(file, JSON.stringify(plan));
      return file;
    };
    // Waits for approval: --wait returns then, successfully.
    const gated = await writePlan("gated", {
      name: "gated",
      sla: "fast",
      approval: "required",
      steps: [{ kind: "host.command", host, command: "greet", args: ["approved"] }],
    });
    const sub = await c.cli(["exec", "submit", gated, "--wait", "--json"]);
    expect(sub.code, sub.stderr).toBe(0);
    const id = (JSON.parse(sub.stdout) as Exec).id;
    expect((JSON.parse(sub.stdout) as Exec).state).toBe("pending_approval");

    const self = await c.cli(["exec", "approve", id]);
    expect(self.code).toBe(1);
    expect(self.stderr).toContain("NOVA_EXEC_SELF_APPROVAL");
    const created = await c.cli(["token", "create", "second-approver"]);
    expect(created.code, created.stderr).toBe(0);
    const approver = created.stdout.trim();
    expect(approver).toMatch(/^nva_/);
    const approved = await c.cli(["exec", "approve", id, "--token", approver, "--reason", "looked at it"]);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toMatch(/: (queued|running|completed)/);
    const follow = await c.cli(["exec", "logs", id, "--follow"]);
    expect(follow.code).toBe(0);
    expect(follow.stdout).toContain(`[${host} stdout] hello from ${host}: approved`);
    const shown = JSON.parse((await c.cli(["exec", "show", id, "--json"])).stdout) as Exec;
    expect(shown.state).toBe("completed");
    const listed = JSON.parse(
      (await c.cli(["exec", "list", "--state", "completed", "--json"])).stdout,
    ) as Exec[];
    expect(listed.map((e) => e.id)).toContain(id);

    const toReject = JSON.parse(
      (await c.cli(["exec", "submit", gated, "--idempotency-key", "rej", "--json"])).stdout,
    ) as Exec;
    const rejected = await c.cli(["exec", "reject", toReject.id, "--reason", "not today"]);
    expect(rejected.code, rejected.stderr).toBe(0);
    expect(rejected.stdout).toContain("rejected");

    // A failing plan: --wait exits 1 with the reason; retry and DLQ requeue run it again.
    const failing = await writePlan("failing", {
      name: "failing",
      sla: "fast",
      steps: [{ kind: "host.command", host, command: "fail" }],
    });
    const failed = await c.cli(["exec", "submit", failing, "--wait"]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/ended failed: step 1 failed: Command fail on .* exited with 1/);
    const failedId = (
      JSON.parse((await c.cli(["exec", "list", "--state", "failed", "--json"])).stdout) as (Exec & {
        name: string;
      })[]
    ).find((e) => e.name === "failing")!.id;
    const retried = await c.cli(["exec", "retry", failedId]);
    expect(retried.code, retried.stderr).toBe(0);
    const afterRetry = await settled(failedId);
    expect(afterRetry.state).toBe("failed");
    expect(afterRetry.steps[0]!.attempts).toBe(2);
    const dlq = JSON.parse((await c.cli(["dlq", "list", "--json"])).stdout) as {
      jobId: number;
      executionId: string;
    }[];
    const entry = dlq.find((d) => d.executionId === failedId)!;
    expect(entry).toBeDefined();
    const requeued = await c.cli(["dlq", "requeue", String(entry.jobId)]);
    expect(requeued.code, requeued.stderr).toBe(0);
    expect(requeued.stdout).toContain(`Requeued job ${entry.jobId} (execution ${failedId})`);
    await waitFor(async () => (await getExec(failedId)).steps[0]!.attempts === 3, {
      timeoutMs: 20_000,
      what: "the requeued execution to run again",
    });
    expect((await settled(failedId)).state).toBe("failed");
  });
});

/** PIDs of processes whose command line is exactly `argv`. */
async function processesWithArgs(argv: string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline === `${argv.join("\0")}\0`) pids.push(Number(entry));
  }
  return pids;
}

/** Runs the CLI as a child process and collects its stdout lines as they arrive. */
function followCli(c: TestCluster, args: string[]): { lines: string[]; exit: Promise<number | null> } {
  const proc = spawn(process.execPath, [path.join(ROOT, "bin", "novacron.js"), ...args], {
    cwd: ROOT,
    env: {
      ...process.env,
      NOVACRON_SERVER: c.serverUrl,
      NOVACRON_TOKEN: c.adminToken,
      NOVACRON_CA_FILE: c.caFile,
      NOVACRON_CONFIG: path.join(c.dir, "cli.json"),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let partial = "";
  proc.stdout.on("data", (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split("\n");
    partial = parts.pop() ?? "";
    lines.push(...parts);
  });
  const exit = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  return { lines, exit };
}

async function latestEventId(c: TestCluster): Promise<number> {
  const events = await fetchEvents(c, 0);
  return Math.max(0, ...events.map((e) => e.id ?? 0));
}
