#!/usr/bin/env node
// Installs what NovaCron needs before `npm run demo` and `npm test`, and only what is
// missing: Debian packages (via apt-get when root, else prints the exact command), with
// QEMU 10 from Debian 12's bookworm-backports suite (pinned to QEMU and what it needs) or
// Debian 13's own; QEMU 7.2 unpacked into .cache/qemu-7.2 for the compatibility suite; npm
// dependencies (npm install from the lockfile when node_modules is missing or older than
// it); the TypeScript build (when a source file is newer than dist/); and the guest image
// (images/build.sh, itself cached by its inputs). Plain JavaScript with no dependencies,
// because it runs before they are installed.
import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const log = (msg) => process.stderr.write(`[setup] ${msg}\n`);

/** The oldest QEMU major version NovaCron runs by default (docs/operations.md). */
const QEMU_MAJOR_WANTED = 10;
/** Debian 12's suite that carries QEMU 10, and the packages taken from it. */
const BACKPORTS_SOURCES = "/etc/apt/sources.list.d/novacron-bookworm-backports.sources";
const BACKPORTS_PIN = "/etc/apt/preferences.d/novacron-qemu";
// Only QEMU's own packages and the firmware its 10.0 build needs (seabios >> 1.16.3) come
// from backports; anything else keeps Debian 12's version (backports' default priority 100).
const BACKPORTS_PACKAGES = [
  "qemu-system-x86",
  "qemu-system-common",
  "qemu-system-data",
  "qemu-utils",
  "qemu-block-extra",
  "seabios",
  "ipxe-qemu",
];

/** Debian packages and a file each one provides, to tell whether it is installed. */
const HOST_PACKAGES = [
  ["qemu-system-x86", () => qemuMajor("qemu-system-x86_64") >= QEMU_MAJOR_WANTED],
  ["qemu-utils", () => has("qemu-img") && has("qemu-io") && qemuMajor("qemu-img") >= QEMU_MAJOR_WANTED],
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
  // The federation fault suite runs one server with its clock minutes off (libfaketime).
  ["faketime", () => has("faketime")],
  // The ACP model (spec/acp.pml) is checked by spin, which writes a C verifier gcc builds.
  ["spin", () => has("spin")],
  // The web console's browser suite drives Debian's Chromium through playwright-core.
  ["chromium", () => existsSync("/usr/bin/chromium")],
  // certutil: that suite trusts the cluster CA in a private NSS database, as a browser would.
  ["libnss3-tools", () => has("certutil")],
  // The alert rules in deploy/prometheus/ are checked and unit-tested by promtool.
  ["prometheus", () => has("promtool")],
];

function has(cmd) {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/** The major version a QEMU binary prints with --version, 0 when missing or unreadable. */
function qemuMajor(binary) {
  const r = spawnSync(binary, ["--version"], { encoding: "utf8" });
  const m = r.status === 0 ? /version (\d+)\./.exec(r.stdout) : null;
  return m ? Number(m[1]) : 0;
}

function debianCodename() {
  try {
    const m = /^VERSION_CODENAME=(\S+)$/m.exec(readFileSync("/etc/os-release", "utf8"));
    return m ? m[1] : undefined;
  } catch {
    return undefined;
  }
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: root, ...opts });
  if (r.status !== 0) {
    log(`failed: ${cmd} ${args.join(" ")}`);
    process.exit(r.status ?? 1);
  }
}

/**
 * Shell commands that make Debian 12's apt offer QEMU 10 from bookworm-backports, signed
 * by Debian's own keyring, and prefer it only for BACKPORTS_PACKAGES. Empty when not
 * needed (other releases, or already set up).
 */
function backportsSetup() {
  if (debianCodename() !== "bookworm") return [];
  if (existsSync(BACKPORTS_SOURCES) && existsSync(BACKPORTS_PIN)) return [];
  const sources = [
    "Types: deb",
    "URIs: http://deb.debian.org/debian",
    "Suites: bookworm-backports",
    "Components: main",
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
  ].join("\\n");
  const pin = [
    "# NovaCron: QEMU 10 and the firmware it needs from bookworm-backports, nothing else.",
    `Package: ${BACKPORTS_PACKAGES.join(" ")}`,
    "Pin: release n=bookworm-backports",
    "Pin-Priority: 990",
  ].join("\\n");
  return [`printf '${sources}\\n' > ${BACKPORTS_SOURCES}`, `printf '${pin}\\n' > ${BACKPORTS_PIN}`];
}

