// The web console in Debian's Chromium (playwright-core, headless, the cluster CA trusted
// as a root in the browser's own NSS database) against a real server, two agents and a
// TCG guest, logged in as users with the session cookie: an admin made with the admin
// token enrols TOTP on the Account page and logs in with password and code (a wrong
// password and a wrong code each refused on the page); the overview, a host drained from
// its row with the keyboard after a confirm, a VM created from the form becoming running,
// a live migration to the other host with the progress bar moving and the migration
// completing, the VM's host drained with the move shown live and the report, a refused
// create showing the server's explanation; users made on the Users page; an execution the
// admin may not approve (it submitted it) approved by an operator in another browser; a
// viewer's refused action; a request without the CSRF header refused; a login ended by a
// password reset, by logging out, and by the idle timeout, each back on the login page
// with the reason; no horizontal overflow at 1280×720 or 390×844. Screenshots of every
// page go to test-artifacts/console/.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import * as OTPAuth from "otpauth";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { launchBrowser, type TestBrowser } from "../src/testing/browser.js";
import { guestImageManifest, ROOT, TestCluster } from "./helpers/cluster.js";

const SERVER_PORT = 18560;
const AGENT_PORTS = { c1: 18561, c2: 18562 };
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
const ADMIN = { username: "ada", password: "correct horse battery staple" };

/**
 * An authenticator app for one secret that never offers a time step's code twice: the
 * server accepts a step once (and none before it), so a second login within 30 s uses the
 * next step's code, which the server accepts one step early (its ±1 step window), and one
 * beyond that waits for the clock to reach it.
 */
class Authenticator {
  private lastStep = -1;
  private readonly totp: OTPAuth.TOTP;
  constructor(secret: string) {
    this.totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), digits: 6, period: 30 });
  }
  private static now(): number {
    return Math.floor(Date.now() / 30_000);
  }
  async code(): Promise<string> {
    const step = Math.max(Authenticator.now(), this.lastStep + 1);
    await waitFor(() => Authenticator.now() >= step - 1, { timeoutMs: 61_000, what: "the next TOTP step" });
    this.lastStep = step;
    return this.totp.generate({ timestamp: step * 30_000 });
  }
}

