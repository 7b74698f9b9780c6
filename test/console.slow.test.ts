// The web console in Debian's Chromium (playwright-core, headless, the cluster CA trusted
// as a root in the browser's own NSS database) against a real server, two agents and a
// TCG guest: log in, the overview, a VM created from the form becoming running, a live
// migration to the other host with the progress bar moving and the migration completing,
// a refused create showing the server's explanation, tokens and an approved execution
// with its log live, and no horizontal overflow at 1280×720 or 390×844. Screenshots of
// every page go to test-artifacts/console/.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { launchBrowser, type TestBrowser } from "../src/testing/browser.js";
import { guestImageManifest, ROOT, TestCluster } from "./helpers/cluster.js";

const SERVER_PORT = 18510;
const AGENT_PORTS = { c1: 18511, c2: 18512 };
const AGENT_FLAGS = ["--memory", "2048", "--stop-grace", "20"];
// A guest that writes and checks a pattern and keeps dirtying memory, so the migration
// has real pages to carry (capped below, so the bar has time to move).
const WORKLOAD =
  "nc.pattern_seed=5 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2 nc.dirty_mb=16 nc.dirty_rate_mbps=2";
const ARTIFACTS = path.join(ROOT, "test-artifacts", "console");
const VIEWPORTS = [
  { width: 1280, height: 720 },
  { width: 390, height: 844 },
];

