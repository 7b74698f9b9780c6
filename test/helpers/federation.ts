/** Helpers of the federation suites: servers with a name, an admin API client, waiting for a view. */
import { mkdtemp, readFile } from "node:fs/promises";
import pino from "pino";
import { expect } from "vitest";
import { clusterFetch } from "../../src/security/tls-client.js";
import { type RunningServer, type ServerOptions, startServer } from "../../src/server/server-process.js";
import { addHost, addImage, addVm } from "./store-fixtures.js";

/** A server of a test federation, with an API client. */
export interface TestCluster {
  name: string;
  dir: string;
  server: RunningServer;
  api<T = Record<string, unknown>>(
    method: string,
    route: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }>;
  /** The server's /metrics text, read with the admin token. */
  metrics(): Promise<string>;
}

/** Starts (or restarts, with the same `dir`) a server named `name` on PGlite, listening on loopback. */
export async function startCluster(
  name: string,
  opts: { dir?: string; extra?: Partial<ServerOptions> } = {},
): Promise<TestCluster> {
  const dir = opts.dir ?? (await mkdtemp(`/tmp/nc-fed-${name}-`));
  const server = await startServer({
    dataDir: dir,
    port: 0,
    clusterName: name,
    federationHeartbeatMs: 500,
    federationStaleAfterMs: 2000,
    execWorkers: false,
    logger: pino({ level: process.env.NOVACRON_TEST_LOG ?? "silent" }),
    ...opts.extra,
  });
  const admin = (await readFile(`${dir}/admin.token`, "utf8")).trim();
  const fetch = clusterFetch({ caPem: server.caPem }, { role: "server" });
  return {
    name,
    dir,
    server,
    async api(method, route, body) {
      const res = await fetch(`${server.url}${route}`, {
        method,
        headers: {
          authorization: `Bearer ${admin}`,
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : null,
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : {}) as never };
    },
    async metrics() {
      const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } });
      if (res.status !== 200) throw new Error(`/metrics: HTTP ${res.status}`);
      return res.text();
    },
  };
}

/** Makes a token on `a` and redeems it on `b`; the two are then peers. */
export async function peer(a: TestCluster, b: TestCluster): Promise<void> {
  const t = await a.api<{ token: string }>("POST", "/v1/federation/tokens", {});
  expect(t.status).toBe(201);
  const added = await b.api("POST", "/v1/federation/peers", { token: t.body.token });
  expect(added.status, JSON.stringify(added.body)).toBe(201);
}

/** Polls `check` every 50 ms until it returns true, failing after `ms`. */
export async function until(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** VM names `c` sees in the global view, as `cluster/name`. */
export async function globalVms(c: TestCluster): Promise<string[]> {
  const r = await c.api<{ vms: { name: string; cluster: { name: string } }[] }>("GET", "/v1/federation/vms");
  return r.body.vms.map((v) => `${v.cluster.name}/${v.name}`).sort();
}

/** Adds VM `name` on a new host `host` in `c`'s database (its image, made if missing) and publishes it. */
export async function publishVm(c: TestCluster, name: string, host: string): Promise<void> {
  const db = c.server.store.db;
  const h = await addHost(db, host);
  const image = (await db.query<{ id: string }>("SELECT id FROM images LIMIT 1")).rows[0]?.id;
  await addVm(db, name, image ?? (await addImage(db, "img")), h);
  await c.server.federation.publishNow();
}
