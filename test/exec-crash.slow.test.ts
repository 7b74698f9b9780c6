// Crash safety of the execution system with real processes: a server (its worker pool)
// killed with SIGKILL mid-step while a second server shares its PostgreSQL, and a private
// PostgreSQL restarted under a running execution. No mocks: the leases expire for real.
import { randomBytes } from "node:crypto";
import { copyFile, mkdir } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { TestCluster } from "./helpers/cluster.js";
import { createPostgresDatabase, type TestDatabase } from "./helpers/databases.js";
import { PrivatePostgres } from "./helpers/private-postgres.js";

const HOOK_PORT = 17970;
const PRIVATE_PG_PORT = 55_437;

interface Health {
  status: string;
  executionWorkers?: { status: string; listening: boolean };
}

interface Exec {
  id: string;
  state: string;
  stateReason: string;
  steps: { state: string; attempts: number }[];
}

/** Counts calls per path and how many overlap; /slow answers after 3 s. */
class Hook {
  server!: Server;
  calls: { path: string; at: number }[] = [];
  active = 0;
  maxActive = 0;
  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const p = req.url ?? "/";
      this.calls.push({ path: p, at: Date.now() });
      const slow = p.startsWith("/slow");
      if (slow) {
        this.active++;
        this.maxActive = Math.max(this.maxActive, this.active);
      }
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        if (slow) this.active--;
      };
      const t = setTimeout(
        () => {
          end();
          res.end("ok");
        },
        slow ? 3000 : 0,
      );
      res.on("close", () => {
        clearTimeout(t);
        end();
      });
    });
    await new Promise<void>((r) => this.server.listen(HOOK_PORT, "127.0.0.1", r));
  }
  count(p: string): number {
    return this.calls.filter((c) => c.path === p).length;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

const hookUrl = (p: string) => `http://127.0.0.1:${HOOK_PORT}${p}`;

describe("execution crash safety", () => {
  const hook = new Hook();
  beforeAll(async () => {
    // Both servers must decrypt the same secrets: one key for the cluster.
    process.env.NOVACRON_SECRETS_KEY = randomBytes(32).toString("base64");
    await hook.start();
  });
  afterAll(async () => {
    await hook.stop();
  });

  describe("a server killed with SIGKILL mid-step", () => {
    let db: TestDatabase;
    let a: TestCluster;
    let b: TestCluster;
    beforeAll(async () => {
      db = await createPostgresDatabase();
      a = await TestCluster.create(17951);
      b = await TestCluster.create(17952);
    }, 120_000);
    afterAll(async () => {
      await a?.destroy();
      await b?.destroy();
      await db?.drop();
    });

    it("hands the step to the other server once the lease expires; nothing runs twice at once or is lost", async () => {
      await a.startServer(["--database-url", db.url!]);
      const plan = {
        name: "crash",
        sla: "fast",
        steps: [
          { kind: "http", method: "GET", url: hookUrl("/slow") },
          { kind: "http", method: "GET", url: hookUrl("/after") },
        ],
      };
      const first = await a.api<Exec>("POST", "/v1/executions", { plan });
      expect(first.status).toBe(202);
      // A second execution on the same asset waits behind the first's mutex.
      const second = await a.api<Exec>("POST", "/v1/executions", {
        plan: { ...plan, name: "behind", steps: [{ kind: "http", method: "GET", url: hookUrl("/slow") }] },
      });
      await waitFor(() => hook.count("/slow") === 1, {
        timeoutMs: 20_000,
        what: "the first step to start on A",
      });

      // B joins the same database (its admin token and cluster CA are A's: replicas share
      // the CA), then A dies mid-step.
      await mkdir(path.join(b.dir, "server", "pki"), { recursive: true });
      for (const f of ["admin.token", "pki/ca.crt", "pki/ca.key"])
        await copyFile(path.join(a.dir, "server", f), path.join(b.dir, "server", f));
      await b.startServer(["--database-url", db.url!]);
      const killedAt = Date.now();
      await a.stop("server", "SIGKILL");

      const done = await waitFor(
        async () => {
          const e = (await b.api<Exec>("GET", `/v1/executions/${first.body.id}`)).body;
          return e.state === "completed" || e.state === "failed" ? e : undefined;
        },
        { timeoutMs: 40_000, intervalMs: 200, what: "the execution to finish on B" },
      );
      expect(done.state).toBe("completed");
      expect(done.steps[0]!.attempts).toBe(2);
      const retriedAt = hook.calls.filter((c) => c.path === "/slow")[1]!.at;
      expect((retriedAt - killedAt) / 1000).toBeLessThan(15);
      expect(hook.count("/after")).toBe(1);

      const behind = await waitFor(
        async () => {
          const e = (await b.api<Exec>("GET", `/v1/executions/${second.body.id}`)).body;
          return e.state === "completed" ? e : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 200, what: "the waiting execution to get the mutex" },
      );
      expect(behind.state).toBe("completed");
      expect(hook.count("/slow")).toBe(3);
      expect(hook.maxActive).toBe(1);

      const events = await b.api<{ lines: { message: string }[] }>(
        "GET",
        `/v1/executions/${first.body.id}/logs`,
      );
      expect(events.body.lines.some((l) => /resuming an interrupted attempt/.test(l.message))).toBe(true);
      const health = await b.fetch("/healthz").then((r) => r.json() as Promise<Health>);
      expect(health.executionWorkers).toMatchObject({ status: "ok" });
    }, 120_000);
  });

  describe("PostgreSQL restarted under a running execution", () => {
    let pg: PrivatePostgres;
    let c: TestCluster;

    beforeAll(async () => {
      pg = await PrivatePostgres.start({ tcpPort: PRIVATE_PG_PORT });
      c = await TestCluster.create(17953);
    }, 120_000);
    afterAll(async () => {
      await c?.destroy();
      await pg?.destroy();
    });

    it("reconnects its workers and finishes the execution", async () => {
      const url = pg.tcpUrl("postgres");
      await c.startServer(["--database-url", url]);
      const res = await c.api<Exec>("POST", "/v1/executions", {
        plan: {
          name: "pg-restart",
          sla: "fast",
          steps: [
            { kind: "wait", seconds: 2 },
            { kind: "http", method: "GET", url: hookUrl("/pg-1") },
            { kind: "wait", seconds: 2 },
            { kind: "http", method: "GET", url: hookUrl("/pg-2") },
          ],
        },
      });
      expect(res.status).toBe(202);
      await waitFor(
        async () =>
          (await c.api<Exec>("GET", `/v1/executions/${res.body.id}`)).body.steps[0]!.state === "running",
        { timeoutMs: 20_000, what: "the first step to run" },
      );
      await pg.restartServer();
      const done = await waitFor(
        async () => {
          const r = await c.api<Exec>("GET", `/v1/executions/${res.body.id}`).catch(() => undefined);
          const e = r?.status === 200 ? r.body : undefined;
          return e && ["completed", "failed", "partial", "timed_out"].includes(e.state) ? e : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250, what: "the execution to finish after the restart" },
      );
      expect(done.state).toBe("completed");
      expect(hook.count("/pg-1")).toBeGreaterThanOrEqual(1);
      expect(hook.count("/pg-2")).toBe(1);
      const health = await waitFor(
        async () => {
          const h = await c.fetch("/healthz").then((r) => r.json() as Promise<Health>);
          return h.executionWorkers?.listening ? h : undefined;
        },
        { timeoutMs: 20_000, what: "the LISTEN connection to come back" },
      );
      expect(health.status).toBe("ok");
    }, 120_000);
  });
});
