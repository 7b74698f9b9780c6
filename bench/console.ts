/**
 * `npm run bench:console`: the web console in Debian's Chromium (headless) against a real
 * server on loopback (in this process, embedded PGlite, the built console from
 * dist/console): the bytes its first load transfers, compressed, against the ≤ 300 KB
 * target; the time until the overview shows its data, against ≤ 1 s, cold (empty cache)
 * and warm; and the VMs page with --vms VMs (1,000 by default): the time until the table
 * shows them all after the click, to filter them, and to scroll to the end.
 *
 * The VMs are inserted straight into the server's store (stopped, on one host with no
 * agent behind it), not created through the API, which would need real hosts with
 * capacity for them: the console reads them through the same API either way. The console
 * is logged in as a user (an admin without a second factor, made with the admin token):
 * the bench logs in with `POST /v1/session` and hands the session cookie to each browser
 * context, as the login form leaves it, so the load itself (with its `GET /v1/session`)
 * is what is measured.
 *
 *   --vms N     VMs in the store (default 1000)
 *   --runs N    loads measured per case (default 5; the median is shown)
 *   --json      one JSON object per line instead of the table
 */
import { cpSync, existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import pino from "pino";
import type { BrowserContext, Page } from "playwright-core";
import { upsertHost } from "../src/cluster/store/hosts.js";
import { getImage, insertImage } from "../src/cluster/store/images.js";
import { MIGRATIONS_DIR } from "../src/cluster/store/migrate.js";
import { insertVm } from "../src/cluster/store/vms.js";
import { ROOT } from "../src/demo/local-cluster.js";
import { buildExecConfig } from "../src/exec/config.js";
import { type ClusterFetch, clusterFetch } from "../src/security/tls-client.js";
import { startServer } from "../src/server/server-process.js";
import { launchBrowser } from "../src/testing/browser.js";
import { median, printTable } from "./table.js";

const PORT = 18563;
const FIRST_LOAD_TARGET_BYTES = 300 * 1024;
const OVERVIEW_TARGET_MS = 1000;

const { values } = parseArgs({
  options: {
    vms: { type: "string", default: "1000" },
    runs: { type: "string", default: "5" },
    json: { type: "boolean", default: false },
  },
});
const VMS = Number(values.vms);
const RUNS = Number(values.runs);

/** One measured figure. */
interface Row {
  case: string;
  value: number;
  unit: string;
  target: string;
  runs: number[];
}

/** Bytes each resource of the page took on the wire (headers and compressed body), by kind. */
async function transferred(page: Page): Promise<{ files: number; api: number }> {
  return (await page.evaluate(`(() => {
    const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
    let files = 0, api = 0;
    for (const e of entries) {
      const path = new URL(e.name).pathname;
      if (path.startsWith("/v1/")) api += e.transferSize; else files += e.transferSize;
    }
    return { files, api };
  })()`)) as { files: number; api: number };
}

/**
 * The page's clock (ms since navigation start) when `done`, a JS expression, first holds,
 * checked every frame. Evaluated through the DevTools protocol, which the page's CSP does
 * not govern (it refuses Playwright's waitForFunction, which evaluates strings in the page).
 */
async function untilInPage(page: Page, done: string): Promise<number> {
  return (await page.evaluate(`new Promise((resolve, reject) => {
    const deadline = performance.now() + 30000;
    const check = () => {
      if (${done}) return resolve(performance.now());
      if (performance.now() > deadline) return reject(new Error("timed out: ${done.replaceAll('"', "'")}"));
      requestAnimationFrame(check);
    };
    check();
  })`)) as number;
}

const USER = { username: "bench", password: "bench password, long enough" };

/** Makes the bench's user with the admin token and logs it in: the session cookie's value. */
async function userSession(fetchServer: ClusterFetch, url: string, adminToken: string): Promise<string> {
  const made = await fetchServer(`${url}/v1/users`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ ...USER, role: "admin" }),
  });
  if (made.status !== 201)
    throw new Error(`creating the bench user: HTTP ${made.status} ${await made.text()}`);
  const res = await fetchServer(`${url}/v1/session`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(USER),
  });
  const cookie = /__Host-novacron_session=([^;]+)/.exec(res.headers.get("set-cookie") ?? "");
  if (res.status !== 200 || !cookie) throw new Error(`logging in: HTTP ${res.status} ${await res.text()}`);
  return cookie[1]!;
}

