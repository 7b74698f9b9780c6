// The pruner on a real PostgreSQL server and on PGlite: finished executions and completed
// jobs past their retention go (with steps, logs and idempotency keys), in bounded batches;
// anything live, queued or in the dead-letter queue stays however old it is.
import { randomUUID } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import type { Plan } from "../src/api/types/executions.js";
import { claimKey } from "../src/cluster/store/exec-idempotency.js";
import { appendLogs, insertExecution } from "../src/cluster/store/executions.js";
import { enqueueJobs } from "../src/cluster/store/executions-queue.js";
import type { Store } from "../src/cluster/store/store.js";
import type { RetentionOptions } from "../src/exec/config.js";
import { Pruner, pruneOnce } from "../src/exec/pruner.js";
import { waitFor } from "../src/lib/wait.js";
import type { ExecState } from "../src/states/execution.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";

const DAY = 86_400_000;
const RETENTION: RetentionOptions = {
  finishedMs: 7 * DAY,
  pruneIntervalMs: 100,
  batchSize: 2,
  maxBatchesPerRun: 100,
};
const PLAN: Plan = { steps: [{ kind: "wait", seconds: 0 }] };

describe.each(ENGINES)("pruning finished work on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });
  beforeEach(async () => {
    await store.db.exec(
      "DELETE FROM execution_logs; DELETE FROM execution_steps; DELETE FROM executions; DELETE FROM exec_jobs; DELETE FROM exec_idempotency; DELETE FROM exec_asset_locks",
    );
  });

  /** An execution in `state`, finished (or, when live, created) `ageMs` ago, with a log line and a key. */
  async function execution(
    state: ExecState,
    ageMs: number,
    job?: { state: "queued" | "running" | "completed" | "dead" },
  ): Promise<string> {
    const id = randomUUID();
    await insertExecution(
      store.db,
      {
        name: `${state}-${ageMs}`,
        tenant: "default",
        actor: { kind: "admin", id: randomUUID(), name: "ops" },
        plan: PLAN,
        sla: "fast",
        mode: "background",
        priority: 5,
        state: "queued",
        assets: [],
        stepAssets: [[]],
        lock: "step",
        idempotencyKey: null,
        approvalExpiresAt: null,
      },
      id,
    );
    await appendLogs(store.db, id, [{ step: 0, level: "info", message: "ran" }]);
    await claimKey(store.db, `key-${id}`, id, DAY);
    const final = ["completed", "cancelled", "rejected", "failed", "partial", "timed_out"].includes(state);
    await store.db.query(
      `UPDATE executions SET state = $2, created_at = now() - $3 * interval '1 millisecond',
         finished_at = CASE WHEN $4 THEN now() - $3 * interval '1 millisecond' END WHERE id = $1`,
      [id, state, ageMs, final],
    );
    if (job) {
      const [jobId] = await enqueueJobs(store.db, "execution", [{ payload: { executionId: id } }]);
      await store.db.query(
        `UPDATE exec_jobs SET state = $2, finished_at = CASE WHEN $2 IN ('completed', 'dead') THEN now() - $3 * interval '1 millisecond' END,
           locked_by = CASE WHEN $2 = 'running' THEN 'w' END, lease_expires_at = CASE WHEN $2 = 'running' THEN now() + interval '1 hour' END
         WHERE id = $1`,
        [jobId, job.state, ageMs],
      );
      await store.db.query("UPDATE executions SET job_id = $2 WHERE id = $1", [id, jobId]);
    }
    return id;
  }

  const ids = async (table: string, column = "id") =>
    (await store.read.query<{ id: string }>(`SELECT ${column}::text AS id FROM ${table}`)).rows.map(
      (r) => r.id,
    );

  it("deletes what ended before the retention, with its steps, logs and keys, and nothing live or dead-lettered", async () => {
    const gone = [
      await execution("completed", 8 * DAY, { state: "completed" }),
      await execution("cancelled", 8 * DAY),
      await execution("rejected", 30 * DAY),
    ];
    const kept = [
      // Too young.
      await execution("completed", 6 * DAY, { state: "completed" }),
      // The dead-letter queue waits for an operator, however old.
      await execution("failed", 90 * DAY, { state: "dead" }),
      await execution("partial", 90 * DAY, { state: "dead" }),
      await execution("timed_out", 90 * DAY),
      // Live, whatever their age.
      await execution("queued", 90 * DAY, { state: "queued" }),
      await execution("running", 90 * DAY, { state: "running" }),
      await execution("pending_approval", 90 * DAY),
      // Cancelled while queued, its job not yet picked up: the job still names it.
      await execution("cancelled", 90 * DAY, { state: "queued" }),
    ];
    // Jobs of other queues: old completed ones go, the rest stay.
    const [oldDone, youngDone, deadJob] = await enqueueJobs(store.db, "other", [{}, {}, {}]);
    await store.db.query(
      `UPDATE exec_jobs SET state = CASE WHEN id = $3 THEN 'dead' ELSE 'completed' END,
         finished_at = now() - CASE WHEN id = $2 THEN interval '1 day' ELSE interval '8 days' END
       WHERE id = ANY($1)`,
      [[oldDone, youngDone, deadJob], youngDone, deadJob],
    );
    // An idempotency key past its window that names a live execution, and a stale lock.
    await store.db.query(
      "INSERT INTO exec_idempotency (key, execution_id, expires_at) VALUES ('expired', $1, now() - interval '1 minute')",
      [kept[5]],
    );
    await store.db.query(
      `INSERT INTO exec_asset_locks (asset, execution_id, holder, expires_at) VALUES
         ('vm:stale', $1, 'w', now() - interval '2 hours'), ('vm:live', $1, 'w', now() + interval '1 minute')`,
      [kept[5]],
    );

    const result = await pruneOnce(store.db, RETENTION);
    expect(result).toMatchObject({ executions: 3, jobs: 2, idempotencyKeys: 1, assetLocks: 1 });
    expect((await ids("executions")).sort()).toEqual([...kept].sort());
    const stepsOf = await ids("execution_steps", "execution_id");
    const logsOf = await ids("execution_logs", "execution_id");
    const keysOf = await ids("exec_idempotency", "execution_id");
    for (const id of gone) {
      expect(stepsOf).not.toContain(id);
      expect(logsOf).not.toContain(id);
      expect(keysOf).not.toContain(id);
    }
    for (const id of kept) {
      expect(stepsOf).toContain(id);
      expect(logsOf).toContain(id);
      expect(keysOf).toContain(id);
    }
    const jobs = await store.read.query<{ id: number; state: string; queue: string }>(
      "SELECT id, state, queue FROM exec_jobs ORDER BY id",
    );
    expect(jobs.rows.map((j) => j.state).sort()).toEqual(
      ["completed", "completed", "dead", "dead", "dead", "queued", "queued", "running"].sort(),
    );
    expect(jobs.rows.map((j) => Number(j.id))).not.toContain(oldDone);
    expect(await ids("exec_asset_locks", "asset")).toEqual(["vm:live"]);

    // Nothing more to do: a second run deletes nothing.
    expect(await pruneOnce(store.db, RETENTION)).toMatchObject({
      executions: 0,
      jobs: 0,
      idempotencyKeys: 0,
      assetLocks: 0,
    });
  });

  it("deletes in bounded batches and leaves the rest to the next run", async () => {
    for (let i = 0; i < 7; i++) await execution("completed", 8 * DAY + i * 3_600_000, { state: "completed" });
    // A retention longer than a 32-bit count of milliseconds keeps everything.
    expect(await pruneOnce(store.db, { ...RETENTION, finishedMs: 400 * DAY })).toMatchObject({
      executions: 0,
      jobs: 0,
    });
    const first = await pruneOnce(store.db, { ...RETENTION, batchSize: 2, maxBatchesPerRun: 2 });
    expect(first.executions).toBe(4);
    expect(first.jobs).toBe(4);
    expect((await ids("executions")).length).toBe(3);
    // Oldest first.
    expect(
      (await store.read.query<{ name: string }>("SELECT name FROM executions ORDER BY name")).rows.map(
        (r) => r.name,
      ),
    ).toEqual([0, 1, 2].map((i) => `completed-${8 * DAY + i * 3_600_000}`));
    const second = await pruneOnce(store.db, { ...RETENTION, batchSize: 2, maxBatchesPerRun: 2 });
    expect(second.executions).toBe(3);
    expect(second.jobs).toBe(3);
    expect(await ids("executions")).toEqual([]);
  });

  it("runs by itself every interval until stopped", async () => {
    const old = await execution("completed", 8 * DAY, { state: "completed" });
    const live = await execution("queued", 8 * DAY, { state: "queued" });
    const pruner = new Pruner(store.db, RETENTION);
    pruner.start();
    try {
      await waitFor(async () => !(await ids("executions")).includes(old), {
        timeoutMs: 5000,
        what: "the pruner to delete the old execution",
      });
      expect(pruner.lastRun()?.error).toBeUndefined();
      expect(await ids("executions")).toEqual([live]);
    } finally {
      await pruner.stop();
    }
  });
});
