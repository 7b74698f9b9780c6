// GET /v1/alerts and the runbooks against real servers over TLS (PGlite): a server without
// --prometheus-url says so; one whose Prometheus does not answer fails with
// NOVA_ALERTS_UNAVAILABLE naming it; a plain-http URL to a non-loopback address is refused
// before the server starts; the runbooks served are docs/runbooks/, byte for byte.
// test/alerts.slow.test.ts runs a real Prometheus on NovaCron's rules.
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AlertsResponse, Runbook } from "../src/api/types/alerts.js";
import { NovaError } from "../src/lib/errors.js";
import { type ClusterFetch, clusterFetch } from "../src/security/tls-client.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";

// Each server's federation listener takes the port after its API's.
const PORT = 18664;
const PROM_SERVER_PORT = 18666;
const BAD_SERVER_PORT = 18668;
const DEAD_PROMETHEUS = "http://127.0.0.1:18670";
const RUNBOOKS = path.resolve(import.meta.dirname, "..", "docs", "runbooks");

async function start(dir: string, port: number, prometheus?: string): Promise<RunningServer> {
  return startServer({
    dataDir: dir,
    port,
    execWorkers: false,
    logger: pino({ level: "silent" }),
    ...(prometheus ? { prometheus: { url: prometheus } } : {}),
  });
}

describe("alerts and runbooks over the API", () => {
  let dir: string;
  let plain: RunningServer;
  let withProm: RunningServer;
  let call: ClusterFetch;

  const get = async <T>(
    server: RunningServer,
    route: string,
    token: string | null = server.created.admin!,
  ) => {
    const res = await call(`${server.url}${route}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    return {
      status: res.status,
      body: (await res.json()) as T & { error?: { code: string; message: string } },
    };
  };

  beforeAll(async () => {
    dir = await mkdtemp("/tmp/nc-alerts-api-");
    plain = await start(path.join(dir, "plain"), PORT);
    withProm = await start(path.join(dir, "prom"), PROM_SERVER_PORT, DEAD_PROMETHEUS);
    call = clusterFetch({ caPem: plain.caPem }, { role: "server" });
  });
  afterAll(async () => {
    await plain?.close();
    await withProm?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("says no Prometheus is configured, and needs a credential", async () => {
    const res = await get<AlertsResponse>(plain, "/v1/alerts");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ configured: false, alerts: [] });
    expect((await get(plain, "/v1/alerts", null)).status).toBe(401);
    expect((await get(plain, "/v1/runbooks", null)).status).toBe(401);
  });

  it("fails with NOVA_ALERTS_UNAVAILABLE when its Prometheus does not answer", async () => {
    const call2 = clusterFetch({ caPem: withProm.caPem }, { role: "server" });
    const res = await call2(`${withProm.url}/v1/alerts`, {
      headers: { authorization: `Bearer ${withProm.created.admin}` },
    });
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("NOVA_ALERTS_UNAVAILABLE");
    expect(body.error.message).toContain(`Prometheus at ${DEAD_PROMETHEUS}`);
    expect(body.error.message).toContain("ECONNREFUSED");
  });

  it("refuses plain http to a non-loopback Prometheus before starting", async () => {
    const err = await start(path.join(dir, "bad"), BAD_SERVER_PORT, "http://192.0.2.7:9090").catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NovaError);
    expect((err as NovaError).code).toBe("NOVA_CONFIG");
    expect((err as NovaError).message).toMatch(/plain http to a non-loopback address/);
  });

  it("serves docs/runbooks/ as they are, and 404s an unknown one", async () => {
    const files = (await readdir(RUNBOOKS)).filter((f) => f.endsWith(".md")).sort();
    expect(files.length).toBeGreaterThanOrEqual(8);
    const list = await get<{ runbooks: string[] }>(plain, "/v1/runbooks");
    expect(list.body.runbooks).toEqual(files.map((f) => f.replace(/\.md$/, "")));
    const one = await get<Runbook>(plain, "/v1/runbooks/NovaCronHostDown");
    expect(one.status).toBe(200);
    expect(one.body.markdown).toBe(await readFile(path.join(RUNBOOKS, "NovaCronHostDown.md"), "utf8"));
    const unknown = await get(plain, "/v1/runbooks/NoSuchAlert");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error?.code).toBe("NOVA_NOT_FOUND");
    expect((await get(plain, "/v1/runbooks/..%2F..%2Fpackage.json")).status).toBe(404);
  });
});