/** A fresh browser context holding the session cookie, as the login form leaves it. */
async function loggedInContext(
  tb: Awaited<ReturnType<typeof launchBrowser>>,
  url: string,
  session: string,
): Promise<BrowserContext> {
  const ctx = await tb.browser.newContext({ viewport: { width: 1280, height: 720 } });
  await ctx.addCookies([
    {
      name: "__Host-novacron_session",
      value: session,
      url,
      secure: true,
      httpOnly: true,
      sameSite: "Strict",
    },
  ]);
  return ctx;
}

const overviewDone = () => `document.querySelector("#ov-vms + .big")?.textContent === "${VMS}"`;

/** Milliseconds from navigation start until the overview shows the VM count. */
async function overviewShown(page: Page, url: string): Promise<number> {
  await page.goto(url, { waitUntil: "commit" });
  return untilInPage(page, overviewDone());
}

/** Runs `action` in the page and returns the ms until `done` (a JS expression) holds, polled each frame. */
async function timeInPage(page: Page, action: string, done: string): Promise<number> {
  return (await page.evaluate(`new Promise((resolve, reject) => {
    const t0 = performance.now();
    ${action};
    const deadline = t0 + 30000;
    const check = () => {
      if (${done}) return resolve(performance.now() - t0);
      if (performance.now() > deadline) return reject(new Error("timed out: ${done.replaceAll('"', "'")}"));
      requestAnimationFrame(check);
    };
    requestAnimationFrame(check);
  })`)) as number;
}

