// Executions end to end inside one process, on a real PostgreSQL server and on PGlite:
// the runner, the service and the worker pool against a real HTTP server, with secrets,
// masking, idempotency, mutexes, approvals, cancel, timeouts, retries, the DLQ, the
// execution-time RBAC check, and resumption after a worker loses its lease.

import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Plan } from "../src/api/types/executions.js";
import { AgentConnector } from "../src/cluster/agent-client.js";
import { assetHolder } from "../src/cluster/store/exec-locks.js";
import { getExecution, listLogs } from "../src/cluster/store/executions.js";
import { listDeadJobs } from "../src/cluster/store/executions-queue.js";
import { Store } from "../src/cluster/store/store.js";
import { createToken } from "../src/cluster/store/tokens.js";
import { VmService } from "../src/cluster/vm-service.js";
import { resolveExecConfig } from "../src/exec/config.js";
import { WakeChannel } from "../src/exec/notify.js";
import { WorkerPool } from "../src/exec/pool.js";
import { EXECUTION_QUEUE, ExecutionRunner } from "../src/exec/runner.js";
import { putSecret, SecretKey, secretRef } from "../src/exec/secrets.js";
import { ExecutionService } from "../src/exec/service.js";
import { waitFor } from "../src/lib/wait.js";
import type { Principal } from "../src/policy/permissions.js";
import { ENGINES, type TestDatabase } from "./helpers/databases.js";

const SECRET = "s3cr3t-Token-9f8e7d";

/** A small automation service: records calls, answers per path. */
class Automation {
  server!: Server;
  url = "";
  calls: { path: string; headers: IncomingMessage["headers"]; body: string }[] = [];
  concurrent = new Map<string, number>();
  maxConcurrent = new Map<string, number>();
  status = new Map<string, number[]>();
  holds = new Map<string, (() => void)[]>();

