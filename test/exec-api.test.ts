// The execution system through the server's REST API, with the real server in this
// process on a real PostgreSQL server and on PGlite: self-approval refused with its code,
// approvals by a second token (created through /v1/tokens) or a token granted
// executions:approve-own, live progress and events on the SSE stream, pool health in
// /healthz and the execution metrics.
import { mkdtemp, rm } from "node:fs/promises";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildExecConfig } from "../src/exec/config.js";
import { waitFor } from "../src/lib/wait.js";
import { type ClusterFetch, clusterFetch } from "../src/security/tls-client.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";
import { ENGINES, type TestDatabase } from "./helpers/databases.js";

interface Exec {
  id: string;
  state: string;
  stateReason: string;
  actor: string;
  steps: { state: string; progressPct: number }[];
}
interface ApiError {
  error: { code: string; message: string; details: Record<string, unknown> };
}
interface SseEvent {
  id?: number;
  type: string;
  resourceId: string | null;
  data: Record<string, unknown>;
}

describe.each(ENGINES.map((e, i) => ({ ...e, port: 17990 + i })))(
  "executions over REST on $engine",
  ({ engine, create, port }) => {
    let tdb: TestDatabase;
    let dir: string;
    let server: RunningServer;
    let admin: string;
    const url = `https://127.0.0.1:${port}`;
    let fetch: ClusterFetch;

    const api = async <T>(method: string, route: string, token: string, body?: unknown) => {
      const res = await fetch(`${url}${route}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? null : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
    };
    const settled = (id: string, states: string[]) =>
      waitFor(
        async () => {
          const e = (await api<Exec>("GET", `/v1/executions/${id}`, admin)).body;
          return states.includes(e.state) ? e : undefined;
        },
        { timeoutMs: 15_000, what: `execution ${id} to be ${states.join("|")}` },
      );

    beforeAll(async () => {
      tdb = await create();
      dir = await mkdtemp("/tmp/nc-exec-api-");
      server = await startServer({
        dataDir: dir,
        port,
        ...(engine === "postgres" ? { databaseUrl: tdb.url! } : {}),
        execConfig: buildExecConfig({ flags: { workersMin: 2, workersMax: 3 } }),
        logger: pino({ level: "silent" }),
      });
      admin = server.created.admin!;
      fetch = clusterFetch({ caPem: server.caPem }, { role: "server" });
    });
    afterAll(async () => {
      await server?.close();
      await tdb?.drop();
      await rm(dir, { recursive: true, force: true });
    });

    it("refuses self-approval with NOVA_EXEC_SELF_APPROVAL; a second approver or an approve-own grant may approve", async () => {
      const plan = {
        name: "needs-eyes",
        sla: "fast",
        approval: "required",
        steps: [{ kind: "wait", seconds: 0 }],
      };
      const submitted = await api<Exec>("POST", "/v1/executions", admin, { plan });
      expect(submitted.status).toBe(202);
      expect(submitted.body.state).toBe("pending_approval");

      const self = await api<ApiError>("POST", `/v1/executions/${submitted.body.id}/approve`, admin, {});
      expect(self.status).toBe(403);
      expect(self.body.error.code).toBe("NOVA_EXEC_SELF_APPROVAL");
      expect(self.body.error.message).toMatch(
        /Ask another approver, or use a token granted executions:approve-own/,
      );
      expect((await api<Exec>("GET", `/v1/executions/${submitted.body.id}`, admin)).body.state).toBe(
        "pending_approval",
      );

      // A second person's token, made through the API: it approves.
      const second = await api<{ token: string; id: string; grants: string[] }>("POST", "/v1/tokens", admin, {
        name: "alice",
      });
      expect(second.status).toBe(201);
      expect(second.body.grants).toEqual([]);
      const approved = await api<Exec>(
        "POST",
        `/v1/executions/${submitted.body.id}/approve`,
        second.body.token,
        {
          reason: "checked",
        },
      );
      expect(approved.status).toBe(200);
      expect(approved.body.state).toBe("queued");
      expect((await settled(submitted.body.id, ["completed"])).state).toBe("completed");

      // A token granted executions:approve-own approves what it submitted itself.
      const own = await api<{ token: string }>("POST", "/v1/tokens", admin, {
        name: "solo-operator",
        grants: ["executions:approve-own"],
      });
      const mine = await api<Exec>("POST", "/v1/executions", own.body.token, {
        plan: { ...plan, name: "mine" },
      });
      expect(mine.body.actor).toBe("admin:solo-operator");
      const ownApproval = await api<Exec>(
        "POST",
        `/v1/executions/${mine.body.id}/approve`,
        own.body.token,
        {},
      );
      expect(ownApproval.status).toBe(200);
      expect((await settled(mine.body.id, ["completed"])).state).toBe("completed");

      // Only grantable permissions can be granted; secrets never come back in a listing.
      const bad = await api<ApiError>("POST", "/v1/tokens", admin, { name: "x", grants: ["vms:write"] });
      expect(bad.status).toBe(400);
      const list = await api<{ tokens: Record<string, unknown>[] }>("GET", "/v1/tokens", admin);
      expect(list.body.tokens.map((t) => t.name)).toEqual(["initial admin", "alice", "solo-operator"]);
      expect(JSON.stringify(list.body)).not.toContain(second.body.token);
    });

    it("revokes tokens, but never the last admin token", async () => {
      const tokens = (await api<{ tokens: { id: string; name: string }[] }>("GET", "/v1/tokens", admin)).body
        .tokens;
      for (const name of ["alice", "solo-operator"]) {
        const t = tokens.find((x) => x.name === name)!;
        expect((await api("DELETE", `/v1/tokens/${t.id}`, admin)).status).toBe(204);
      }
      const initial = tokens.find((x) => x.name === "initial admin")!;
      const last = await api<ApiError>("DELETE", `/v1/tokens/${initial.id}`, admin);
      expect(last.status).toBe(409);
      expect(last.body.error.code).toBe("NOVA_ILLEGAL_STATE");
      expect(last.body.error.message).toMatch(/last admin token/);
      expect((await api("GET", "/v1/executions", admin)).status).toBe(200);
    });

    it("streams an execution's events, live progress and log lines on /v1/events", async () => {
      const controller = new AbortController();
      const res = await fetch(`${url}/v1/events`, {
        headers: { authorization: `Bearer ${admin}` },
        signal: controller.signal,
      });
      expect(res.headers.get("content-type")).toContain("text/event-stream");
      const events: SseEvent[] = [];
      const reading = (async () => {
        const decoder = new TextDecoder();
        let buffer = "";
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(chunk, { stream: true });
          const blocks = buffer.split("\n\n");
          buffer = blocks.pop() ?? "";
          for (const b of blocks) {
            const data = b.split("\n").find((l) => l.startsWith("data: "));
            if (data) events.push(JSON.parse(data.slice(6)) as SseEvent);
          }
        }
      })().catch(() => {});
      try {
        const sub = await api<Exec>("POST", "/v1/executions", admin, {
          plan: { name: "watched", sla: "fast", steps: [{ kind: "wait", seconds: 2.5 }] },
        });
        const id = sub.body.id;
        const mine = () => events.filter((e) => e.resourceId === id);
        // Progress arrives while the step runs, not only at the end.
        const progress = await waitFor(
          () => mine().find((e) => e.type === "execution.progress" && Number(e.data.percent) > 0),
          { timeoutMs: 10_000, what: "a live progress event" },
        );
        expect(progress.id).toBe(0); // live only: sent without a resume id, never replayed
        expect(mine().some((e) => e.type === "execution.state" && e.data.to === "completed")).toBe(false);
        await waitFor(() => mine().some((e) => e.type === "execution.state" && e.data.to === "completed"), {
          timeoutMs: 15_000,
          what: "the completed event",
        });
        const durable = mine().filter((e) => Number(e.id) > 0);
        expect(durable.map((e) => `${e.type}:${e.data.to ?? e.data.state ?? ""}`)).toEqual([
          "execution.created:queued",
          "execution.state:running",
          "execution.step:running",
          "execution.step:completed",
          "execution.state:completed",
        ]);
        const logs = mine()
          .filter((e) => e.type === "execution.log")
          .map((e) => String(e.data.message));
        expect(logs.some((m) => /step 1\/1 .* completed/.test(m))).toBe(true);
      } finally {
        controller.abort();
        await reading;
      }
    });

    it("answers when the execution ends in immediate mode, and dedupes by Idempotency-Key", async () => {
      const plan = { name: "now", sla: "fast", mode: "immediate", steps: [{ kind: "wait", seconds: 0.3 }] };
      const res = await fetch(`${url}/v1/executions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${admin}`,
          "content-type": "application/json",
          "idempotency-key": "k-now",
        },
        body: JSON.stringify({ plan }),
      });
      expect(res.status).toBe(200);
      const done = (await res.json()) as Exec;
      expect(done.state).toBe("completed");
      expect(done.steps[0]!.state).toBe("completed");
      // The same key again, even with another plan: the first execution, nothing new runs.
      const again = await fetch(`${url}/v1/executions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${admin}`,
          "content-type": "application/json",
          "idempotency-key": "k-now",
        },
        body: JSON.stringify({ plan: { ...plan, name: "other" } }),
      });
      expect(again.status).toBe(200);
      expect(await again.json()).toMatchObject({ id: done.id, duplicate: true });
    });

    it("reports the worker pool in /healthz and the execution metrics on /metrics", async () => {
      const health = (await (await fetch(`${url}/healthz`)).json()) as {
        status: string;
        executionWorkers: Record<string, unknown>;
      };
      expect(health.status).toBe("ok");
      expect(health.executionWorkers).toMatchObject({
        status: "ok",
        minWorkers: 2,
        maxWorkers: 3,
        busy: 0,
        // PGlite has no LISTEN connection to lose (one process owns the database).
        listening: true,
      });
      expect(Number(health.executionWorkers.size)).toBeGreaterThanOrEqual(2);
      const metrics = await (
        await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })
      ).text();
      expect(metrics).toMatch(/^novacron_executions\{state="completed"\} [1-9]/m);
      expect(metrics).toMatch(/^novacron_exec_dlq_size 0$/m);
      expect(metrics).toMatch(
        /^novacron_exec_step_run_seconds_count\{kind="wait",outcome="completed"\} [1-9]/m,
      );
      expect(metrics).toMatch(/^novacron_exec_claim_latency_seconds_count\{queue="execution"\} [1-9]/m);
      expect(metrics).toMatch(
        /^novacron_exec_job_run_seconds_count\{queue="execution",outcome="completed"\} [1-9]/m,
      );
      expect(metrics).toContain("# TYPE novacron_exec_queue_depth gauge");
      for (const name of [
        "novacron_exec_retries_total",
        "novacron_exec_dead_letters_total",
        "novacron_exec_lease_expiries_total",
      ])
        expect(metrics).toContain(`# TYPE ${name} counter`);
    });
  },
);