async function main(): Promise<void> {
  if (!existsSync(path.join(ROOT, "dist", "console", "index.html")))
    throw new Error("dist/console is missing: npm run build");
  if (!existsSync(MIGRATIONS_DIR))
    cpSync(path.join(ROOT, "src/cluster/sql"), MIGRATIONS_DIR, { recursive: true });
  const dir = await mkdtemp("/tmp/nc-bench-console-");
  const server = await startServer({
    dataDir: path.join(dir, "server"),
    port: PORT,
    federationPort: 0,
    execConfig: buildExecConfig({ flags: { workersMin: 1, workersMax: 1 } }),
    logger: pino({ level: "silent" }),
    consoleDir: path.join(ROOT, "dist", "console"),
  });
  const tb = await launchBrowser({ caFile: server.caCertPath, home: path.join(dir, "chrome-home") });
  const rows: Row[] = [];
  try {
    await server.store.write(async (tx) => {
      const host = await upsertHost(tx, {
        name: "bench-host",
        agentUrl: "https://127.0.0.1:1",
        certificate: null,
        agentVersion: "0",
        capacity: {
          accel: "tcg",
          accelReason: "bench",
          vcpus: 64,
          memoryMiB: 1 << 20,
          diskTotalBytes: 1e12,
          diskFreeBytes: 1e12,
        },
      });
      await insertImage(tx, {
        name: "bench",
        diskDigest: "sha256:bench",
        diskFormat: "qcow2",
        diskVirtualBytes: 1 << 26,
        kernelDigest: null,
        initrdDigest: null,
        cmdline: "",
        minMemoryMiB: 64,
      });
      const image = await getImage(tx, "bench");
      for (let i = 0; i < VMS; i++) {
        await insertVm(tx, {
          name: `vm-${String(i).padStart(4, "0")}`,
          imageId: image.id,
          vcpus: 1,
          memoryMiB: 256,
          kernelArgs: "",
          desiredState: "stopped",
          hostId: host.id,
          state: "stopped",
        });
      }
    });
    const url = `${server.url}/`;
    const caPem = await readFile(server.caCertPath, "utf8");
    const session = await userSession(
      clusterFetch({ caPem }, { role: "server" }),
      server.url,
      server.created.admin!,
    );

    // Cold: a new browser context per run (empty cache), holding the session cookie.
    const cold: number[] = [];
    const filesBytes: number[] = [];
    const apiBytes: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const ctx = await loggedInContext(tb, url, session);
      const page = await ctx.newPage();
      cold.push(await overviewShown(page, url));
      const t = await transferred(page);
      filesBytes.push(t.files);
      apiBytes.push(t.api);
      await ctx.close();
    }
    // Warm: the same context again (hashed assets from the cache, index.html revalidated).
    const ctx = await loggedInContext(tb, url, session);
    const page = await ctx.newPage();
    await overviewShown(page, url);
    const warm: number[] = [];
    for (let r = 0; r < RUNS; r++) warm.push(await overviewShown(page, url));

    // The VMs page: from the click on its link until every row is in the table.
    const rowsShown = `document.querySelectorAll(".vm-table tbody tr").length === ${VMS}`;
    const render: number[] = [];
    const filter: number[] = [];
    const scroll: number[] = [];
    const expectedFiltered = Array.from({ length: VMS }, (_, i) => `vm-${String(i).padStart(4, "0")}`).filter(
      (n) => n.includes("vm-05"),
    ).length;
    for (let r = 0; r < RUNS; r++) {
      await page.goto(url);
      await untilInPage(page, overviewDone());
      render.push(
        await timeInPage(
          page,
          `[...document.querySelectorAll("nav a")].find((a) => a.textContent === "VMs").click()`,
          rowsShown,
        ),
      );
      await page.getByLabel("Filter").click();
      filter.push(
        await timeInPage(
          page,
          `(() => { const i = document.getElementById("vm-filter"); const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set; set.call(i, "vm-05"); i.dispatchEvent(new Event("input", { bubbles: true })); })()`,
          `document.querySelectorAll(".vm-table tbody tr").length === ${expectedFiltered}`,
        ),
      );
      await page.getByLabel("Filter").fill("");
      await untilInPage(page, rowsShown);
      // Scrolling the whole table: from the scroll to the second frame painted after it.
      scroll.push(
        await timeInPage(
          page,
          `window.__frames = 0; window.scrollTo(0, document.documentElement.scrollHeight); requestAnimationFrame(() => requestAnimationFrame(() => { window.__frames = 2; }))`,
          `window.__frames === 2`,
        ),
      );
    }
    await ctx.close();

    const row = (name: string, runs: number[], unit: string, target: string): Row => ({
      case: name,
      value: median(runs)!,
      unit,
      target,
      runs,
    });
    rows.push(
      row("first load: console files", filesBytes, "bytes", `≤ ${FIRST_LOAD_TARGET_BYTES} (300 KB)`),
      row(`first load: API replies (${VMS} VMs)`, apiBytes, "bytes", "—"),
      row("overview shown, cold cache", cold, "ms", `≤ ${OVERVIEW_TARGET_MS}`),
      row("overview shown, warm cache", warm, "ms", `≤ ${OVERVIEW_TARGET_MS}`),
      row(`VMs page: ${VMS} rows shown after the click`, render, "ms", "—"),
      row(`VMs page: filtered to ${expectedFiltered} rows`, filter, "ms", "—"),
      row("VMs page: scrolled to the end, 2 frames", scroll, "ms", "—"),
    );
  } finally {
    await tb.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
  if (values.json) for (const r of rows) console.log(JSON.stringify(r));
  else
    printTable(
      ["case", "median", "unit", "target", "runs"],
      rows.map((r) => [
        r.case,
        r.value.toFixed(r.unit === "ms" ? 1 : 0),
        r.unit,
        r.target,
        r.runs.map((x) => x.toFixed(0)).join(" "),
      ]),
    );
}

await main();
