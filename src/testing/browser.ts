/**
 * Headless Chromium for the console's suite and benchmark: Debian's `chromium` driven by
 * playwright-core, launched `--headless --no-sandbox`, trusting the cluster CA properly:
 * the CA goes into a private NSS database (the one Chromium reads on Linux, under the
 * profile's HOME) as a trusted root, so certificate and host name are verified as for
 * any site, with no `ignoreHTTPSErrors`.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { type Browser, chromium } from "playwright-core";

const execFileAsync = promisify(execFile);

/** Where Debian's chromium package puts the browser. */
export const CHROMIUM = "/usr/bin/chromium";

/** A browser and the directory it keeps its profile in. */
export interface TestBrowser {
  browser: Browser;
  close(): Promise<void>;
}

/**
 * Launches Chromium with `caFile` trusted as a root. `home` is a fresh directory for the
 * browser's HOME (its NSS database and caches); it is removed on close.
 */
export async function launchBrowser(opts: { caFile: string; home: string }): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium`);
  const nssdb = path.join(opts.home, ".pki", "nssdb");
  await mkdir(nssdb, { recursive: true });
  await execFileAsync("certutil", ["-N", "-d", `sql:${nssdb}`, "--empty-password"]);
  await execFileAsync("certutil", [
    "-A",
    "-d",
    `sql:${nssdb}`,
    "-t",
    "C,,",
    "-n",
    "novacron-cluster-ca",
    "-i",
    opts.caFile,
  ]);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    env: { ...process.env, HOME: opts.home },
  });
  return {
    browser,
    close: async () => {
      await browser.close().catch(() => {});
      await rm(opts.home, { recursive: true, force: true });
    },
  };
}
