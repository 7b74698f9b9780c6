// The web console served by a real server over TLS (PGlite): files from a console build
// (a small fixture with the .br/.gz twins the build writes), compressed as the client
// accepts, hashed assets cached for a year, index.html for the console's own paths, the
// security headers on every answer, and the API's paths and 404s untouched.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { brotliCompressSync, gzipSync } from "node:zlib";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONSOLE_CSP } from "../src/api/routes/console.js";
import { buildExecConfig } from "../src/exec/config.js";
import { clusterFetch } from "../src/security/tls-client.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";

const INDEX =
  '<!doctype html><html><head><script type="module" src="/assets/app-abc123.js"></script></head><body><div id="root"></div></body></html>';
const SCRIPT = `console.log(${JSON.stringify("x".repeat(4000))});`;

let dir: string;
let server: RunningServer;
let get: (route: string, headers?: Record<string, string>) => Promise<Response>;

beforeAll(async () => {
  dir = await mkdtemp("/tmp/nc-console-serving-");
  const ui = path.join(dir, "ui");
  await mkdir(path.join(ui, "assets"), { recursive: true });
  await writeFile(path.join(ui, "index.html"), INDEX);
  await writeFile(path.join(ui, "index.html.br"), brotliCompressSync(INDEX));
  await writeFile(path.join(ui, "assets", "app-abc123.js"), SCRIPT);
  await writeFile(path.join(ui, "assets", "app-abc123.js.br"), brotliCompressSync(SCRIPT));
  await writeFile(path.join(ui, "assets", "app-abc123.js.gz"), gzipSync(SCRIPT));
  server = await startServer({
    dataDir: path.join(dir, "server"),
    port: 0,
    execConfig: buildExecConfig({ flags: { workersMin: 1, workersMax: 1 } }),
    logger: pino({ level: "silent" }),
    federationPort: 0,
    consoleDir: ui,
  });
  const f = clusterFetch({ caPem: server.caPem }, { role: "server" });
  get = (route, headers = {}) => f(`${server.url}${route}`, { headers });
}, 60_000);

afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function expectSecurityHeaders(res: Response): void {
  expect(res.headers.get("content-security-policy")).toBe(CONSOLE_CSP);
  expect(CONSOLE_CSP).toContain("script-src 'self'");
  expect(CONSOLE_CSP).not.toContain("unsafe-inline");
  expect(CONSOLE_CSP).toContain("frame-ancestors 'none'");
  expect(res.headers.get("x-frame-options")).toBe("DENY");
  expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  expect(res.headers.get("referrer-policy")).toBe("no-referrer");
}

describe("the web console's files", () => {
  it("serves index.html at / without authentication, revalidated on every load", async () => {
    const res = await get("/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("cache-control")).toBe("no-cache");
    expect(await res.text()).toBe(INDEX);
    expectSecurityHeaders(res);
    const etag = res.headers.get("etag")!;
    const again = await get("/", { "if-none-match": etag });
    expect(again.status).toBe(304);
  });

  it("answers the console's own paths with index.html, so its routing survives a reload", async () => {
    for (const route of ["/vms", "/vms/web-1", "/migrations/0b3c?x=1"]) {
      const res = await get(route);
      expect(res.status, route).toBe(200);
      expect(await res.text()).toBe(INDEX);
      expectSecurityHeaders(res);
    }
  });

  it("sends hashed assets pre-compressed as accepted and cached for a year", async () => {
    const br = await get("/assets/app-abc123.js", { "accept-encoding": "gzip, br" });
    expect(br.headers.get("content-encoding")).toBe("br");
    expect(br.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(br.headers.get("vary")).toBe("accept-encoding");
    expect(br.headers.get("content-type")).toMatch(/^text\/javascript/);
    expectSecurityHeaders(br);
    // fetch decodes what it asked for; the raw length shows what crossed the wire.
    expect(Number(br.headers.get("content-length"))).toBeLessThan(SCRIPT.length / 10);
    expect(await br.text()).toBe(SCRIPT);
    const gz = await get("/assets/app-abc123.js", { "accept-encoding": "gzip" });
    expect(gz.headers.get("content-encoding")).toBe("gzip");
    expect(await gz.text()).toBe(SCRIPT);
    const none = await get("/assets/app-abc123.js", { "accept-encoding": "identity, br;q=0" });
    expect(none.headers.get("content-encoding")).toBeNull();
    expect(Number(none.headers.get("content-length"))).toBe(SCRIPT.length);
  });

  it("leaves the API alone: its 404s, its authentication, /metrics and /healthz", async () => {
    for (const route of ["/v1/nothing-here", "/v1", "/assets/missing-123.js", "/agent/v1/x"]) {
      const res = await get(route);
      expect(res.status, route).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code, route).toBe("NOVA_NOT_FOUND");
    }
    // The router's own refusals stay: a path parameter over its limit is 414, not the console.
    const long = await get(`/v1/vms/${"a".repeat(129)}`);
    expect(long.status).toBe(414);
    const post = await clusterFetch({ caPem: server.caPem }, { role: "server" })(`${server.url}/vms`, {
      method: "POST",
    });
    expect(post.status).toBe(404);
    const vms = await get("/v1/vms");
    expect(vms.status).toBe(401);
    expect((await get("/healthz")).status).toBe(200);
    // /metrics is the API's: it asks for credentials (docs/metrics.md), the console does not answer it.
    const metrics = await get("/metrics");
    expect(metrics.status).toBe(401);
    const scraped = await clusterFetch({ caPem: server.caPem }, { role: "server" })(`${server.url}/metrics`, {
      headers: { authorization: `Bearer ${server.created.admin}` },
    });
    expect(scraped.status).toBe(200);
    expect(scraped.headers.get("content-type")).toMatch(/^text\/plain/);
  });

  it("never reads a path outside the console's files", async () => {
    for (const route of [
      "/../server/admin.token",
      "/%2e%2e/server/admin.token",
      "/assets/..%2f..%2fserver%2fadmin.token",
    ]) {
      const res = await get(route);
      const text = await res.text();
      expect(text, route).not.toContain(server.created.admin ?? "no admin token");
    }
  });
});
