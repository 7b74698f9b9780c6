// The web console's migrations and TOTP QR code in Debian's Chromium (playwright-core,
// headless, the cluster CA trusted) against a real server, two agents and a TCG guest,
// logged in as an admin user: the enrolment's QR code rendered with its label and decoding
// to the otpauth URI; a DWCP migration started from the VM page whose page draws the wire
// line apart from the logical one while it runs, and after a reload of the finished
// migration draws the same curve from the server's stored samples alone; a running
// migration cancelled from the console, rolled back with the VM still running on its source
// (one QEMU, there) and the page saying what was undone. Screenshots go to
// test-artifacts/console-migration/.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Migration, MigrationSampleList } from "../src/api/types/migrations.js";
import { waitFor } from "../src/lib/wait.js";
import { launchBrowser, type TestBrowser } from "../src/testing/browser.js";
import { guestImageManifest, qemuPidsUnder, ROOT, TestCluster } from "./helpers/cluster.js";

const SERVER_PORT = 18630;
const AGENT_PORTS = { c1: 18631, c2: 18632 };
const DWCP_PORTS = { c1: 18633, c2: 18634 };
// A guest that writes and checks a pattern and keeps dirtying memory, so a migration has
// pages to carry and, capped, runs long enough to be watched and cancelled.
const WORKLOAD =
  "nc.pattern_seed=7 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2 nc.dirty_mb=16 nc.dirty_rate_mbps=2";
const ARTIFACTS = path.join(ROOT, "test-artifacts", "console-migration");
// jsqr is a UMD bundle whose module.exports is the function itself.
const jsQR = createRequire(import.meta.url)("jsqr") as typeof import("jsqr").default;
const ADMIN = { username: "ada", password: "correct horse battery staple" };