describe("the web console in Chromium", { timeout: 300_000 }, () => {
  let c: TestCluster;
  let tb: TestBrowser;
  let page: Page;
  let base: string;
  let dir: string | undefined;
  let authenticator: Authenticator;
  const others: BrowserContext[] = [];

  beforeAll(async () => {
    const manifest = await guestImageManifest();
    await mkdir("/tmp/nc-console-session", { recursive: true });
    // Short: a QMP socket path under it must fit in 107 bytes.
    dir = await mkdtemp("/tmp/nc-console-session/s-");
    c = await TestCluster.create(SERVER_PORT, path.join(dir, "cluster"));
    await c.startServer(["--heartbeat-timeout", "6"]);
    await c.startAgent("c1", AGENT_PORTS.c1, AGENT_FLAGS);
    await c.startAgent("c2", AGENT_PORTS.c2, AGENT_FLAGS);
    const res = await c.cli(["image", "import", "guest", "--manifest", manifest]);
    expect(res.code, res.stderr).toBe(0);
    // The first admin user, made with the server's admin token as an operator would.
    const made = await c.api("POST", "/v1/users", { ...ADMIN, role: "admin" });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    await mkdir(ARTIFACTS, { recursive: true });
    tb = await launchBrowser({ caFile: c.caFile, home: path.join(dir, "chrome-home") });
    page = await tb.browser.newPage({ viewport: VIEWPORTS[0]! });
    page.setDefaultTimeout(30_000);
    base = c.serverUrl;
  }, 240_000);

  afterAll(async () => {
    for (const ctx of others) await ctx.close().catch(() => {});
    await tb?.close();
    await c?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const shot = (name: string) =>
    page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  const state = (region: string) => page.getByRole("heading", { name: region }).locator(".badge");
  const navLink = (p: Page, name: string) => p.getByRole("link", { name, exact: true }).first();

  /** Fills the login form; `code` when the account asks for a second factor. */
  async function logIn(p: Page, who: { username: string; password: string }, code?: () => Promise<string>) {
    await p.getByLabel("Username").fill(who.username);
    await p.getByLabel("Password").fill(who.password);
    await p.getByRole("button", { name: "Log in" }).click();
    if (code) {
      await p.getByLabel("Authenticator code").fill(await code());
      await p.getByRole("button", { name: "Log in" }).click();
    }
    // The console stays on the page it was on (a login that ended comes back to it).
    await p.getByRole("button", { name: "Log out" }).waitFor({ timeout: 30_000 });
  }

  /** A second browser (its own cookies) logged in as `who`. */
  async function otherBrowser(who: { username: string; password: string }): Promise<Page> {
    const ctx = await tb.browser.newContext({ viewport: VIEWPORTS[0]! });
    others.push(ctx);
    ctx.setDefaultTimeout(30_000);
    const p = await ctx.newPage();
    await p.goto(`${base}/`);
    await logIn(p, who);
    return p;
  }

  it("refuses a wrong password with the server's message, then logs in with the keyboard", async () => {
    await page.goto(`${base}/`);
    await page.getByLabel("Username").fill(ADMIN.username);
    await page.getByLabel("Password").fill("not the password");
    await page.getByLabel("Password").press("Enter");
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/Wrong username or password/);
    await shot("login-refused");
    await page.getByLabel("Password").fill(ADMIN.password);
    await page.getByLabel("Password").press("Enter");
    await page.getByRole("heading", { name: "Overview" }).waitFor();
    expect(await page.getByTestId("who").textContent()).toBe("ada (admin)");
    // The first Tab lands on the skip link: the page is usable from the keyboard.
    await page.keyboard.press("Tab");
    expect(await page.evaluate("document.activeElement?.textContent")).toBe("Skip to content");
  });

  it("enrols an authenticator on the Account page and shows the ten recovery codes once", async () => {
    await navLink(page, "Account").click();
    await page.getByRole("button", { name: "Set up an authenticator" }).click();
    const secret = await page.getByLabel("Secret").inputValue();
    expect(await page.getByLabel("otpauth URI").inputValue()).toMatch(/^otpauth:\/\/totp\/.*ada/);
    expect(await page.getByLabel("otpauth URI").inputValue()).toContain(`secret=${secret}`);
    authenticator = new Authenticator(secret);
    await page.getByLabel("Code from the app").fill("000000");
    await page.getByRole("button", { name: "Confirm" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/Wrong authentication code/);
    await page.getByLabel("Code from the app").fill(await authenticator.code());
    await page.getByRole("button", { name: "Confirm" }).click();
    await expect
      .poll(() => page.getByRole("list", { name: "Recovery codes" }).locator("li").count())
      .toBe(10);
    await expect.poll(() => page.getByTestId("acct-mfa").textContent()).toBe("on");
    await shot("account-mfa-on");
    expect((await c.api<{ mfa: string }>("GET", "/v1/users/ada")).body.mfa).toBe("on");
  });

  it("logs out, then logs in with password and TOTP; a wrong code is refused on the page", async () => {
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByLabel("Username").waitFor();
    expect((await page.context().cookies()).filter((k) => k.name === "__Host-novacron_session")).toEqual([]);
    await page.getByLabel("Username").fill(ADMIN.username);
    await page.getByLabel("Password").fill(ADMIN.password);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByLabel("Authenticator code").fill("000000");
    await page.getByRole("button", { name: "Log in" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/Wrong authentication code/);
    await shot("login-code-refused");
    await page.getByLabel("Authenticator code").fill(await authenticator.code());
    await page.getByRole("button", { name: "Log in" }).click();
    // Back on the page the login left from.
    await page.getByRole("heading", { name: "Account" }).waitFor({ timeout: 30_000 });
    // The session is an HttpOnly cookie: nothing of it is readable by the page, nothing stored.
    const [cookie] = (await page.context().cookies()).filter((k) => k.name === "__Host-novacron_session");
    expect(cookie).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict", path: "/" });
    expect(await page.evaluate("[document.cookie, sessionStorage.length, localStorage.length]")).toEqual([
      "",
      0,
      0,
    ]);
    // A reload restores the login from the cookie.
    await page.goto(`${base}/`);
    await page.getByRole("heading", { name: "Overview" }).waitFor({ timeout: 30_000 });
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

  it("drains a host from its row with the keyboard, after a confirm, and shows the report", async () => {
    // No VM runs yet: the drain only cordons c1 and ends drained at once.
    await page.getByRole("button", { name: "Drain c1…" }).focus();
    await page.keyboard.press("Enter");
    await page.getByRole("button", { name: "Keep it" }).click();
    expect((await c.api<{ drain: unknown }>("GET", "/v1/hosts/c1")).body.drain).toBeNull();
    await page.getByRole("button", { name: "Drain c1…" }).click();
    await page.getByRole("button", { name: "Really drain c1" }).focus();
    await page.keyboard.press("Enter");
    const report = page.getByRole("article", { name: /Drain of c1/ });
    await expect
      .poll(() => report.getByRole("heading").textContent(), { timeout: 30_000 })
      .toMatch(/drained/);
    expect(await report.textContent()).toContain("0 moved; c1 stays cordoned");
    expect(await report.textContent()).toContain("No VM was on the host.");
    const host = (await c.api<{ cordoned: boolean; drain: { state: string } }>("GET", "/v1/hosts/c1")).body;
    expect(host).toMatchObject({ cordoned: true, drain: { state: "drained" } });
    await shot("hosts-drained");
    await page.getByRole("button", { name: "Uncordon c1" }).click();
    await page.getByRole("button", { name: "Cordon c1" }).waitFor();
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

  it("drains web-1's host from the Hosts page, the move shown live, then the report", async () => {
    const from = (await c.api<{ host: string }>("GET", "/v1/vms/web-1")).body.host;
    const to = from === "c1" ? "c2" : "c1";
    await page.getByRole("link", { name: "Hosts", exact: true }).first().click();
    await page.getByRole("button", { name: `Drain ${from}…` }).click();
    await page.getByRole("button", { name: `Really drain ${from}` }).click();
    const report = page.getByRole("article", { name: new RegExp(`Drain of ${from}`) });
    const row = report.getByRole("row", { name: /web-1/ });
    // Every result the row showed until the drain ended, sampled as it ran (from the event stream).
    const seen = new Set<string>();
    await waitFor(
      async () => {
        if ((await row.count()) > 0) seen.add((await row.locator(".badge").first().textContent()) ?? "");
        return /drained/.test(
          (await report
            .getByRole("heading")
            .textContent()
            .catch(() => "")) ?? "",
        );
      },
      { timeoutMs: 240_000, intervalMs: 100, what: "the drain to end in the console" },
    );
    expect([...seen]).toContain("moving");
    await expect.poll(() => row.textContent()).toMatch(new RegExp(`web-1moved${to} ?moved to ${to}`));
    await page.getByRole("button", { name: `Cancel the drain of ${from}` }).waitFor({ state: "detached" });
    await shot("hosts-drain-report");
    expect((await c.api<{ host: string; state: string }>("GET", "/v1/vms/web-1")).body).toMatchObject({
      host: to,
      state: "running",
    });
    await page.getByRole("button", { name: `Uncordon ${from}` }).click();
    await page.getByRole("button", { name: `Cordon ${from}` }).waitFor();
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

  it("makes an API token on the Tokens page, its secret shown once", async () => {
    await navLink(page, "Tokens").click();
    await page.getByLabel("Name", { exact: true }).fill("script");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    expect((await page.getByLabel("Secret").inputValue()).length).toBeGreaterThan(20);
    await shot("tokens");
  });

  let oscar: { username: string; password: string };
  let vera: { username: string; password: string };

  it("creates users on the Users page, each one-time password shown, and changes a role", async () => {
    await navLink(page, "Users").click();
    const create = async (username: string, role: string) => {
      await page.getByLabel("Username").fill(username);
      await page.getByLabel("Role", { exact: true }).selectOption(role);
      await page.getByRole("button", { name: "Create", exact: true }).click();
      await page
        .getByRole("status")
        .filter({ hasText: `User ${username} made` })
        .waitFor();
      return { username, password: await page.getByLabel("One-time password").inputValue() };
    };
    oscar = await create("oscar", "operator");
    vera = await create("vera", "operator");
    expect(oscar.password.length).toBeGreaterThanOrEqual(12);
    await page.getByLabel("Role of vera").selectOption("viewer");
    await waitFor(
      async () => (await c.api<{ role: string }>("GET", "/v1/users/vera")).body.role === "viewer",
      {
        timeoutMs: 10_000,
        what: "vera to be a viewer",
      },
    );
    // The admin's row: MFA on, a last login.
    const row = page.getByRole("row").filter({ has: page.getByRole("rowheader", { name: "ada" }) });
    expect(await row.locator(".badge").textContent()).toBe("on");
    await shot("users");
  });

  it("refuses the admin's approval of its own execution on the page; an operator approves it", async () => {
    await navLink(page, "Executions").click();
    await page.getByText("Submit a plan").click();
    await page.getByRole("button", { name: "Submit", exact: true }).click();
    await state("State").filter({ hasText: "pending_approval" }).waitFor();
    await page.getByRole("button", { name: "Approve" }).click();
    await expect
      .poll(() => page.getByRole("alert").first().textContent())
      .toMatch(/submitted by you \(user ada\), so you may not approve it/);
    await shot("execution-self-approval");
    const id = page.url().split("/").pop()!;

    const op = await otherBrowser(oscar);
    await op.goto(`${base}/executions/${id}`);
    await op.getByRole("button", { name: "Approve" }).click();
    // The admin's page follows the approved run live, its log growing without a reload.
    await state("State").filter({ hasText: "completed" }).waitFor({ timeout: 60_000 });
    await expect
      .poll(() => page.locator("#x-logs + pre").textContent())
      .toMatch(/completed: all 1 steps done/);
    await shot("execution");

    // A state-changing request without the CSRF header, from the logged-in page itself:
    // refused with 403 and nothing changed.
    const refused = (await op.evaluate(`fetch("/v1/hosts/c1/cordon", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ cordoned: true }),
    }).then(async (r) => [r.status, (await r.json()).error.code])`)) as [number, string];
    expect(refused).toEqual([403, "NOVA_CSRF_REJECTED"]);
    expect((await c.api<{ cordoned: boolean }>("GET", "/v1/hosts/c1")).body.cordoned).toBe(false);

    await op.getByRole("button", { name: "Log out" }).click();
    await op.getByLabel("Username").waitFor();
    // Logged out means the server ended the session: a reload stays logged out.
    await op.reload();
    await op.getByLabel("Username").waitFor();
  });

  it("shows a viewer the server's refusal where the action was tried, and no Users page", async () => {
    const viewer = await otherBrowser(vera);
    expect(await viewer.getByRole("link", { name: "Users", exact: true }).count()).toBe(0);
    await navLink(viewer, "Hosts").click();
    await viewer.getByRole("button", { name: "Cordon c1" }).click();
    await expect
      .poll(() => viewer.getByRole("alert").first().textContent())
      .toMatch(/User vera \(role viewer\) may not do this \(needs hosts:write\)/);
    await viewer.screenshot({ path: path.join(ARTIFACTS, "viewer-refused.png"), fullPage: true });
    expect((await c.api<{ cordoned: boolean }>("GET", "/v1/hosts/c1")).body.cordoned).toBe(false);

    // The admin resets her password: her sessions end, and her open page says so.
    await navLink(page, "Users").click();
    await page.getByRole("button", { name: "Reset the password of vera" }).click();
    await page.getByRole("status").filter({ hasText: "User vera given a new password" }).waitFor();
    await viewer.getByLabel("Username").waitFor({ timeout: 30_000 });
    expect(await viewer.locator(".notice").textContent()).toMatch(/session is unknown/);
    await viewer.screenshot({ path: path.join(ARTIFACTS, "login-after-reset.png"), fullPage: true });
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
    // Approved by another principal (the server's admin token): a user may not approve its own.
    const approved = await c.api("POST", `/v1/executions/${page.url().split("/").pop()}/approve`);
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
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
    const paths = [
      "/",
      "/hosts",
      "/vms",
      "/vms/web-1",
      "/migrations",
      "/executions",
      "/tokens",
      "/users",
      "/account",
    ];
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

  it("returns to the login page with the reason when the session idles out", async () => {
    // Sessions keep the idle timeout they were made with: restart the server with a short
    // one and log in again. The login page fits a phone too.
    // The other browsers close and the page leaves first; a browser socket left open would
    // only be cut 5 s into the server's shutdown.
    for (const ctx of others.splice(0)) await ctx.close();
    await page.goto("about:blank");
    await c.stop("server");
    await c.startServer(["--heartbeat-timeout", "6", "--session-idle-timeout", "5"]);
    await page.setViewportSize(VIEWPORTS[1]!);
    await page.goto(`${base}/`);
    await page.getByRole("button", { name: "Log out" }).click();
    await logIn(page, ADMIN, () => authenticator.code());
    // The Account page asks nothing more of the server: the event stream's next check
    // (every 15 s) finds the session ended, and the console goes back to the login page.
    await navLink(page, "Account").click();
    await page.getByLabel("Username").waitFor({ timeout: 40_000 });
    expect(await page.locator(".notice").textContent()).toMatch(
      /Your session ended after 5 seconds without use: log in again/,
    );
    const [scroll, inner] = (await page.evaluate(
      "[document.documentElement.scrollWidth, window.innerWidth]",
    )) as [number, number];
    expect(scroll).toBeLessThanOrEqual(inner);
    await shot("login-expired-390");
  }, 120_000);
});
