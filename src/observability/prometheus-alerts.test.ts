import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { NovaError } from "../lib/errors.js";
import { PrometheusAlerts, parseAlerts, parsePrometheusUrl } from "./prometheus-alerts.js";

const firing = (name: string, severity?: string) => ({
  labels: { alertname: name, ...(severity ? { severity } : {}) },
  annotations: { summary: `${name} summary`, runbook_url: `docs/runbooks/${name}.md` },
  state: "firing",
  activeAt: "2026-12-06T10:00:00Z",
  value: "1e+00",
});

describe("parseAlerts", () => {
  it("keeps firing and pending alerts, firing first, then by severity and name", () => {
    const text = JSON.stringify({
      status: "success",
      data: {
        alerts: [
          { ...firing("B", "warning"), state: "pending" },
          firing("Z", "warning"),
          firing("A", "critical"),
          firing("C"),
          { ...firing("Gone", "critical"), state: "inactive" },
          { labels: { severity: "critical" }, state: "firing" },
        ],
      },
    });
    const alerts = parseAlerts(text);
    expect(Array.isArray(alerts)).toBe(true);
    expect((alerts as { name: string; state: string }[]).map((a) => `${a.name}:${a.state}`)).toEqual([
      "A:firing",
      "Z:firing",
      "C:firing",
      "B:pending",
    ]);
    expect((alerts as { runbook?: string }[])[0]?.runbook).toBe("docs/runbooks/A.md");
  });

  it("says what is wrong with an answer that is not an alerts list", () => {
    expect(parseAlerts("<html>")).toBe("its answer is not JSON");
    expect(parseAlerts(JSON.stringify({ status: "error" }))).toMatch(/not a Prometheus alerts list/);
  });

  it("cuts overlong annotations and drops non-string ones", () => {
    const a = firing("Long");
    const alerts = parseAlerts(
      JSON.stringify({
        status: "success",
        data: { alerts: [{ ...a, annotations: { description: "x".repeat(5000), summary: 12 } }] },
      }),
    ) as { description?: string; summary?: string }[];
    expect(alerts[0]?.description?.length).toBe(2001);
    expect(alerts[0]?.summary).toBeUndefined();
  });
});

describe("parsePrometheusUrl", () => {
  it("accepts https anywhere and http on loopback only", () => {
    expect(parsePrometheusUrl("https://prom.example:9090").host).toBe("prom.example:9090");
    expect(parsePrometheusUrl("http://127.0.0.1:9090").port).toBe("9090");
    expect(parsePrometheusUrl("http://localhost:9090/prom/").pathname).toBe("/prom/");
    expect(() => parsePrometheusUrl("http://10.0.0.5:9090")).toThrow(/plain http to a non-loopback/);
    expect(() => parsePrometheusUrl("ftp://x")).toThrow(/http or https/);
    expect(() => parsePrometheusUrl("not a url")).toThrow(/not a URL/);
    expect(() => parsePrometheusUrl("https://p:9090/?x=1")).toThrow(/without a query/);
  });
});

describe("PrometheusAlerts against an HTTP server", () => {
  let server: Server | undefined;
  let reader: PrometheusAlerts | undefined;
  afterEach(async () => {
    await reader?.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    server = undefined;
    reader = undefined;
  });

  async function serve(handler: (req: IncomingMessage) => { status: number; body: string } | "hang") {
    const requests: IncomingMessage[] = [];
    server = createServer((req, res) => {
      requests.push(req);
      const out = handler(req);
      if (out === "hang") return;
      res.writeHead(out.status, { "content-type": "application/json" });
      res.end(out.body);
    });
    await new Promise<void>((r) => server?.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as AddressInfo).port;
    return { requests, url: `http://127.0.0.1:${port}` };
  }

  it("reads /api/v1/alerts, caches the answer, and sends URL credentials as basic auth", async () => {
    const ok = JSON.stringify({
      status: "success",
      data: { alerts: [firing("NovaCronHostDown", "critical")] },
    });
    const { requests, url } = await serve(() => ({ status: 200, body: ok }));
    let now = 1_000_000;
    reader = new PrometheusAlerts({ url: url.replace("http://", "http://alice:s%40cret@"), now: () => now });
    const first = await reader.read();
    expect(first.configured).toBe(true);
    expect(first.source).toBe(url);
    expect(first.alerts.map((a) => a.name)).toEqual(["NovaCronHostDown"]);
    expect(requests[0]?.url).toBe("/api/v1/alerts");
    expect(requests[0]?.headers.authorization).toBe(
      `Basic ${Buffer.from("alice:s@cret").toString("base64")}`,
    );
    now += 1000;
    await reader.read();
    expect(requests).toHaveLength(1);
    now += 5000;
    await reader.read();
    expect(requests).toHaveLength(2);
  });

  it("fails with NOVA_ALERTS_UNAVAILABLE on an error status, and does not cache the failure", async () => {
    let status = 503;
    const ok = JSON.stringify({ status: "success", data: { alerts: [] } });
    const { requests, url } = await serve(() => ({ status, body: status === 200 ? ok : "down" }));
    reader = new PrometheusAlerts({ url });
    const err = await reader.read().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NovaError);
    expect((err as NovaError).code).toBe("NOVA_ALERTS_UNAVAILABLE");
    expect((err as NovaError).message).toMatch(/HTTP 503/);
    status = 200;
    expect((await reader.read()).alerts).toEqual([]);
    expect(requests).toHaveLength(2);
  });

  it("gives up on a Prometheus that does not answer, and on an oversized answer", async () => {
    const { url } = await serve(() => "hang");
    reader = new PrometheusAlerts({ url, timeoutMs: 200 });
    await expect(reader.read()).rejects.toThrow(/no answer in time/);
    await reader.close();
    await new Promise<void>((r) => server?.close(() => r()) ?? r());
    server?.closeAllConnections();

    const big = await serve(() => ({ status: 200, body: " ".repeat(5 * 1024 * 1024) }));
    reader = new PrometheusAlerts({ url: big.url });
    await expect(reader.read()).rejects.toThrow(/larger than the 4194304 bytes/);
  });

  it("names the refused connection", async () => {
    const { url } = await serve(() => ({ status: 200, body: "{}" }));
    await new Promise<void>((r) => server?.close(() => r()));
    server = undefined;
    reader = new PrometheusAlerts({ url });
    await expect(reader.read()).rejects.toThrow(/ECONNREFUSED/);
  });
});
