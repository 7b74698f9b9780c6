// Alerts end to end with real parts: Debian's Prometheus scrapes a live server over mutual
// TLS with the scraper credentials `novacron metrics credentials` writes and evaluates
// NovaCron's own rules (deploy/prometheus/alerts.yml, with each rule's `for` cut to 0 so
// the suite need not wait minutes); the server reads them through --prometheus-url. An
// agent killed with SIGKILL makes its host dead, NovaCronHostDown fires in Prometheus,
// and the API, `novacron alert list` and the console's overview show it, with its runbook
// one click (or one command) away. Screenshot: test-artifacts/console/alerts.png.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AlertsResponse } from "../src/api/types/alerts.js";
import { waitFor } from "../src/lib/wait.js";
import { launchBrowser, type TestBrowser } from "../src/testing/browser.js";
import { ROOT, TestCluster } from "./helpers/cluster.js";

const SERVER_PORT = 18672; // its federation listener takes 18673
const AGENT_PORT = 18674;
const PROMETHEUS_PORT = 18676;
const AGENT = "alerts-a1";
const VIEWER = { username: "vic", password: "a viewer's long password" };
const ARTIFACTS = path.join(ROOT, "test-artifacts", "console");

/** NovaCron's rules with every `for:` cut to 0s: the same expressions, firing at once. */
async function rulesWithoutHold(): Promise<string> {
  const text = await readFile(path.join(ROOT, "deploy", "prometheus", "alerts.yml"), "utf8");
  const cut = text.replace(/^(\s+)for: \S+$/gm, "$1for: 0s");
  expect(cut).not.toMatch(/for: [1-9]/);
  return cut;
}

