// Tracing end to end (docs/tracing.md): a server and two agents as real processes and the
// CLI, all exporting over OTLP/HTTP to an in-process collector. One live migration over
// DWCP, asked for by `novacron vm migrate`, and one execution, submitted by `novacron exec
// submit`, are each one trace: the CLI's command is its root, the server's request, run
// and steps, both agents' requests and the DWCP sessions hang under it, every span's
// parent is in the trace, and the run's span covers the migration from start to end. The
// server's log lines written inside the trace carry its id.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { guestImageManifest, TestCluster } from "./helpers/cluster.js";
import { type CollectedSpan, OtlpCollector } from "./helpers/otlp-collector.js";

// This suite's ports.
const COLLECTOR_PORT = 18550;
const SERVER_PORT = 18551;
const AGENT_PORTS = { t1: 18552, t2: 18553 } as const;
const AGENT_FLAGS = ["--memory", "1024", "--stop-grace", "20"];

interface MigrationBody {
  id: string;
  state: string;
  sourceHost: string;
  targetHost: string;
  transport: string;
  startedAt: string | null;
  finishedAt: string | null;
  traceId?: string;
}

describe("one trace per migration and per execution, across CLI, server, agents and DWCP", {
  timeout: 300_000,
}, () => {
  let c: TestCluster;
  let collector: OtlpCollector;
  let otlpEnv: Record<string, string>;

  beforeAll(async () => {
    process.env.NOVACRON_ACCEL = "tcg";
    collector = await OtlpCollector.start(COLLECTOR_PORT);
    otlpEnv = { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, NOVACRON_LOG_LEVEL: "info" };
    const manifest = await guestImageManifest();
    c = await TestCluster.create(SERVER_PORT);
    for (const name of Object.keys(AGENT_PORTS)) {
      await mkdir(c.agentDir(name), { recursive: true });
      await writeFile(
        path.join(c.agentDir(name), "host-commands.json"),
        JSON.stringify({ commands: { greet: { argv: ["/bin/echo", `hello from ${name}`] } } }),
      );
    }
    const server = await c.startServer([], { env: otlpEnv });
    expect(server.output.join("\n")).toContain(`Tracing: spans exported over OTLP/HTTP to ${collector.url}`);
    for (const [name, port] of Object.entries(AGENT_PORTS))
      await c.startAgent(name, port, AGENT_FLAGS, { env: otlpEnv });
    const imported = await c.cli(["image", "import", "guest", "--manifest", manifest]);
    expect(imported.code, imported.stderr).toBe(0);
    const created = await c.api("POST", "/v1/vms", { name: "tr1", image: "guest", memoryMiB: 256 });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await c.waitVmState("tr1", "running");
  }, 240_000);

  afterAll(async () => {
    await c?.destroy();
    await collector?.close();
  });

  /** Runs the CLI with OTLP export on, as an operator who set OTEL_EXPORTER_OTLP_ENDPOINT would. */
  async function tracedCli(args: string[]) {
    const saved = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = collector.url;
    try {
      return await c.cli(args);
    } finally {
      if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
      else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = saved;
    }
  }

  /**
   * The trace once a span named each of `names` (and, with `instance`, one of that agent)
   * arrived: each process exports in batches, each within a second or so.
   */
  function spansOnce(traceId: string, names: string[], instances: string[] = []): Promise<CollectedSpan[]> {
    return waitFor(
      () => {
        const spans = collector.trace(traceId);
        const all =
          names.every((n) => spans.some((s) => s.name === n)) &&
          instances.every((i) => spans.some((s) => s.service === "novacron-agent" && s.instance === i));
        return all ? spans : undefined;
      },
      { timeoutMs: 30_000, what: `spans ${[...names, ...instances].join(", ")} of trace ${traceId}` },
    );
  }

  /** Every span but the root has its parent in the trace, and there is one root. */
  function expectConnected(spans: CollectedSpan[]): CollectedSpan {
    const ids = new Set(spans.map((s) => s.spanId));
    const roots = spans.filter((s) => !s.parentSpanId);
    expect(roots.map((r) => `${r.service}: ${r.name}`)).toHaveLength(1);
    const orphans = spans.filter((s) => s.parentSpanId && !ids.has(s.parentSpanId));
    expect(orphans.map((s) => `${s.service}: ${s.name}`)).toEqual([]);
    return roots[0]!;
  }

  it("a live migration over DWCP is one trace from the CLI's command to both agents' DWCP sessions", async () => {
    const before = (await c.vm("tr1")) as { host: string };
    const to = before.host === "t1" ? "t2" : "t1";
    const res = await tracedCli(["vm", "migrate", "tr1", "--to", to, "--transport", "dwcp", "--follow"]);
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    const { body: list } = await c.api<{ migrations: MigrationBody[] }>("GET", "/v1/vms/tr1/migrations");
    const m = list.migrations[0]!;
    expect(m.state).toBe("completed");
    expect(m.transport).toBe("dwcp");
    expect(m.traceId, "the migration names its trace").toMatch(/^[0-9a-f]{32}$/);

    const spans = await spansOnce(
      m.traceId!,
      ["novacron vm migrate", "migration", "dwcp session (source)", "dwcp session (destination)"],
      [before.host, to],
    );
    const root = expectConnected(spans);
    expect(root).toMatchObject({ service: "novacron-cli", name: "novacron vm migrate" });
    // Each process took part: the server, and both agents by their host names.
    const by = (service: string, instance?: string) =>
      spans.filter((s) => s.service === service && (instance === undefined || s.instance === instance));
    expect(by("novacron-server").map((s) => s.name)).toEqual(
      expect.arrayContaining(["POST /v1/vms/:id/migrations", "migration", "migration prepare-target"]),
    );
    expect(by("novacron-agent", before.host).length).toBeGreaterThan(0);
    expect(by("novacron-agent", to).length).toBeGreaterThan(0);
    const source = spans.find((s) => s.name === "dwcp session (source)")!;
    const dest = spans.find((s) => s.name === "dwcp session (destination)")!;
    expect(source.instance).toBe(before.host);
    expect(dest.instance).toBe(to);
    // The session carried the guest's memory: its span says how much crossed.
    expect(source.attributes["novacron.dwcp.memory.logical_bytes"]).toBeGreaterThan(64 * 1024 * 1024);
    expect(source.attributes["novacron.migration.id"]).toBe(m.id);
    // The run's span covers the whole migration as the server recorded it.
    const run = spans.find((s) => s.name === "migration")!;
    expect(run.attributes).toMatchObject({
      "novacron.migration.id": m.id,
      "novacron.migration.state": "completed",
    });
    expect(run.startMs).toBeLessThanOrEqual(Date.parse(m.startedAt!));
    expect(run.endMs).toBeGreaterThanOrEqual(Date.parse(m.finishedAt!));
    // Progress polls stay out of the trace: no agent status GET is in it.
    expect(spans.filter((s) => s.name.startsWith("agent GET"))).toHaveLength(0);
    // The server's log lines written inside the trace carry its id.
    const logged = c.daemonLog("server").filter((l) => l.includes(`"trace_id":"${m.traceId}"`));
    expect(logged.length, "server log lines with the migration's trace id").toBeGreaterThan(0);
  });

  it("an execution is one trace from `exec submit` to the agent that ran its step", async () => {
    const vm = (await c.vm("tr1")) as { host: string };
    const plan = path.join(c.dir, "traced-plan.yaml");
    await writeFile(
      plan,
      [
        "name: traced",
        "sla: fast",
        "steps:",
        "  - kind: host.command",
        `    host: ${vm.host}`,
        "    command: greet",
        "",
      ].join("\n"),
    );
    const res = await tracedCli(["exec", "submit", plan, "--wait", "--json"]);
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    const e = JSON.parse(res.stdout) as { id: string; state: string; traceId?: string };
    expect(e.state).toBe("completed");
    expect(e.traceId).toMatch(/^[0-9a-f]{32}$/);
    const spans = await spansOnce(
      e.traceId!,
      ["novacron exec submit", "execution", "step host.command"],
      [vm.host],
    );
    const root = expectConnected(spans);
    expect(root).toMatchObject({ service: "novacron-cli", name: "novacron exec submit" });
    const step = spans.find((s) => s.name === "step host.command")!;
    const agentSpans = spans.filter((s) => s.service === "novacron-agent" && s.instance === vm.host);
    expect(agentSpans.length, "the agent's side of the step").toBeGreaterThan(0);
    // The agent's request hangs under the step (through the server's client span).
    const parents = new Map(spans.map((s) => [s.spanId, s]));
    const ancestors = (s: CollectedSpan): string[] => {
      const out: string[] = [];
      for (
        let p = s.parentSpanId && parents.get(s.parentSpanId);
        p;
        p = p.parentSpanId && parents.get(p.parentSpanId)
      )
        out.push(p.spanId);
      return out;
    };
    expect(agentSpans.some((s) => ancestors(s).includes(step.spanId))).toBe(true);
  });

  it("without OTLP configured the CLI exports nothing and still works", async () => {
    const before = collector.spans.length;
    const res = await c.cli(["vm", "list", "--json"]);
    expect(res.code, res.stderr).toBe(0);
    // The server traces the request itself (it is configured), under a root of its own.
    const listed = await waitFor(
      () => collector.spans.slice(before).find((s) => s.name === "GET /v1/vms") ?? undefined,
      { timeoutMs: 30_000, what: "the server's span of GET /v1/vms" },
    );
    expect(listed.parentSpanId).toBeUndefined();
    expect(collector.spans.slice(before).filter((s) => s.service === "novacron-cli")).toEqual([]);
  });
});
