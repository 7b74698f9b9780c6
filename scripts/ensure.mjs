#!/usr/bin/env node
// Installs what NovaCron needs before `npm run demo` and `npm test`, and only what is
// missing: Debian packages (via apt-get when root, else prints the exact command), npm
// dependencies (npm install from the lockfile when node_modules is missing or older than
// it), the
// TypeScript build (when a source file is newer than dist/), and the guest image
// (images/build.sh, itself cached by its inputs). Plain JavaScript with no dependencies,
// because it runs before they are installed.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const log = (msg) => process.stderr.write(`[setup] ${msg}\n`);

/** Debian packages and a file each one provides, to tell whether it is installed. */
const HOST_PACKAGES = [
  ["qemu-system-x86", () => has("qemu-system-x86_64")],
  ["qemu-utils", () => has("qemu-img") && has("qemu-io")],
  [
    "linux-image-amd64",
    () => existsSync("/boot") && readdirSync("/boot").some((f) => f.startsWith("vmlinuz-")),
  ],
  ["busybox-static", () => existsSync("/bin/busybox") || has("busybox")],
  ["cpio", () => has("cpio")],
  ["gcc", () => has("gcc")],
  // Static linking of the guest workload needs libc.a, which gcc only recommends.
  ["libc6-dev", () => existsSync("/usr/lib/x86_64-linux-gnu/libc.a")],
  ["iproute2", () => has("ip")],
  // DWCP's TLS tests make throwaway certificates with it.
  ["openssl", () => has("openssl")],
];

function has(cmd) {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: root, ...opts });
  if (r.status !== 0) {
    log(`failed: ${cmd} ${args.join(" ")}`);
    process.exit(r.status ?? 1);
  }
}

function ensureHostPackages() {
  const missing = HOST_PACKAGES.filter(([, present]) => !present()).map(([name]) => name);
  if (missing.length === 0) return;
  const cmd = `apt-get update && apt-get install -y --no-install-recommends ${missing.join(" ")}`;
  if (process.getuid?.() !== 0) {
    log(`missing host packages: ${missing.join(", ")}. Install them as root:\n  sudo sh -c '${cmd}'`);
    process.exit(2);
  }
  log(`installing host packages: ${missing.join(", ")}`);
  run("sh", ["-c", cmd], { env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
}

function newestMtime(dir, filter) {
  let newest = 0;
  if (!existsSync(dir)) return 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p, filter));
    else if (filter(p)) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function ensureNpmDeps() {
  const modules = path.join(root, "node_modules");
  const lock = path.join(root, "package-lock.json");
  const marker = path.join(modules, ".package-lock.json");
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return;
  // `npm install` rather than `npm ci`: this npm writes lockfiles without other
  // platforms' optional binaries (biome, rollup, esbuild) and then its own `npm ci`
  // refuses them as out of sync. `install` still takes the locked versions.
  log("installing npm dependencies (npm install from package-lock.json)");
  run("npm", ["install", "--no-audit", "--no-fund"]);
}

function ensureBuild() {
  const stamp = path.join(root, "dist", ".build-stamp");
  const sources = newestMtime(path.join(root, "src"), (p) => !p.endsWith(".test.ts"));
  const config = statSync(path.join(root, "tsconfig.json")).mtimeMs;
  if (existsSync(stamp) && statSync(stamp).mtimeMs >= Math.max(sources, config)) return;
  log("building (tsc)");
  run("npm", ["run", "--silent", "build"]);
}

function ensureGuestImage() {
  log("guest image (images/build.sh; cached by its inputs)");
  const out = execFileSync(path.join(root, "images", "build.sh"), [], {
    cwd: root,
    stdio: ["ignore", "pipe", "inherit"],
  })
    .toString()
    .trim()
    .split("\n")
    .pop();
  log(`guest image: ${out}`);
}

ensureHostPackages();
ensureNpmDeps();
ensureBuild();
if (!process.argv.includes("--no-image")) ensureGuestImage();