describe("the web console in Chromium", { timeout: 300_000 }, () => {
  let c: TestCluster;
  let tb: TestBrowser;
  let page: Page;
  let base: string;
  let dir: string | undefined;

  beforeAll(async () => {
    const manifest = await guestImageManifest();
    await mkdir("/tmp/wt-console", { recursive: true });
    dir = await mkdtemp("/tmp/wt-console/console-suite-");
    c = await TestCluster.create(SERVER_PORT, path.join(dir, "cluster"));
    await c.startServer(["--heartbeat-timeout", "6"]);
    await c.startAgent("c1", AGENT_PORTS.c1, AGENT_FLAGS);
    await c.startAgent("c2", AGENT_PORTS.c2, AGENT_FLAGS);
    const res = await c.cli(["image", "import", "guest", "--manifest", manifest]);
    expect(res.code, res.stderr).toBe(0);
    await mkdir(ARTIFACTS, { recursive: true });
    tb = await launchBrowser({ caFile: c.caFile, home: path.join(dir, "chrome-home") });
    page = await tb.browser.newPage({ viewport: VIEWPORTS[0]! });
    base = c.serverUrl;
  }, 240_000);

  afterAll(async () => {
    await tb?.close();
    await c?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const shot = (name: string) =>
    page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  const state = (region: string) => page.getByRole("heading", { name: region }).locator(".badge");

  it("refuses a wrong token with the server's message, then logs in with the keyboard", async () => {
    await page.goto(`${base}/`);
    await page.getByLabel("API token").fill("not-a-token");
    await page.getByLabel("API token").press("Enter");
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/Unknown or revoked token/);
    await shot("login-refused");
    await page.getByLabel("API token").fill(c.adminToken);
    await page.getByLabel("API token").press("Enter");
    await page.getByRole("heading", { name: "Overview" }).waitFor();
    // The first Tab lands on the skip link: the page is usable from the keyboard.
    await page.keyboard.press("Tab");
    expect(await page.evaluate("document.activeElement?.textContent")).toBe("Skip to content");
  });

  it("shows the overview: both hosts, no VM yet, the live stream connected", async () => {
    await expect.poll(() => page.locator("#ov-hosts + .big").textContent()).toBe("2");
    expect(await page.locator("#ov-vms + .big").textContent()).toBe("0");
    await page.getByRole("status", { name: "Live updates: live" }).waitFor();
    await shot("overview");
  });

  it("cordons and uncordons a host from its row", async () => {
    await page.getByRole("link", { name: "Hosts", exact: true }).first().click();
    await page.getByRole("button", { name: "Cordon c1" }).click();
    await page.getByRole("button", { name: "Uncordon c1" }).waitFor();
    expect((await c.api<{ cordoned: boolean }>("GET", "/v1/hosts/c1")).body.cordoned).toBe(true);
    await shot("hosts-cordoned");
    await page.getByRole("button", { name: "Uncordon c1" }).click();
    await page.getByRole("button", { name: "Cordon c1" }).waitFor();
    expect((await c.api<{ cordoned: boolean }>("GET", "/v1/hosts/c1")).body.cordoned).toBe(false);
  });

  it("creates a VM from the form and shows it becoming running, its console live", async () => {
    await page.getByRole("link", { name: "VMs", exact: true }).first().click();
    await page.getByText("Create a VM").click();
    await page.getByLabel("Name", { exact: true }).fill("web-1");
    await page.getByLabel("Size").selectOption("small");
    await page.getByLabel("Kernel arguments (optional)").fill(WORKLOAD);
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { name: "VM web-1" }).waitFor();
    // No reload: the state moves through the event stream.
    await state("State").filter({ hasText: "running" }).waitFor({ timeout: 120_000 });
    await expect
      .poll(() => page.getByTestId("vm-console").textContent(), { timeout: 120_000 })
      .toMatch(/NC-VERIFY PASS seed=5/);
    await shot("vm-running");
  });

  it("live-migrates the VM to the other host with a moving progress bar, then shows the downtime", async () => {
    const from = (await page.getByTestId("vm-host").textContent())!;
    const to = from === "c1" ? "c2" : "c1";
    await page.getByLabel("Target host").selectOption(to);
    await page.getByLabel("Transport").selectOption("qemu");
    await page.getByLabel("Bandwidth limit (MiB/s)").fill("4");
    await page.getByRole("button", { name: "Migrate", exact: true }).click();
    const bar = page.getByRole("progressbar", { name: "Migration of web-1" });
    // Every value the bar showed until the migration completed, sampled as it ran.
    const seen = new Set<number>();
    await waitFor(
      async () => {
        if ((await bar.count()) === 0) return false;
        seen.add(Number(await bar.first().getAttribute("aria-valuenow")));
        return page
          .getByRole("heading", { name: /web-1: c\d → c\d/ })
          .getByText("completed")
          .isVisible();
      },
      { timeoutMs: 240_000, intervalMs: 100, what: "the migration to complete in the console" },
    );
    const during = [...seen].filter((v) => v > 0 && v < 100);
    expect(during.length, `progress values seen: ${[...seen].join(", ")}`).toBeGreaterThanOrEqual(2);
    expect(await bar.first().getAttribute("aria-valuenow")).toBe("100");
    await expect.poll(() => page.getByTestId("vm-host").textContent(), { timeout: 30_000 }).toBe(to);
    await page.getByText("Downtime: stopping vCPUs").waitFor();
    await shot("vm-migrated");
    const api = await c.api<{ migrations: { id: string; state: string; targetHost: string }[] }>(
      "GET",
      "/v1/vms/web-1/migrations",
    );
    expect(api.body.migrations[0]).toMatchObject({ state: "completed", targetHost: to });

    // The migration's page draws the bytes it carried over time, from the samples received.
    await page.getByRole("link", { name: "Migrations", exact: true }).click();
    await page.getByRole("link", { name: "web-1" }).first().click();
    await page.getByRole("img", { name: /logical bytes .* over / }).waitFor();
    await shot("migration");
  });

  it("shows the server's explanation when no host can take a VM, and creates nothing", async () => {
    await page.getByRole("link", { name: "VMs", exact: true }).first().click();
    await page.getByText("Create a VM").click();
    await page.getByLabel("Name", { exact: true }).fill("too-big");
    await page.getByLabel("Size").selectOption("custom");
    await page.getByLabel("Memory (MiB)").fill("1000000");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await expect
      .poll(() => page.getByRole("alert").first().textContent())
      .toMatch(/No host can run VM too-big/);
    await shot("vm-refused");
    expect((await c.api("GET", "/v1/vms/too-big")).status).toBe(404);
  });

  it("makes a token that may approve its own work, and with it submits and approves an execution", async () => {
    await page.getByRole("link", { name: "Tokens", exact: true }).click();
    await page.getByLabel("Name", { exact: true }).fill("approver");
    await page.getByLabel("may approve its own executions").check();
    await page.getByRole("button", { name: "Create", exact: true }).click();
    const secret = await page.getByLabel("Secret").inputValue();
    expect(secret.length).toBeGreaterThan(20);
    await shot("tokens");
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByLabel("API token").fill(secret);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("link", { name: "Executions", exact: true }).click();
    await page.getByText("Submit a plan").click();
    await page.getByRole("button", { name: "Submit", exact: true }).click();
    await state("State").filter({ hasText: "pending_approval" }).waitFor();
    await page.getByRole("button", { name: "Approve" }).click();
    await state("State").filter({ hasText: "completed" }).waitFor({ timeout: 60_000 });
    // The log grew on the page as the run went, without a reload.
    await expect
      .poll(() => page.locator("#x-logs + pre").textContent())
      .toMatch(/completed: all 1 steps done/);
    await shot("execution");
  });

  it("shows a refused plan's message, and requeues a dead execution from the DLQ", async () => {
    await page.getByRole("link", { name: "Executions", exact: true }).click();
    await page.getByText("Submit a plan").click();
    const plan = (vm: string) =>
      JSON.stringify({ name: `start ${vm}`, approval: "required", steps: [{ kind: "vm.start", vm }] });
    await page.getByLabel(/^Plan/).fill(plan("no-such-vm"));
    await page.getByRole("button", { name: "Submit", exact: true }).click();
    await expect.poll(() => page.getByRole("alert").first().textContent()).toMatch(/VM no-such-vm not found/);
    // A plan whose VM is gone by the time it runs: its step fails for good, into the DLQ.
    const created = await c.api("POST", "/v1/vms", {
      name: "doomed",
      image: "guest",
      memoryMiB: 256,
      start: false,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await page.getByLabel(/^Plan/).fill(plan("doomed"));
    await page.getByRole("button", { name: "Submit", exact: true }).click();
    await state("State").filter({ hasText: "pending_approval" }).waitFor();
    expect((await c.api("DELETE", "/v1/vms/doomed")).status).toBe(202);
    await waitFor(async () => (await c.api("GET", "/v1/vms/doomed")).status === 404, {
      timeoutMs: 60_000,
      what: "doomed to be gone",
    });
    await page.getByRole("button", { name: "Approve" }).click();
    await state("State").filter({ hasText: "failed" }).waitFor({ timeout: 60_000 });
    await page.getByRole("link", { name: "← All executions" }).click();
    const requeue = page.getByRole("button", { name: /^Requeue job \d+$/ });
    await requeue.waitFor();
    const dlq = await c.api<{ entries: { jobId: number; executionId: string }[] }>("GET", "/v1/dlq");
    const jobId = Number((await requeue.getAttribute("aria-label"))!.replace(/\D/g, ""));
    const executionId = dlq.body.entries.find((d) => d.jobId === jobId)!.executionId;
    await shot("executions-dlq");
    await requeue.click();
    // Requeued, the execution runs again (and fails again, the VM still gone): its step's second attempt.
    await waitFor(
      async () => {
        const x = await c.api<{ steps: { attempts: number }[] }>("GET", `/v1/executions/${executionId}`);
        return (x.body.steps[0]?.attempts ?? 0) >= 2;
      },
      { timeoutMs: 60_000, what: "the requeued execution to run its step again" },
    );
    expect(await page.getByRole("alert").count()).toBe(0);
  });

  it("keeps every page within the screen's width at 1280×720 and at 390×844", async () => {
    const paths = ["/", "/hosts", "/vms", "/vms/web-1", "/migrations", "/executions", "/tokens"];
    const overflows: string[] = [];
    for (const vp of VIEWPORTS) {
      await page.setViewportSize(vp);
      for (const p of paths) {
        await page.goto(`${base}${p}`);
        await page.locator("main h1").first().waitFor();
        // Loaded: the page's data replaced its loading line (the event stream never idles).
        await page.locator("main").getByText("Loading…").waitFor({ state: "detached" });
        const [scroll, inner] = (await page.evaluate(
          "[document.documentElement.scrollWidth, window.innerWidth]",
        )) as [number, number];
        if (scroll > inner) overflows.push(`${p} at ${vp.width}px: ${scroll} > ${inner}`);
        await shot(`${p === "/" ? "overview" : p.slice(1).replaceAll("/", "-")}-${vp.width}`);
      }
    }
    expect(overflows).toEqual([]);
  });

  it("deletes the VM from its page", async () => {
    await page.goto(`${base}/vms/web-1`);
    await page.getByRole("button", { name: "Delete…" }).click();
    await page.getByRole("button", { name: "Really delete web-1" }).click();
    await page.getByRole("heading", { name: "VMs", exact: true }).waitFor();
    await waitFor(async () => (await c.api("GET", "/v1/vms/web-1")).status === 404, {
      timeoutMs: 60_000,
      what: "web-1 to be gone",
    });
  });

  it("ends the login when its token is revoked elsewhere, and says why", async () => {
    await page.goto(`${base}/`);
    await page.getByRole("status", { name: "Live updates: live" }).waitFor();
    const tokens = await c.api<{ tokens: { id: string; name: string; revokedAt: string | null }[] }>(
      "GET",
      "/v1/tokens",
    );
    const approver = tokens.body.tokens.find((t) => t.name === "approver" && !t.revokedAt)!;
    expect((await c.api("DELETE", `/v1/tokens/${approver.id}`)).status).toBe(204);
    // The revocation ends the event stream at once; reconnecting is refused, so the login ends.
    await page.getByLabel("API token").waitFor({ timeout: 30_000 });
    expect(await page.locator(".notice").textContent()).toMatch(/Unknown or revoked token/);
    await shot("login-after-revocation");
  });
});