describe("alerts from a real Prometheus on NovaCron's rules", { timeout: 240_000 }, () => {
  let c: TestCluster;
  let dir: string;
  let prometheus: ChildProcess | undefined;
  const prometheusLog: string[] = [];
  let tb: TestBrowser | undefined;

  beforeAll(async () => {
    dir = await mkdtemp("/tmp/nc-alerts-");
    c = await TestCluster.create(SERVER_PORT, path.join(dir, "cluster"));
    await c.startServer([
      "--heartbeat-timeout",
      "3",
      "--prometheus-url",
      `http://127.0.0.1:${PROMETHEUS_PORT}`,
    ]);
    await c.startAgent(AGENT, AGENT_PORT, ["--memory", "1024", "--stop-grace", "5"]);
    const creds = path.join(dir, "prometheus-creds");
    const made = await c.cli(["metrics", "credentials", "--out", creds, "--name", "prom"]);
    expect(made.code, made.stderr).toBe(0);

    const promDir = path.join(dir, "prometheus");
    await mkdir(promDir, { recursive: true });
    await writeFile(path.join(promDir, "alerts.yml"), await rulesWithoutHold());
    await writeFile(
      path.join(promDir, "prometheus.yml"),
      [
        "global: { scrape_interval: 1s, evaluation_interval: 1s }",
        "rule_files: [alerts.yml]",
        "scrape_configs:",
        "  - job_name: novacron-server",
        "    scheme: https",
        "    tls_config:",
        `      ca_file: ${creds}/ca.pem`,
        `      cert_file: ${creds}/cert.pem`,
        `      key_file: ${creds}/key.pem`,
        `    static_configs: [{ targets: ["127.0.0.1:${SERVER_PORT}"] }]`,
        "",
      ].join("\n"),
    );
    prometheus = spawn(
      "prometheus",
      [
        `--config.file=${path.join(promDir, "prometheus.yml")}`,
        `--storage.tsdb.path=${path.join(promDir, "data")}`,
        `--web.listen-address=127.0.0.1:${PROMETHEUS_PORT}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    for (const s of [prometheus.stdout, prometheus.stderr])
      s?.on("data", (b: Buffer) => prometheusLog.push(...b.toString().split("\n").slice(0, 50)));
    // Ready and scraping the server: its target reports up.
    await waitFor(
      async () => {
        const res = await fetch(
          `http://127.0.0.1:${PROMETHEUS_PORT}/api/v1/query?query=${encodeURIComponent('up{job="novacron-server"}')}`,
        ).catch(() => undefined);
        if (!res?.ok) return false;
        const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
        return body.data.result[0]?.value[1] === "1";
      },
      { timeoutMs: 60_000, intervalMs: 500, what: "Prometheus to scrape the server" },
    );
  }, 180_000);

  afterAll(async () => {
    await tb?.close();
    prometheus?.kill("SIGTERM");
    await c?.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  it("shows no host-down alert while the host lives", async () => {
    const res = await c.api<AlertsResponse>("GET", "/v1/alerts");
    expect(res.status).toBe(200);
    expect(res.body.configured).toBe(true);
    expect(res.body.source).toBe(`http://127.0.0.1:${PROMETHEUS_PORT}`);
    expect(res.body.alerts.map((a) => a.name)).not.toContain("NovaCronHostDown");
  });

  it("fires NovaCronHostDown when an agent dies, in the API and the CLI, with its runbook", async () => {
    await c.stop(AGENT, "SIGKILL");
    const alert = await waitFor(
      async () => {
        const res = await c.api<AlertsResponse>("GET", "/v1/alerts");
        return res.body.alerts.find((a) => a.name === "NovaCronHostDown" && a.state === "firing");
      },
      { timeoutMs: 90_000, intervalMs: 1000, what: "NovaCronHostDown to fire" },
    );
    expect(alert.severity).toBe("critical");
    expect(alert.summary).toBe("1 NovaCron host(s) down");
    expect(alert.runbook).toBe("docs/runbooks/NovaCronHostDown.md");
    expect(alert.runbookName).toBe("NovaCronHostDown");

    const table = await c.cli(["alert", "list"]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/NovaCronHostDown\s+firing\s+critical/);
    expect(table.stdout).toContain("novacron alert runbook NovaCronHostDown");
    const json = await c.cli(["alert", "list", "--json"]);
    expect(
      (JSON.parse(json.stdout) as AlertsResponse).alerts.some((a) => a.name === "NovaCronHostDown"),
    ).toBe(true);
    const book = await c.cli(["alert", "runbook", "NovaCronHostDown"]);
    expect(book.code).toBe(0);
    expect(book.stdout).toBe(
      await readFile(path.join(ROOT, "docs", "runbooks", "NovaCronHostDown.md"), "utf8"),
    );
    const unknown = await c.cli(["alert", "runbook", "NoSuchAlert"]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain("No runbook named");
  });

  it("shows the firing alert on the console's overview and opens its runbook", async () => {
    const made = await c.api("POST", "/v1/users", { ...VIEWER, role: "viewer" });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    tb = await launchBrowser({ caFile: c.caFile, home: path.join(dir, "chrome-home") });
    const page: Page = await tb.browser.newPage({ viewport: { width: 1280, height: 720 } });
    page.setDefaultTimeout(30_000);
    await page.goto(`${c.serverUrl}/`);
    await page.getByLabel("Username").fill(VIEWER.username);
    await page.getByLabel("Password").fill(VIEWER.password);
    await page.getByRole("button", { name: "Log in" }).click();
    const card = page.getByTestId("alerts");
    await card.getByText("NovaCronHostDown", { exact: true }).waitFor();
    expect(await card.getByRole("heading").textContent()).toMatch(/Alerts firing: [1-9]/);
    expect(await card.textContent()).toContain("1 NovaCron host(s) down");
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "alerts.png"), fullPage: true });
    await card.getByRole("link", { name: "Runbook" }).first().click();
    await page.getByRole("heading", { name: "Runbook: NovaCronHostDown" }).waitFor();
    expect(await page.getByRole("article").textContent()).toContain("NovaCronHostDown");
    await page.screenshot({ path: path.join(ARTIFACTS, "runbook.png"), fullPage: true });
  });
});
