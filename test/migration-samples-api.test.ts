/**
 * GET /v1/migrations/{id}/samples against a real server over TLS (PGlite in a data dir):
 * the stored progress history oldest first, readable by anyone who reads migrations
 * (a viewer's session), refused without credentials, NOVA_NOT_FOUND for an unknown id.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MigrationProgress, MigrationSampleList } from "../src/api/types/migrations.js";
import { recordSample } from "../src/cluster/store/migration-samples.js";
import { insertMigration } from "../src/cluster/store/migrations.js";
import { type ClusterFetch, clusterFetch } from "../src/security/tls-client.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";
import { addHost, addImage, addVm } from "./helpers/store-fixtures.js";

describe("a migration's progress history over the API", () => {
  let dir: string;
  let server: RunningServer;
  let fetchTls: ClusterFetch;
  let migrationId: string;

  const get = async (route: string, headers: Record<string, string>) => {
    const res = await fetchTls(`${server.url}${route}`, { headers });
    return {
      status: res.status,
      body: (await res.json()) as MigrationSampleList & { error?: { code: string } },
    };
  };
  const admin = () => ({ authorization: `Bearer ${server.created.admin}` });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-samples-api-"));
    server = await startServer({
      dataDir: dir,
      port: 0,
      execWorkers: false,
      logger: pino({ level: "silent" }),
    });
    fetchTls = clusterFetch({ caPem: server.caPem }, { role: "server" });
    const db = server.store.db;
    const a = await addHost(db, "src");
    const b = await addHost(db, "dst");
    const vmId = await addVm(db, "web", await addImage(db, "img"), a);
    migrationId = (
      await insertMigration(db, {
        vmId,
        vmName: "web",
        sourceHostId: a,
        target: { hostId: b },
        options: {},
        transport: "dwcp",
      })
    ).id;
    const t0 = Date.parse("2026-12-01T10:00:00Z");
    for (let i = 0; i < 3; i++) {
      const p: MigrationProgress = {
        phase: "memory",
        diskBytesDone: 0,
        diskBytesTotal: 0,
        memoryBytesSent: (i + 1) * 1000,
        memoryBytesRemaining: 3000 - (i + 1) * 1000,
        memoryBytesTotal: 3000,
        pass: 1,
        pagesPerSecond: 1,
        dirtyBytesPerSecond: 0,
        throughputMbps: 1,
        expectedDowntimeMs: null,
        etaSeconds: null,
        autoConvergeThrottlePct: null,
        transport: {
          chosen: "dwcp",
          mode: "wan",
          reason: "asked for",
          wireBytes: (i + 1) * 100,
          logicalBytes: (i + 1) * 1000,
        },
      };
      await server.store.write((tx) => recordSample(tx, migrationId, p, new Date(t0 + i * 1000)));
    }
  });
  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("returns the samples oldest first with the spacing", async () => {
    const res = await get(`/v1/migrations/${migrationId}/samples`, admin());
    expect(res.status).toBe(200);
    expect(res.body.sampleEveryMs).toBe(1000);
    expect(res.body.samples.map((s) => [s.at, s.memoryLogicalBytes, s.memoryWireBytes])).toEqual([
      ["2026-12-01T10:00:00.000Z", 1000, 100],
      ["2026-12-01T10:00:01.000Z", 2000, 200],
      ["2026-12-01T10:00:02.000Z", 3000, 300],
    ]);
  });

  it("lets a viewer read it, like the migration itself", async () => {
    const created = await fetchTls(`${server.url}/v1/users`, {
      method: "POST",
      headers: { ...admin(), "content-type": "application/json" },
      body: JSON.stringify({ username: "vera", role: "viewer", password: "vera's long passphrase" }),
    });
    expect(created.status).toBe(201);
    const login = await fetchTls(`${server.url}/v1/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: "vera", password: "vera's long passphrase" }),
    });
    expect(login.status).toBe(200);
    const cookie = login.headers.getSetCookie()[0]!.split(";")[0]!;
    const res = await get(`/v1/migrations/${migrationId}/samples`, { cookie });
    expect(res.status).toBe(200);
    expect(res.body.samples).toHaveLength(3);
  });

  it("refuses a call without credentials and answers NOVA_NOT_FOUND for an unknown migration", async () => {
    const anon = await get(`/v1/migrations/${migrationId}/samples`, {});
    expect(anon.status).toBe(401);
    const unknown = await get("/v1/migrations/00000000-0000-4000-8000-000000000000/samples", admin());
    expect(unknown.status).toBe(404);
    expect(unknown.body.error?.code).toBe("NOVA_NOT_FOUND");
  });
});