  async start(port: number): Promise<void> {
    this.server = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        const path = (req.url ?? "/").split("?")[0]!;
        this.calls.push({ path, headers: req.headers, body });
        const now = (this.concurrent.get(path) ?? 0) + 1;
        this.concurrent.set(path, now);
        this.maxConcurrent.set(path, Math.max(now, this.maxConcurrent.get(path) ?? 0));
        const queued = this.status.get(path);
        const status = queued && queued.length > 0 ? queued.shift()! : 200;
        const delay = path.startsWith("/slow") ? 300 : path.startsWith("/hang") ? 3_600_000 : 0;
        const answer = () => {
          this.concurrent.set(path, (this.concurrent.get(path) ?? 1) - 1);
          res.writeHead(status, { "content-type": "application/json" });
          res.end(JSON.stringify({ path, authorization: req.headers.authorization, body }));
        };
        // /hold… answers when the test calls release(path): a step that runs until told.
        const t = path.startsWith("/hold") ? undefined : setTimeout(answer, delay);
        if (!t) this.holds.set(path, [...(this.holds.get(path) ?? []), answer]);
        res.on("close", () => {
          clearTimeout(t);
          if (!res.writableFinished) this.concurrent.set(path, (this.concurrent.get(path) ?? 1) - 1);
        });
      });
    });
    await new Promise<void>((r) => this.server.listen(port, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${port}`;
  }
  count(path: string): number {
    return this.calls.filter((c) => c.path === path).length;
  }
  /** Answers the held calls to `path`. */
  release(path: string): void {
    for (const answer of this.holds.get(path) ?? []) answer();
    this.holds.delete(path);
  }
  /** Bodies of the calls to `path`, in arrival order. */
  bodies(path: string): string[] {
    return this.calls.filter((c) => c.path === path).map((c) => c.body);
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

describe.each(ENGINES.map((e, i) => ({ ...e, port: 17960 + i })))(
  "executions on $engine",
  ({ engine, create, port }) => {
    let tdb: TestDatabase;
    let store: Store;
    let wake: WakeChannel;
    let svc: ExecutionService;
    let pool: WorkerPool;
    let admin: Principal;
    // Approvals need a second person: the submitter may not approve its own executions.
    let approver: Principal;
    const web = new Automation();
    const config = resolveExecConfig({
      sla: {
        fast: { leaseMs: 600, maxAttempts: 3, cancelGraceMs: 500 },
        medium: { leaseMs: 600, maxAttempts: 2, cancelGraceMs: 500 },
        long: { leaseMs: 600, maxAttempts: 1, stepTimeoutMs: 800 },
      },
      // A kind's limit beats its class's: waits may take 5 s even in the long class.
      stepTimeoutByKindMs: { wait: 5000 },
      backoff: { baseMs: 50, maxMs: 200, jitter: 0.5 },
      pool: { minWorkers: 2, maxWorkers: 6, pollIntervalMs: 200, reapIntervalMs: 100, scaleIntervalMs: 100 },
    });

    const plan = (steps: Plan["steps"], extra: Partial<Plan> = {}): Plan => ({
      sla: "fast",
      steps,
      ...extra,
    });
    const submit = async (p: Plan, principal = admin) => (await svc.submit(principal, { plan: p })).execution;
    const settled = (id: string, states: string[], timeoutMs = 15_000) =>
      waitFor(
        async () => {
          const e = await getExecution(store.read, id);
          return states.includes(e.state) ? e : undefined;
        },
        { timeoutMs, what: `execution ${id} to be ${states.join("|")}` },
      );

    beforeAll(async () => {
      tdb = await create();
      store = await Store.open(tdb.location);
      await web.start(port);
      const { record } = await createToken(store.db, "ops", "admin");
      admin = { kind: "admin", id: record.id, name: record.name };
      const second = await createToken(store.db, "approver", "admin");
      approver = { kind: "admin", id: second.record.id, name: second.record.name };
      const key = SecretKey.fromBase64(randomBytes(32).toString("base64"), "test");
      await putSecret(store.db, key, "api-token", SECRET);
      wake = new WakeChannel(tdb.url);
      await wake.start();
      svc = new ExecutionService(store, config, wake);
      const runner = new ExecutionRunner({
        store,
        config,
        secretKey: key,
        wake,
        services: { store, vms: new VmService(store, () => {}), agents: new AgentConnector(null) },
      });
      pool = new WorkerPool({
        db: store.db,
        handlers: { [EXECUTION_QUEUE]: runner.handle },
        pool: config.pool,
        backoff: config.backoff,
        wake,
        onReaped: (jobs) => svc.onReaped(jobs),
        onReapTick: async () => {
          await svc.expireApprovals();
        },
      });
      pool.start();
    });
    afterAll(async () => {
      await pool?.stop();
      await wake?.close();
      await web.stop();
      await store?.close();
      await tdb?.drop();
    });

    it("runs the steps in order and never stores or sends a secret in clear", async () => {
      const e = await submit(
        plan([
          { kind: "wait", seconds: 0.2 },
          {
            kind: "http",
            url: `${web.url}/echo`,
            headers: { authorization: `Bearer ${secretRef("api-token")}` },
            body: { note: `pw is ${secretRef("api-token")}`, b64: secretRef("api-token") },
          },
        ]),
      );
      const done = await settled(e.id, ["completed", "failed", "partial"]);
      expect(done.state).toBe("completed");
      expect(done.steps.map((s) => s.state)).toEqual(["completed", "completed"]);
      // The secret reached the service...
      expect(web.calls.find((c) => c.path === "/echo")?.headers.authorization).toBe(`Bearer ${SECRET}`);
      // ...but nothing the system stored or published contains it, in any encoding.
      const dump = JSON.stringify([
        (await store.read.query("SELECT * FROM executions")).rows,
        (await store.read.query("SELECT * FROM execution_steps")).rows,
        (await store.read.query("SELECT * FROM execution_logs")).rows,
        (await store.read.query("SELECT * FROM events")).rows,
        (await store.read.query("SELECT * FROM exec_jobs")).rows,
        (await store.read.query("SELECT * FROM exec_secrets")).rows,
      ]);
      expect(dump).toContain(secretRef("api-token")); // the plan keeps the reference
      for (const form of [
        SECRET,
        encodeURIComponent(SECRET),
        Buffer.from(SECRET).toString("base64").slice(0, 16),
      ])
        expect(dump).not.toContain(form);
      const logs = await listLogs(store.read, e.id);
      expect(logs.map((l) => l.message).join("\n")).toMatch(/step 2\/2 .* completed/);
    });

    it("returns the existing execution for a duplicate submission, even a concurrent one", async () => {
      const p = plan([{ kind: "wait", seconds: 0 }], { name: `dup-${port}` });
      const results = await Promise.all([1, 2, 3].map(() => svc.submit(admin, { plan: p })));
      const ids = new Set(results.map((r) => r.execution.id));
      expect(ids.size).toBe(1);
      expect(results.filter((r) => r.duplicate).length).toBe(2);
      const byKey = await svc.submit(admin, { plan: { ...p, name: "other" }, idempotencyKey: "k-1" });
      expect((await svc.submit(admin, { plan: p, idempotencyKey: "k-1" })).execution.id).toBe(
        byKey.execution.id,
      );
      await settled(byKey.execution.id, ["completed"]);
    });

    it("never runs two executions on the same asset at once, and releases the mutex after", async () => {
      const es = await Promise.all(
        [1, 2, 3].map((i) =>
          submit(plan([{ kind: "http", url: `${web.url}/slow`, body: { i } }], { name: `m${i}` })),
        ),
      );
      for (const e of es) expect((await settled(e.id, ["completed", "failed"])).state).toBe("completed");
      expect(web.count("/slow")).toBe(3);
      expect(web.maxConcurrent.get("/slow")).toBe(1);
      expect(await assetHolder(store.read, es[0]!.assets[0]!)).toBeUndefined();
    });

    it("waits for approval before running when the plan requires it, and can be rejected", async () => {
      const e = await submit(plan([{ kind: "wait", seconds: 0 }], { approval: "required", name: "appr" }));
      expect(e.state).toBe("pending_approval");
      expect((await svc.approve(e.id, approver, "looks fine")).state).toBe("queued");
      expect((await settled(e.id, ["completed"])).state).toBe("completed");
      await expect(svc.approve(e.id, approver)).rejects.toMatchObject({ code: "NOVA_ILLEGAL_STATE" });

      const r = await submit(plan([{ kind: "wait", seconds: 0 }], { approval: "required", name: "rej" }));
      expect((await svc.reject(r.id, admin, "no")).state).toBe("rejected");
      await expect(svc.retry(r.id)).rejects.toMatchObject({ code: "NOVA_ILLEGAL_STATE" });
    });

    it("pauses at an approval step with its mutexes released, then resumes after approval", async () => {
      const e = await submit(
        plan([
          { kind: "http", url: `${web.url}/gate-a` },
          { kind: "approval", message: "ok to continue?" },
          { kind: "http", url: `${web.url}/gate-b` },
        ]),
      );
      const paused = await settled(e.id, ["pending_approval"]);
      expect(paused.steps.map((s) => s.state)).toEqual(["completed", "waiting_approval", "pending"]);
      expect(await assetHolder(store.read, e.assets[0]!)).toBeUndefined();
      expect(web.count("/gate-b")).toBe(0);
      await svc.approve(e.id, approver);
      expect((await settled(e.id, ["completed", "failed"])).state).toBe("completed");
      expect(web.count("/gate-a")).toBe(1);
      expect(web.count("/gate-b")).toBe(1);
    });

    it("times out an approval nobody gave in time", async () => {
      const e = await submit(
        plan([{ kind: "wait", seconds: 0 }], {
          approval: "required",
          name: "exp",
          timeouts: { approvalSeconds: 1 },
        }),
      );
      const out = await settled(e.id, ["timed_out"], 10_000);
      expect(out.stateReason).toMatch(/approval expired/);
      expect(out.steps[0]!.state).toBe("pending");
      await expect(svc.approve(e.id, approver)).rejects.toMatchObject({ code: "NOVA_ILLEGAL_STATE" });
    });

    it("cancels a running step through its signal and records where it stopped", async () => {
      const e = await submit(
        plan(
          [
            { kind: "wait", seconds: 0 },
            { kind: "wait", seconds: 60 },
          ],
          { name: "c" },
        ),
      );
      await waitFor(async () => (await getExecution(store.read, e.id)).steps[1]!.state === "running", {
        timeoutMs: 10_000,
        what: "step 2 to run",
      });
      const t0 = Date.now();
      await svc.cancel(e.id);
      const out = await settled(e.id, ["cancelled"]);
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(out.currentStep).toBe(1);
      expect(out.stateReason).toMatch(/cancelled at step 2\/2/);
      expect(out.steps.map((s) => s.state)).toEqual(["completed", "cancelled"]);
      await expect(svc.cancel(e.id)).rejects.toMatchObject({ code: "NOVA_ILLEGAL_STATE" });
    });

    it("times out a step past its limit and dead-letters it; a requeue runs it again", async () => {
      const e = await submit(plan([{ kind: "wait", seconds: 30, timeoutSeconds: 1 }], { name: "to" }));
      const out = await settled(e.id, ["timed_out"]);
      expect(out.steps[0]!.error).toMatchObject({ code: "NOVA_EXEC_TIMEOUT" });
      const dead = (await svc.deadLetters()).find((d) => d.execution?.id === e.id);
      expect(dead?.job.state).toBe("dead");
      const requeued = await svc.requeue(dead!.job.id);
      expect(["queued", "running"]).toContain(requeued.execution?.state);
      await settled(e.id, ["timed_out"]);
    });

    it("retries a transient failure with backoff and completes on a later attempt", async () => {
      web.status.set("/flaky", [503]);
      const e = await submit(
        plan([{ kind: "http", url: `${web.url}/flaky`, retries: 0 }], { name: "flaky" }),
      );
      const out = await settled(e.id, ["completed", "failed"]);
      expect(out.state).toBe("completed");
      expect(out.steps[0]!.attempts).toBe(2);
      expect(web.count("/flaky")).toBe(2);
    });

    it("ends partial when a later step fails for good, and retry resumes at that step", async () => {
      web.status.set("/bad", [400]);
      const e = await submit(
        plan([
          { kind: "http", url: `${web.url}/first` },
          { kind: "http", url: `${web.url}/bad` },
        ]),
      );
      const out = await settled(e.id, ["partial", "failed", "completed"]);
      expect(out.state).toBe("partial");
      expect(out.steps[1]!.error).toMatchObject({ code: "NOVA_EXEC_STEP_FAILED" });
      expect((await listDeadJobs(store.read)).some((j) => j.payload.executionId === e.id)).toBe(true);
      await svc.retry(e.id);
      expect((await settled(e.id, ["completed", "partial"])).state).toBe("completed");
      expect(web.count("/first")).toBe(1); // the completed step did not run again
    });

    // PGlite runs one transaction at a time, so only PostgreSQL can interleave the two.
    it.skipIf(engine === "pglite")(
      "a retry racing an attempt's last fenced write waits for it instead of deadlocking",
      async () => {
        web.status.set("/bad-once", [400]);
        const e = await submit(plan([{ kind: "http", url: `${web.url}/bad-once` }]));
        const out = await settled(e.id, ["partial", "failed", "completed"]);
        expect(out.state).toBe("failed");
        const jobId = out.jobId as number;
        // A fenced write as the runner makes it: the job's row first, then the execution's.
        let release!: () => void;
        const gate = new Promise<void>((r) => {
          release = r;
        });
        let jobLocked!: () => void;
        const locked = new Promise<void>((r) => {
          jobLocked = r;
        });
        const writer = store.write(async (tx) => {
          await tx.query("SELECT id FROM exec_jobs WHERE id = $1 FOR UPDATE", [jobId]);
          jobLocked();
          await gate;
          await tx.query("SELECT id FROM executions WHERE id = $1 FOR UPDATE", [e.id]);
        });
        await locked;
        const retry = svc.retry(e.id);
        // The retry has reached the job's row and waits for it (whatever it locked before).
        await waitFor(
          async () =>
            (
              await store.read.query<{ n: number }>(
                `SELECT count(*)::int AS n FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE '%FROM exec_jobs WHERE id = $1 FOR UPDATE%'`,
              )
            ).rows[0]?.n === 1,
          { timeoutMs: 5000, what: "the retry to wait for the job's row" },
        );
        release();
        await writer;
        await retry;
        expect((await settled(e.id, ["completed", "failed", "partial"])).state).toBe("completed");
      },
    );

    it("re-checks permissions when it runs: a token revoked after submission runs nothing", async () => {
      const { record } = await createToken(store.db, "short-lived", "admin");
      const who: Principal = { kind: "admin", id: record.id, name: record.name };
      const e = await submit(plan([{ kind: "http", url: `${web.url}/rbac` }], { approval: "required" }), who);
      await store.db.query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1", [record.id]);
      await svc.approve(e.id, admin);
      const out = await settled(e.id, ["failed", "completed"]);
      expect(out.state).toBe("failed");
      expect(out.stateReason).toMatch(/unknown or revoked token/);
      expect(web.count("/rbac")).toBe(0);
      const join: Principal = { kind: "join", id: "x", name: "join" };
      await expect(submit(plan([{ kind: "wait", seconds: 0 }]), join)).rejects.toMatchObject({
        code: "NOVA_FORBIDDEN",
      });
    });

    it("resumes an idempotent step after its worker lost the lease, but not a non-idempotent one", async () => {
      const steal = async (id: string) => {
        const e = await waitFor(
          async () => {
            const x = await getExecution(store.read, id);
            return x.steps[0]!.state === "running" ? x : undefined;
          },
          { timeoutMs: 10_000, what: "the step to run" },
        );
        // The worker "dies": its lease now belongs to nobody alive and nobody renews it.
        await store.db.query("UPDATE exec_jobs SET locked_by = 'dead-worker' WHERE id = $1", [e.jobId]);
      };
      const ok = await submit(plan([{ kind: "wait", seconds: 1.5 }], { name: "resume-ok" }));
      await steal(ok.id);
      const okOut = await settled(ok.id, ["completed", "failed"]);
      expect(okOut.state).toBe("completed");
      expect(okOut.steps[0]!.attempts).toBe(2);

      const post = await submit(
        plan([{ kind: "http", url: `${web.url}/hang`, method: "POST" }], { name: "resume-no" }),
      );
      await steal(post.id);
      const postOut = await settled(post.id, ["failed", "completed"]);
      expect(postOut.state).toBe("failed");
      expect(postOut.steps[0]!.error).toMatchObject({ code: "NOVA_EXEC_NOT_IDEMPOTENT" });
      expect(web.count("/hang")).toBe(1);
    });

    it("times out an approval step nobody approved in time, recording it on the step", async () => {
      const e = await submit(
        plan(
          [
            { kind: "wait", seconds: 0 },
            { kind: "approval", message: "go?" },
            { kind: "wait", seconds: 0 },
          ],
          {
            name: "exp-step",
            timeouts: { approvalSeconds: 1 },
          },
        ),
      );
      const out = await settled(e.id, ["timed_out"], 10_000);
      expect(out.steps.map((s) => s.state)).toEqual(["completed", "timed_out", "pending"]);
      expect(out.currentStep).toBe(1);
    });

    it("refuses self-approval unless the token was granted executions:approve-own", async () => {
      const e = await submit(plan([{ kind: "wait", seconds: 0 }], { approval: "required", name: "self" }));
      await expect(svc.approve(e.id, admin)).rejects.toMatchObject({
        code: "NOVA_EXEC_SELF_APPROVAL",
        status: 403,
        details: { execution: e.id, needs: "executions:approve-own" },
      });
      expect((await getExecution(store.read, e.id)).state).toBe("pending_approval");
      // Rejecting one's own execution is withdrawing it: allowed.
      expect((await svc.reject(e.id, admin, "withdrawn")).state).toBe("rejected");

      const granted = await createToken(store.db, "self-approver", "admin", ["executions:approve-own"]);
      const own: Principal = {
        kind: "admin",
        id: granted.record.id,
        name: granted.record.name,
        grants: granted.record.grants,
      };
      const mine = await submit(
        plan([{ kind: "wait", seconds: 0 }], { approval: "required", name: "own" }),
        own,
      );
      expect((await svc.approve(mine.id, own)).state).toBe("queued");
      expect((await settled(mine.id, ["completed"])).state).toBe("completed");
    });

    it("holds a step's mutexes only while the step runs: another execution gets the asset in between", async () => {
      // A: call /slow-ps, then a step on another asset that runs until released, then
      // /slow-ps again. Per step, B's call on /slow-ps runs while A is in its middle step.
      const a = await submit(
        plan(
          [
            { kind: "http", url: `${web.url}/slow-ps`, body: "a1" },
            { kind: "http", method: "GET", url: `${web.url}/hold-ps` },
            { kind: "http", url: `${web.url}/slow-ps`, body: "a2" },
          ],
          { name: "ps-a" },
        ),
      );
      expect(a.lock).toBe("step");
      const ps = `url:${web.url}/slow-ps`;
      const hold = `url:${web.url}/hold-ps`;
      expect(a.steps.map((s) => s.assets)).toEqual([[ps], [hold], [ps]]);
      await waitFor(() => web.count("/hold-ps") === 1, { timeoutMs: 10_000, what: "A's middle step to run" });
      expect(await assetHolder(store.read, ps)).toBeUndefined();
      expect(await assetHolder(store.read, hold)).toBe(a.id);
      const b = await submit(
        plan([{ kind: "http", url: `${web.url}/slow-ps`, body: "b" }], { name: "ps-b" }),
      );
      expect((await settled(b.id, ["completed", "failed"])).state).toBe("completed");
      expect((await getExecution(store.read, a.id)).state).toBe("running");
      web.release("/hold-ps");
      expect((await settled(a.id, ["completed", "failed", "partial"])).state).toBe("completed");
      expect(web.bodies("/slow-ps")).toEqual(["a1", "b", "a2"]);
      expect(web.maxConcurrent.get("/slow-ps")).toBe(1);
      expect(await assetHolder(store.read, ps)).toBeUndefined();
      expect(await assetHolder(store.read, hold)).toBeUndefined();
    });

    it("holds every asset for the whole run with lock: execution", async () => {
      const a = await submit(
        plan(
          [
            { kind: "http", url: `${web.url}/slow-px`, body: "a1" },
            { kind: "http", method: "GET", url: `${web.url}/hold-px` },
            { kind: "http", url: `${web.url}/slow-px`, body: "a2" },
          ],
          { name: "px-a", lock: "execution" },
        ),
      );
      expect(a.lock).toBe("execution");
      await waitFor(() => web.count("/hold-px") === 1, { timeoutMs: 10_000, what: "A's middle step to run" });
      expect(await assetHolder(store.read, `url:${web.url}/slow-px`)).toBe(a.id);
      const b = await submit(
        plan([{ kind: "http", url: `${web.url}/slow-px`, body: "b" }], { name: "px-b" }),
      );
      // B waits in the queue, saying for what, without using an attempt.
      const waiting = await waitFor(
        async () => {
          const x = await getExecution(store.read, b.id);
          return x.stateReason.includes("waiting for") ? x : undefined;
        },
        { timeoutMs: 10_000, what: "B to wait for the mutex" },
      );
      expect(waiting.state).toBe("queued");
      expect(waiting.stateReason).toContain(a.id);
      expect(web.bodies("/slow-px")).toEqual(["a1"]);
      web.release("/hold-px");
      expect((await settled(b.id, ["completed", "failed"])).state).toBe("completed");
      expect((await getExecution(store.read, b.id)).attempts).toBe(1);
      expect((await settled(a.id, ["completed", "failed", "partial"])).state).toBe("completed");
      expect(web.bodies("/slow-px")).toEqual(["a1", "a2", "b"]);
    });

    it("waits between steps for an asset another execution holds, and resumes at that step", async () => {
      // A holds /slow-pw for its whole run; B's first step needs something else, its second
      // needs /slow-pw: B goes back to the queue before step 2 and resumes there after A.
      const a = await submit(
        plan(
          [
            { kind: "http", url: `${web.url}/slow-pw`, body: "a1" },
            { kind: "http", method: "GET", url: `${web.url}/hold-pw` },
          ],
          { name: "pw-a", lock: "execution" },
        ),
      );
      await waitFor(() => web.count("/hold-pw") === 1, { timeoutMs: 10_000, what: "A's second step to run" });
      const b = await submit(
        plan(
          [
            { kind: "http", method: "GET", url: `${web.url}/pw-free` },
            { kind: "http", url: `${web.url}/slow-pw`, body: "b" },
          ],
          { name: "pw-b" },
        ),
      );
      const parked = await waitFor(
        async () => {
          const x = await getExecution(store.read, b.id);
          return x.state === "queued" && x.steps[0]!.state === "completed" ? x : undefined;
        },
        { timeoutMs: 10_000, what: "B to wait before step 2" },
      );
      expect(parked.stateReason).toMatch(/waiting for url:.*\/slow-pw before step 2\/2/);
      expect(parked.stateReason).toContain(a.id);
      expect(await assetHolder(store.read, `url:${web.url}/pw-free`)).toBeUndefined();
      web.release("/hold-pw");
      const done = await settled(b.id, ["completed", "failed", "partial"]);
      expect(done.state).toBe("completed");
      expect(done.steps.map((s) => s.attempts)).toEqual([1, 1]);
      expect(web.count("/pw-free")).toBe(1);
      expect(web.bodies("/slow-pw")).toEqual(["a1", "b"]);
    });

    it("enforces the step limit of the SLA class, unless the step kind has its own", async () => {
      const hung = await submit(
        plan([{ kind: "http", method: "GET", url: `${web.url}/hang-class` }], { sla: "long" }),
      );
      const out = await settled(hung.id, ["timed_out", "completed", "failed"]);
      expect(out.state).toBe("timed_out");
      expect(out.steps[0]!.error).toMatchObject({ code: "NOVA_EXEC_TIMEOUT", details: { limit: "step" } });
      expect(out.steps[0]!.error?.message).toMatch(/ran past its time limit of 1 s/);
      // A 1.5 s wait outlives the class's 0.8 s but not the wait kind's 5 s.
      const waited = await submit(
        plan([{ kind: "wait", seconds: 1.5 }], { sla: "long", name: "kind-limit" }),
      );
      expect((await settled(waited.id, ["timed_out", "completed", "failed"])).state).toBe("completed");
    });

    it("ends an execution that runs past its own time limit as timed out, where it was", async () => {
      const e = await submit(
        plan(
          [
            { kind: "wait", seconds: 0.6 },
            { kind: "wait", seconds: 0.6 },
            { kind: "wait", seconds: 3 },
          ],
          { name: "deadline", timeouts: { executionSeconds: 1 } },
        ),
      );
      const out = await settled(e.id, ["timed_out", "completed"]);
      expect(out.state).toBe("timed_out");
      expect(out.steps.map((s) => s.state)).toEqual(["completed", "timed_out", "pending"]);
      expect(out.steps[1]!.error).toMatchObject({
        code: "NOVA_EXEC_TIMEOUT",
        details: { limit: "execution" },
      });
      expect(out.stateReason).toMatch(/execution's time limit passed/);
    });

    it("retries an HTTP call inside its step with backoff on 5xx and 429, then succeeds", async () => {
      web.status.set("/in-step", [503, 429, 200]);
      const e = await submit(
        plan([{ kind: "http", url: `${web.url}/in-step`, retries: 2, retryBaseMs: 20 }], { name: "in-step" }),
      );
      const out = await settled(e.id, ["completed", "failed", "partial"]);
      expect(out.state).toBe("completed");
      expect(out.steps[0]!.attempts).toBe(1); // one step attempt, three calls
      expect(web.count("/in-step")).toBe(3);
      const logs = (await listLogs(store.read, e.id)).map((l) => l.message).join("\n");
      expect(logs).toMatch(/retrying POST in \d+ ms \(attempt 2\/3\) after: HTTP 503/);
      expect(logs).toMatch(/retrying POST in \d+ ms \(attempt 3\/3\) after: HTTP 429/);
    });

    it("times out an execution that waits for a busy asset past its time limit, naming the asset", async () => {
      const a = await submit(
        plan([{ kind: "http", method: "GET", url: `${web.url}/hold-dl` }], { name: "dl-a" }),
      );
      await waitFor(() => web.count("/hold-dl") === 1, { timeoutMs: 10_000, what: "A to hold the asset" });
      const b = await submit(
        plan(
          [
            { kind: "wait", seconds: 0 },
            { kind: "http", method: "GET", url: `${web.url}/hold-dl` },
          ],
          { name: "dl-b", timeouts: { executionSeconds: 1 } },
        ),
      );
      const out = await settled(b.id, ["timed_out", "completed", "failed"]);
      expect(out.state).toBe("timed_out");
      expect(out.steps.map((s) => s.state)).toEqual(["completed", "timed_out"]);
      expect(out.steps[1]!.error).toMatchObject({
        code: "NOVA_EXEC_TIMEOUT",
        details: { limit: "execution", asset: `url:${web.url}/hold-dl` },
      });
      expect(web.count("/hold-dl")).toBe(1);
      expect(await assetHolder(store.read, `url:${web.url}/hold-dl`)).toBe(a.id);
      web.release("/hold-dl");
      expect((await settled(a.id, ["completed", "failed"])).state).toBe("completed");
    });

    it("refuses plans naming missing secrets or unknown VMs", async () => {
      await expect(
        submit(plan([{ kind: "http", url: `${web.url}/x`, headers: { a: secretRef("nope") } }])),
      ).rejects.toMatchObject({ code: "NOVA_EXEC_PLAN" });
      await expect(submit(plan([{ kind: "vm.stop", vm: "no-such-vm" }]))).rejects.toMatchObject({
        code: "NOVA_EXEC_PLAN",
      });
    });
  },
);