function ensureHostPackages() {
  const missing = HOST_PACKAGES.filter(([, present]) => !present()).map(([name]) => name);
  if (missing.length === 0) return;
  const qemuWanted = missing.some((m) => m.startsWith("qemu-"));
  const setup = qemuWanted ? backportsSetup() : [];
  const cmd = [
    ...setup,
    "apt-get update",
    `apt-get install -y --no-install-recommends ${missing.join(" ")}`,
  ].join(" && ");
  if (process.getuid?.() !== 0) {
    log(`missing host packages: ${missing.join(", ")}. Install them as root:\n  sudo sh -c "${cmd}"`);
    process.exit(2);
  }
  log(
    `installing host packages: ${missing.join(", ")}${setup.length ? " (QEMU from bookworm-backports)" : ""}`,
  );
  run("sh", ["-c", cmd], { env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  const major = qemuMajor("qemu-system-x86_64");
  if (major < QEMU_MAJOR_WANTED) {
    log(
      `QEMU ${major || "(none)"} installed, but NovaCron's suites want QEMU ${QEMU_MAJOR_WANTED}: ` +
        "on Debian 12 add bookworm-backports (docs/operations.md), on Debian 13 install qemu-system-x86",
    );
    process.exit(2);
  }
}

/** The newest version of `pkg` in apt's lists that starts with `prefix`, if any. */
function aptVersion(pkg, prefix) {
  const madison = spawnSync("apt-cache", ["madison", pkg], { encoding: "utf8" }).stdout ?? "";
  return madison
    .split("\n")
    .map((l) => l.split("|")[1]?.trim())
    .find((v) => v?.startsWith(prefix));
}

/** Where the compatibility suite finds QEMU 7.2 (test/qemu72-compat.slow.test.ts). */
const QEMU72_DIR = path.join(root, ".cache", "qemu-7.2");

/**
 * QEMU 7.2 beside the system's QEMU 10, for the 7.2 compatibility suite: Debian 12's own
 * packages fetched with `apt-get download` and unpacked with `dpkg -x` (no install, no
 * root needed), behind a wrapper that points QEMU at its own firmware and modules. Skipped
 * where Debian 12's 7.2 is not in apt's lists (Debian 13); the suite then says so.
 */
function ensureQemu72() {
  const wrapper = path.join(QEMU72_DIR, "qemu-system-x86_64");
  const tcg = path.join(QEMU72_DIR, "root/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so");
  if (existsSync(wrapper) && existsSync(tcg)) return;
  const version = aptVersion("qemu-system-x86", "1:7.2+");
  if (!version) {
    log("QEMU 7.2 is not in apt's lists here: the 7.2 compatibility suite will be skipped");
    return;
  }
  // qemu-system-data and seabios carry the firmware 7.2's machine types were built with.
  const dataVersion = version.replace(/\+b\d+$/, "");
  const seabios = aptVersion("seabios", "1.16.2");
  // qemu-system-common carries 7.2's modules, TCG's accelerator among them.
  const pkgs = [
    `qemu-system-x86=${version}`,
    `qemu-system-common=${version}`,
    `qemu-system-data=${dataVersion}`,
  ];
  if (seabios) pkgs.push(`seabios=${seabios}`);
  log(`unpacking QEMU ${version} into ${path.relative(root, QEMU72_DIR)} (compatibility suite)`);
  const tmp = `${QEMU72_DIR}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(path.join(tmp, "debs"), { recursive: true });
  // apt's sandbox user cannot write into a root-owned cache dir; the download is verified
  // against the signed lists either way.
  chmodSync(path.join(tmp, "debs"), 0o777);
  run("apt-get", ["download", "-q", ...pkgs], { cwd: path.join(tmp, "debs") });
  for (const deb of readdirSync(path.join(tmp, "debs"))) {
    run("dpkg", ["-x", path.join(tmp, "debs", deb), path.join(tmp, "root")]);
  }
  rmSync(path.join(tmp, "debs"), { recursive: true });
  writeFileSync(
    path.join(tmp, "qemu-system-x86_64"),
    [
      "#!/bin/sh",
      `# QEMU ${version} unpacked from Debian 12's packages by scripts/ensure.mjs, run with its own`,
      "# firmware (-L) and module dir so nothing of the system's QEMU 10 leaks in.",
      'here=$(dirname "$(readlink -f "$0")")',
      'QEMU_MODULE_DIR="$here/root/usr/lib/x86_64-linux-gnu/qemu" exec "$here/root/usr/bin/qemu-system-x86_64" \\',
      '  -L "$here/root/usr/share/qemu" -L "$here/root/usr/share/seabios" -L /usr/lib/ipxe/qemu "$@"',
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  renameSync(tmp, QEMU72_DIR);
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
if (!process.argv.includes("--no-qemu72")) ensureQemu72();
ensureNpmDeps();
ensureBuild();
if (!process.argv.includes("--no-image")) ensureGuestImage();