describe("migrations and the TOTP QR code in the console, in Chromium", { timeout: 300_000 }, () => {
  let c: TestCluster;
  let tb: TestBrowser;
  let page: Page;
  let base: string;
  let dir: string | undefined;

  beforeAll(async () => {
    const manifest = await guestImageManifest();
    await mkdir("/tmp/nc-console-mig", { recursive: true });
    // Short: a QMP socket path under it must fit in 107 bytes.
    dir = await mkdtemp("/tmp/nc-console-mig/s-");
    c = await TestCluster.create(SERVER_PORT, path.join(dir, "cluster"));
    await c.startServer(["--heartbeat-timeout", "6"]);
    for (const h of ["c1", "c2"] as const)
      await c.startAgent(h, AGENT_PORTS[h], [
        "--memory",
        "2048",
        "--stop-grace",
        "20",
        "--dwcp-port",
        String(DWCP_PORTS[h]),
      ]);
    const res = await c.cli(["image", "import", "guest", "--manifest", manifest]);
    expect(res.code, res.stderr).toBe(0);
    const made = await c.api("POST", "/v1/users", { ...ADMIN, role: "admin" });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const vm = await c.api("POST", "/v1/vms", {
      name: "web-1",
      image: "guest",
      memoryMiB: 256,
      kernelArgs: WORKLOAD,
    });
    expect(vm.status, JSON.stringify(vm.body)).toBe(201);
    await mkdir(ARTIFACTS, { recursive: true });
    tb = await launchBrowser({ caFile: c.caFile, home: path.join(dir, "chrome-home") });
    page = await tb.browser.newPage({ viewport: { width: 1280, height: 720 } });
    page.setDefaultTimeout(30_000);
    base = c.serverUrl;
    await page.goto(`${base}/`);
    await page.getByLabel("Username").fill(ADMIN.username);
    await page.getByLabel("Password").fill(ADMIN.password);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("heading", { name: "Overview" }).waitFor();
    await c.waitVmState("web-1", "running", 120_000);
    await c.waitConsole("web-1", /NC-VERIFY PASS seed=7 /);
  }, 240_000);

  afterAll(async () => {
    await tb?.close();
    await c?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const shot = (name: string) =>
    page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  const hostOf = async () => (await c.api<{ host: string }>("GET", "/v1/vms/web-1")).body.host;
  const newestMigration = async () =>
    (await c.api<{ migrations: Migration[] }>("GET", "/v1/vms/web-1/migrations")).body.migrations[0]!;
  const chart = () => page.getByRole("img", { name: /^Wire bytes .* and logical bytes .* over / });

  /** Starts a migration of web-1 to `to` from the VM page; returns its id. */
  async function migrateFromVmPage(to: string, transport: "qemu" | "dwcp", mibps: number): Promise<string> {
    const before = (await c.api<{ migrations: Migration[] }>("GET", "/v1/vms/web-1/migrations")).body
      .migrations.length;
    await page.goto(`${base}/vms/web-1`);
    await page.getByLabel("Target host").selectOption(to);
    await page.getByLabel("Transport").selectOption(transport);
    await page.getByLabel("Bandwidth limit (MiB/s)").fill(String(mibps));
    await page.getByRole("button", { name: "Migrate", exact: true }).click();
    await waitFor(
      async () =>
        (await c.api<{ migrations: Migration[] }>("GET", "/v1/vms/web-1/migrations")).body.migrations.length >
        before,
      { timeoutMs: 30_000, what: "the migration to be created" },
    );
    return (await newestMigration()).id;
  }

  it("shows the TOTP enrolment's otpauth URI as a labelled QR code that decodes to it", async () => {
    await page.getByRole("link", { name: "Account", exact: true }).first().click();
    await page.getByRole("button", { name: "Set up an authenticator" }).click();
    const uri = await page.getByLabel("otpauth URI").inputValue();
    expect(uri).toMatch(/^otpauth:\/\/totp\/.*ada.*secret=/);
    // The text secret stays for typing it in.
    expect((await page.getByLabel("Secret").inputValue()).length).toBeGreaterThanOrEqual(16);
    const qr = page.getByRole("img", { name: "QR code of the authenticator setup for ada" });
    await qr.waitFor();
    expect(await qr.getAttribute("src")).toMatch(/^data:image\/svg\+xml/);
    // What a phone's camera would read: the image drawn at its size, decoded.
    const pixels = (await page.evaluate(`(async () => {
      const img = document.querySelector(".qr img");
      await img.decode();
      const canvas = document.createElement("canvas");
      canvas.width = 400;
      canvas.height = 400;
      const g = canvas.getContext("2d");
      g.fillStyle = "#fff";
      g.fillRect(0, 0, 400, 400);
      g.drawImage(img, 0, 0, 400, 400);
      return Array.from(g.getImageData(0, 0, 400, 400).data);
    })()`)) as number[];
    expect(jsQR(Uint8ClampedArray.from(pixels), 400, 400)?.data).toBe(uri);
    await shot("account-qr");
    // The enrolment is left unconfirmed: cancelled, the account logs in with its password alone.
    await page.getByRole("button", { name: "Cancel", exact: true }).click();
    await page.getByRole("button", { name: "Set up an authenticator" }).waitFor();
  });

  it("draws a DWCP migration's wire line apart from its logical bytes, live and after a reload from the stored samples", async () => {
    const from = await hostOf();
    const to = from === "c1" ? "c2" : "c1";
    const id = await migrateFromVmPage(to, "dwcp", 8);
    await page.goto(`${base}/migrations/${id}`);
    const heading = page.getByRole("heading", { name: /^web-1: c\d → c\d/ });
    // While it runs, the chart shows both lines (wire measured by DWCP, below logical).
    let sawLiveWire = false;
    await waitFor(
      async () => {
        const running = !(await heading.getByText(/completed|failed|cancelled/).isVisible());
        if (running && (await page.locator(".chart path.series-wire").count()) === 1) sawLiveWire = true;
        return !running;
      },
      { timeoutMs: 240_000, intervalMs: 200, what: "the DWCP migration to end" },
    );
    const done = await newestMigration();
    expect(done.state, done.stateReason).toBe("completed");
    expect(done.transport).toBe("dwcp");
    expect(sawLiveWire).toBe(true);
    await expect.poll(() => page.locator(".chart figcaption").textContent()).toMatch(/logical .* wire /);
    await shot("migration-dwcp");

    // The server kept the curve: samples at least 1 s apart within a phase, with DWCP's wire bytes.
    const stored = (await c.api<MigrationSampleList>("GET", `/v1/migrations/${id}/samples`)).body;
    expect(stored.samples.length).toBeGreaterThanOrEqual(3);
    for (const [i, s] of stored.samples.entries()) {
      const prev = stored.samples[i - 1];
      if (prev && prev.phase === s.phase)
        expect(Date.parse(s.at) - Date.parse(prev.at)).toBeGreaterThanOrEqual(stored.sampleEveryMs);
    }
    const last = stored.samples.at(-1)!;
    expect(last.memoryWireBytes).toBeGreaterThan(0);
    expect(last.memoryWireBytes!).toBeLessThan(last.memoryLogicalBytes!);

    // A reload forgets the live readings: what the chart draws now is the stored history,
    // one point per sample.
    await page.reload();
    await chart().waitFor();
    const points = async (cls: string) =>
      ((await page.locator(`.chart path.${cls}`).getAttribute("d")) ?? "").split(/[ML]/).filter(Boolean)
        .length;
    expect(await points("series-logical")).toBe(stored.samples.length);
    expect(await points("series-wire")).toBe(stored.samples.length);
    expect(await page.locator(".chart figcaption").textContent()).toMatch(/wire /);
    await shot("migration-dwcp-reloaded");
    await expect.poll(hostOf, { timeout: 30_000 }).toBe(to);
  });

  it("cancels a running migration from the console: rolled back, the VM still running on its source", async () => {
    const from = await hostOf();
    const to = from === "c1" ? "c2" : "c1";
    // Capped low and the guest dirtying memory: the copy is still running when cancelled.
    const id = await migrateFromVmPage(to, "qemu", 1);
    const card = page.getByRole("article", { name: `Migration of web-1 to ${to}` }).first();
    await card.getByRole("heading").getByText("transferring").waitFor({ timeout: 120_000 });
    await waitFor(async () => Number(await card.getByRole("progressbar").getAttribute("aria-valuenow")) > 0, {
      timeoutMs: 60_000,
      what: "the copy to be under way",
    });
    await card.getByRole("button", { name: "Cancel migration of web-1" }).click();
    await card.getByRole("heading").getByText("cancelled").waitFor({ timeout: 120_000 });
    await card.getByText(`Rolled back: `).waitFor();
    expect(await card.getByText("Rolled back: ").textContent()).toContain(`kept running on ${from}`);
    expect(await card.getByRole("button", { name: "Cancel migration of web-1" }).count()).toBe(0);
    await shot("migration-cancelled");

    const m = (await c.api<Migration>("GET", `/v1/migrations/${id}`)).body;
    expect(m.state).toBe("cancelled");
    expect(m.cancelRequested).toBe(true);
    const vm = await c.waitVmState("web-1", "running", 30_000);
    expect(vm.host).toBe(from);
    await waitFor(async () => (await qemuPidsUnder(`${c.agentDir(to)}/vms/${vm.id}`)).length === 0, {
      timeoutMs: 30_000,
      what: "the target's QEMU to be gone",
    });
    expect(await qemuPidsUnder(`${c.agentDir(from)}/vms/${vm.id}`)).toHaveLength(1);
    // The VM page says the same: on its source, running.
    await expect.poll(() => page.getByTestId("vm-host").textContent()).toBe(from);

    // The cancelled migration's page draws what it had sent, from the stored samples.
    await page.goto(`${base}/migrations/${id}`);
    await chart().waitFor();
    await shot("migration-cancelled-chart");
  });
});
