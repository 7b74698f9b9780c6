// The migration data paths take no unauthenticated peer off loopback (issue 12, point 3;
// docs/migration.md, "Who listens where").
//
// - QEMU's own listeners with TLS, on QEMU 10 and 7.2 alike (a bare QEMU waiting for a
//   migration, its NBD server exporting a node): garbage sent to the migration port, a
//   plain `nbd://` client (Debian's qemu-img and qemu-io) and a client certificate from
//   another CA are refused and QEMU goes on waiting; the DWCP relay's own TLS client
//   (what it uses when `auto` chose DWCP) gets in, and only for the right host name.
// - Two agents with QEMU TLS directories, data addresses 127.0.0.2 and 127.0.0.3 (so that
//   loopback and the data address differ): transport `qemu` moves a VM with its disk
//   mirror over TLS while the same attacks on the destination's listeners fail, and
//   transport `dwcp` moves it back with the destination QEMU listening on 127.0.0.1 only.
// - Across the emulated `wan` (root only; skipped otherwise), `auto` chooses DWCP: the
//   relay is a TLS client of the destination's migration listener, which stays on the
//   data address, and the NBD export has moved to 127.0.0.1.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../src/agent/free-port.js";
import type { AgentIncomingEndpoints } from "../src/api/types/agent.js";
import { nbdServerStart, queryBlockExports, queryMigrate } from "../src/compute/qemu/commands.js";
import { addTlsCreds, nodeTlsClientOptions, tlsAuthzId } from "../src/compute/qemu/qemu-tls.js";
import { QmpClient } from "../src/compute/qemu/qmp.js";
import { writeQemuTlsDir } from "../src/compute/qemu/tls-dir.js";
import { waitFor } from "../src/lib/wait.js";
import { connectLocal } from "../src/migration/dwcp/socket-io.js";
import { createCsr } from "../src/security/pki.js";
import { loadServerPki } from "../src/server/server-pki.js";
import { haveOpenssl, makeTestCa, type TestCa } from "../src/testing/tls-fixtures.js";
import { ADDR_A, ADDR_B, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";
import { guestImageManifest, qemuPidsUnder, ROOT, TestCluster } from "./helpers/cluster.js";

const execFileAsync = promisify(execFile);
const QEMU10 = "qemu-system-x86_64";
const QEMU72 = path.join(ROOT, ".cache", "qemu-7.2", "qemu-system-x86_64");
const SERVER_PORT = 17890;
const AGENTS = {
  t1: { port: 17891, data: "127.0.0.2" },
  t2: { port: 17892, data: "127.0.0.3" },
} as const;
const GUEST = "nc.pattern_seed=12 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2";

const missing = haveOpenssl() ? null : "the openssl command is missing";
const noWan = missing ?? emulatorUnavailableReason();
if (noWan && !missing) console.warn(`QEMU TLS suite: skipping the emulated WAN case: ${noWan}`);
const WAN_PORT = 17895;
if (missing) console.warn(`Skipping the QEMU TLS suite: ${missing}`);

/** Sends `bytes` on a plain TCP connection; resolves when the peer closed it. */
function sendGarbage(host: string, port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`${host}:${port} kept a garbage connection open for 10 s`));
    }, 10_000);
    s.on("connect", () => s.write(bytes));
    s.on("error", () => undefined);
    s.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
    s.resume();
  });
}

/**
 * A TLS client with a certificate from another CA (trusting any server, to get as far as
 * possible): resolves with how the listener ended it; data it answered is an error.
 */
function rogueTls(
  host: string,
  port: number,
  rogue: { ca: string; cert: string; key: string },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host, port, cert: rogue.cert, key: rogue.key, rejectUnauthorized: false });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`${host}:${port} kept a rogue TLS connection open for 10 s`));
    }, 10_000);
    let how = "closed";
    // TLS 1.3: the client's handshake ends before the server has judged its certificate,
    // so write, and let the server's alert (or close) answer.
    s.on("secureConnect", () => s.write(Buffer.alloc(64, 0x51)));
    s.on("data", () => reject(new Error("the listener answered a client from another CA")));
    s.on("error", (err) => {
      how = err.message;
    });
    s.on("close", () => {
      clearTimeout(timer);
      resolve(how);
    });
  });
}

/** A plain NBD client's attempt on the export; resolves with its error output. */
async function plainNbd(args: string[]): Promise<string> {
  const [cmd, ...rest] = args;
  try {
    await execFileAsync(cmd!, rest, { timeout: 20_000 });
  } catch (err) {
    return String((err as { stderr?: string }).stderr ?? err);
  }
  throw new Error(`${args.join(" ")} succeeded against a TLS-only export`);
}

/** TCP listeners of process `pid`, as "address:port" (ss, in network namespace `ns`). */
/** QEMU's TLS directory for one host of the test CA. */
function qemuTlsDir(dir: string, ca: TestCa, leaf: { cert: string; key: string }): Promise<string> {
  return writeQemuTlsDir(dir, { caPem: ca.ca, certPem: leaf.cert, keyPem: leaf.key });
}

/** Imports the guest image on `host` only and boots VM `name` there until its first verification. */
async function bootGuest(c: TestCluster, name: string, host: string): Promise<void> {
  const manifest = await guestImageManifest();
  const res = await c.cli(["image", "import", "guest", "--manifest", manifest, "--host", host]);
  expect(res.code, res.stderr).toBe(0);
  const vm = await c.api("POST", "/v1/vms", { name, image: "guest", memoryMiB: 256, kernelArgs: GUEST });
  expect(vm.status, JSON.stringify(vm.body)).toBe(201);
  await c.waitVmState(name, "running", 120_000);
  await c.waitConsole(name, /NC-VERIFY PASS seed=12 .*round=1/);
}

async function listenersOf(pid: number, ns?: string): Promise<string[]> {
  const { stdout } = ns
    ? await execFileAsync("ip", ["netns", "exec", ns, "ss", "-ltnpH"])
    : await execFileAsync("ss", ["-ltnpH"]);
  return stdout
    .split("\n")
    .filter((l) => l.includes(`pid=${pid},`))
    .map((l) => l.trim().split(/\s+/)[3]!);
}

/**
 * Runs `fn` against a QEMU with no machine, waiting for an incoming migration, reached by
 * QMP (the listeners under test are added through it); kills it afterwards.
 */
async function withBareQemu(
  bin: string,
  run: string,
  fn: (qmp: QmpClient, qemu: ChildProcess) => Promise<void>,
): Promise<void> {
  const qmpPath = path.join(run, "qmp.sock");
  const qemu: ChildProcess = spawn(
    bin,
    [
      ...["-machine", "none", "-nodefaults", "-display", "none", "-incoming", "defer"],
      ...["-qmp", `unix:${qmpPath},server=on,wait=off`],
      ...["-blockdev", "driver=null-co,node-name=disk0,size=67108864"],
    ],
    { stdio: "ignore" },
  );
  const exited = new Promise<number | null>((r) => qemu.once("exit", r));
  try {
    const qmp = await waitFor(() => QmpClient.connect(qmpPath).catch(() => undefined), {
      timeoutMs: 20_000,
      what: "QEMU's QMP socket",
    });
    await fn(qmp, qemu);
    await qmp.close();
  } finally {
    qemu.kill("SIGKILL");
    await exited;
  }
}

describe.skipIf(missing !== null)("QEMU's listeners with TLS", { timeout: 240_000 }, () => {
  let ca: TestCa;
  let other: TestCa;
  let dir: string;

  beforeAll(async () => {
    ca = makeTestCa();
    other = makeTestCa("nc-test-other-ca");
    dir = await mkdtemp("/tmp/nc-qemu-tls-");
  });

  afterAll(async () => {
    ca?.close();
    other?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const binaries = [QEMU10, ...(existsSync(QEMU72) ? [QEMU72] : [])];
  if (binaries.length === 1) console.warn(`QEMU TLS suite: ${QEMU72} is missing, QEMU 10 only`);

  it.each(binaries)(
    "%s refuses garbage, plain NBD and another CA's certificate, and keeps waiting",
    async (bin) => {
      const run = await mkdtemp(path.join(dir, "bare-"));
      const tlsDir = await qemuTlsDir(path.join(run, "tls"), ca, ca.issue("dst.test"));
      await withBareQemu(bin, run, async (qmp, qemu) => {
        const creds = await addTlsCreds(qmp, { id: "nc-tls-server-t", dir: tlsDir, endpoint: "server" });
        const migratePort = await freePort("127.0.0.1");
        const nbdPort = await freePort("127.0.0.1");
        await qmp.execute("nbd-server-start", {
          addr: { type: "inet", data: { host: "127.0.0.1", port: String(nbdPort) } },
          "tls-creds": creds,
          "tls-authz": tlsAuthzId(creds),
        });
        await qmp.execute("block-export-add", {
          type: "nbd",
          id: "e",
          "node-name": "disk0",
          name: "e",
          writable: true,
        });
        await qmp.execute("migrate-set-parameters", { "tls-creds": creds, "tls-authz": tlsAuthzId(creds) });
        await qmp.execute("migrate-incoming", { uri: `tcp:127.0.0.1:${migratePort}` });

        await sendGarbage("127.0.0.1", migratePort, Buffer.from("QEVM\0\0\0\x03garbage".repeat(64)));
        expect(await plainNbd(["qemu-img", "info", `nbd://127.0.0.1:${nbdPort}/e`])).toMatch(/TLS/);
        expect(
          await plainNbd([
            "qemu-io",
            "-f",
            "raw",
            "-c",
            "write -P 0x55 0 4k",
            `nbd://127.0.0.1:${nbdPort}/e`,
          ]),
        ).toMatch(/TLS/);
        const rogue = other.issue("dst.test");
        console.log(
          `[qemu-tls] ${bin}: another CA's client certificate: ${await rogueTls("127.0.0.1", migratePort, { ca: other.ca, ...rogue })}`,
        );
        // The relay's client checks the listener's name like a source QEMU does.
        const wrongName = nodeTlsClientOptions({ dir: tlsDir }, "elsewhere.test");
        await expect(connectLocal({ host: "127.0.0.1", port: migratePort, tls: wrongName })).rejects.toThrow(
          /elsewhere\.test|altnames/,
        );

        // Still waiting, export in place, nothing failed.
        expect(qemu.exitCode).toBeNull();
        expect((await queryMigrate(qmp)).status ?? "none").not.toBe("failed");
        expect(await queryBlockExports(qmp)).toEqual(["e"]);

        // The relay's own way in (auto chose DWCP): the host's certificate, the host's name.
        const relay = await connectLocal({
          host: "127.0.0.1",
          port: migratePort,
          tls: nodeTlsClientOptions({ dir: tlsDir }, "dst.test"),
        });
        expect((relay as tls.TLSSocket).authorized).toBe(true);
        relay.destroy();
      });
    },
  );

  it.each(binaries)(
    "%s refuses a metrics scraper's certificate of the cluster CA on both listeners, and takes a host's",
    async (bin) => {
      const run = await mkdtemp(path.join(dir, "scraper-"));
      // The cluster PKI as the server runs it: its CA, a host's certificate, a scraper's.
      const pki = await loadServerPki({ dataDir: path.join(run, "server") });
      const hostCsr = await createCsr("127.0.0.1");
      const hostCert = await pki.issueHostCert(hostCsr.csrPem, { id: randomUUID(), name: "127.0.0.1" });
      const scraperCsr = await createCsr("scraper-prom");
      const scraperCert = await pki.issueScraperCert(scraperCsr.csrPem, "prom", 30);
      const asHost = { caPem: pki.ca.certPem, certPem: hostCert, keyPem: hostCsr.keyPem };
      const asScraper = { caPem: pki.ca.certPem, certPem: scraperCert, keyPem: scraperCsr.keyPem };
      const tlsDir = await writeQemuTlsDir(path.join(run, "tls"), asHost);
      const scraperDir = await writeQemuTlsDir(path.join(run, "tls-scraper"), asScraper);
      await withBareQemu(bin, run, async (qmp, qemu) => {
        const creds = await addTlsCreds(qmp, { id: "nc-tls-server-s", dir: tlsDir, endpoint: "server" });
        const nbdPort = await freePort("127.0.0.1");
        const migratePort = await freePort("127.0.0.1");
        // What the agent does for an incoming migration (startNbdExport, startIncoming).
        await nbdServerStart(qmp, {
          host: "127.0.0.1",
          port: nbdPort,
          tlsCreds: creds,
          tlsAuthz: tlsAuthzId(creds),
        });
        await qmp.execute("block-export-add", {
          type: "nbd",
          id: "e",
          "node-name": "disk0",
          name: "e",
          writable: true,
        });
        await qmp.execute("migrate-set-parameters", { "tls-creds": creds, "tls-authz": tlsAuthzId(creds) });
        await qmp.execute("migrate-incoming", { uri: `tcp:127.0.0.1:${migratePort}` });

        // NBD over TLS as QEMU's own client does it (the source's block mirror): the scraper
        // is refused, the host gets in.
        const nbdInfo = (tls: string) =>
          execFileAsync(
            "qemu-img",
            [
              "info",
              "--object",
              `tls-creds-x509,id=tls0,dir=${tls},endpoint=client`,
              "--image-opts",
              `driver=nbd,host=127.0.0.1,port=${nbdPort},export=e,tls-creds=tls0`,
            ],
            { timeout: 20_000 },
          );
        await expect(nbdInfo(scraperDir)).rejects.toThrow();
        expect((await nbdInfo(tlsDir)).stdout).toMatch(/virtual size: 64 MiB/);

        // The migration port: the scraper's handshake is refused without an answer.
        console.log(
          `[qemu-tls] ${bin}: a scraper's certificate on the migration port: ${await rogueTls("127.0.0.1", migratePort, { ca: pki.ca.certPem, cert: scraperCert, key: scraperCsr.keyPem })}`,
        );
        expect(qemu.exitCode).toBeNull();
        expect((await queryMigrate(qmp)).status ?? "none").not.toBe("failed");
        // A host's certificate still gets in (as a source QEMU or the DWCP relay would).
        const relay = await connectLocal({
          host: "127.0.0.1",
          port: migratePort,
          tls: nodeTlsClientOptions({ dir: tlsDir }, "127.0.0.1"),
        });
        expect((relay as tls.TLSSocket).authorized).toBe(true);
        relay.destroy();
      });
    },
  );

  describe("between two agents", () => {
    let c: TestCluster;

    beforeAll(async () => {
      c = await TestCluster.create(SERVER_PORT);
      await c.startServer(["--heartbeat-timeout", "10"]);
      for (const [name, a] of Object.entries(AGENTS)) {
        const tlsDir = await qemuTlsDir(path.join(dir, `agent-${name}`), ca, ca.issue(name, [a.data]));
        await c.startAgent(name, a.port, [
          ...["--memory", "1024", "--stop-grace", "5"],
          ...["--data-address", a.data, "--qemu-tls-dir", tlsDir],
        ]);
      }
      await bootGuest(c, "s", "t1");
    }, 240_000);

    afterAll(async () => {
      await c?.destroy();
    });

    interface MigrationBody {
      id: string;
      state: string;
      stateReason: string;
      transport: string;
    }

    async function lastRound(): Promise<number> {
      const lines = await c.console("s", 400);
      return Math.max(
        0,
        ...lines.map((l) => Number(/NC-VERIFY PASS seed=12 .*round=(\d+)/.exec(l)?.[1] ?? 0)),
      );
    }

    async function expectIntactAfter(round: number): Promise<void> {
      const lines = await waitFor(
        async () => {
          const l = await c.console("s", 400);
          return (await lastRound()) > round ? l : undefined;
        },
        { timeoutMs: 60_000, what: `a verification round after ${round}` },
      );
      expect(lines.filter((l) => l.includes("NC-VERIFY FAIL") || l.includes("NC-ERROR"))).toEqual([]);
    }

    /** The destination QEMU's TCP listeners once it listens on both (migration, NBD). */
    async function destinationListeners(
      vmId: string,
      target: string,
    ): Promise<{ pid: number; addrs: string[] }> {
      return waitFor(
        async () => {
          const [pid] = await qemuPidsUnder(path.join(c.agentDir(target), "vms", vmId));
          if (pid === undefined) return undefined;
          const addrs = await listenersOf(pid);
          return addrs.length >= 2 ? { pid, addrs } : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 50, what: "the destination QEMU's listeners" },
      );
    }

    /** The endpoints the destination agent handed out (kept in its vm.json). */
    async function endpointsOf(vmId: string, target: string): Promise<AgentIncomingEndpoints> {
      return waitFor(
        async () => {
          const file = path.join(c.agentDir(target), "vms", vmId, "vm.json");
          const vm = JSON.parse(await readFile(file, "utf8")) as {
            incoming?: { endpoints?: AgentIncomingEndpoints };
          };
          return vm.incoming?.endpoints;
        },
        { timeoutMs: 30_000, what: `the endpoints in ${target}'s vm.json` },
      );
    }

    it("transport qemu: memory and disk over TLS; the destination refuses garbage, plain NBD and another CA", async () => {
      const vm = (await c.vm("s")) as { id: string; host: string };
      expect(vm.host).toBe("t1");
      const round = await lastRound();
      // Capped so that the destination listens long enough to be attacked meanwhile.
      const res = await c.api<MigrationBody>("POST", "/v1/vms/s/migrations", {
        targetHost: "t2",
        options: { transport: "qemu", maxBandwidthMiBps: 16, timeoutSeconds: 150 },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const { pid, addrs } = await destinationListeners(vm.id, "t2");
      console.log(`[qemu-tls] destination QEMU (qemu transport) listens on ${addrs.join(", ")}`);
      expect(addrs.every((a) => a.startsWith(`${AGENTS.t2.data}:`))).toBe(true);
      const host = AGENTS.t2.data;
      const ep = await endpointsOf(vm.id, "t2");
      expect(ep.tls).toEqual({ hostname: "t2" });
      const nbdPort = ep.nbd.port;
      const migratePort = Number(ep.migrateUri.slice(ep.migrateUri.lastIndexOf(":") + 1));
      expect(ep.nbd.host).toBe(host);
      expect(ep.migrateUri).toBe(`tcp:${host}:${migratePort}`);
      // Even knowing the export's name, a plain client is refused before it may name it.
      const url = `nbd://${host}:${nbdPort}/${ep.nbd.exportName}`;
      expect(await plainNbd(["qemu-img", "info", url])).toMatch(/TLS/);
      expect(await plainNbd(["qemu-io", "-f", "raw", "-c", "write -P 0x55 0 4k", url])).toMatch(/TLS/);
      for (const port of [nbdPort, migratePort])
        await sendGarbage(host, port, Buffer.from("QEVM\0\0\0\x03garbage".repeat(64)));
      const rogue = { ca: other.ca, ...other.issue("t1") };
      console.log(`[qemu-tls] migration port, another CA: ${await rogueTls(host, migratePort, rogue)}`);
      const m = await c.waitMigrationEnd<MigrationBody>(res.body.id);
      expect(m.state, m.stateReason).toBe("completed");
      expect(m.transport).toBe("qemu");
      expect((await c.waitVmState("s", "running", 60_000)).host).toBe("t2");
      expect(await qemuPidsUnder(path.join(c.agentDir("t2"), "vms", vm.id))).toEqual([pid]);
      await expectIntactAfter(round);
    });

    it("transport dwcp: the destination QEMU listens on 127.0.0.1 only, behind the relay", async () => {
      const vm = (await c.vm("s")) as { id: string; host: string };
      const round = await lastRound();
      const res = await c.api<MigrationBody>("POST", "/v1/vms/s/migrations", {
        targetHost: "t1",
        options: { transport: "dwcp", maxBandwidthMiBps: 16, timeoutSeconds: 150 },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const { addrs } = await destinationListeners(vm.id, "t1");
      const ep = await endpointsOf(vm.id, "t1");
      expect(ep.tls).toBeUndefined();
      expect(ep.nbd.host).toBe("127.0.0.1");
      expect(ep.migrateUri).toMatch(/^tcp:127\.0\.0\.1:\d+$/);
      console.log(`[qemu-tls] destination QEMU (dwcp transport) listens on ${addrs.join(", ")}`);
      expect(addrs.every((a) => a.startsWith("127.0.0.1:"))).toBe(true);
      const m = await c.waitMigrationEnd<MigrationBody>(res.body.id);
      expect(m.state, m.stateReason).toBe("completed");
      expect(m.transport).toBe("dwcp");
      expect((await c.waitVmState("s", "running", 60_000)).host).toBe("t1");
      await expectIntactAfter(round);
    });
  });
  describe.skipIf(noWan !== null)("auto across an emulated WAN (DWCP chosen)", () => {
    let link: WanLink;
    let c: TestCluster;

    beforeAll(async () => {
      link = await WanLink.create({ spec: "wan", management: true });
      c = await TestCluster.create(WAN_PORT);
      await c.startServer(["--heartbeat-timeout", "10"], { listenHost: "0.0.0.0" });
      const sites = [
        { name: "w1", ns: link.nsA, mgmt: link.management!.a, data: ADDR_A, port: WAN_PORT + 1 },
        { name: "w2", ns: link.nsB, mgmt: link.management!.b, data: ADDR_B, port: WAN_PORT + 2 },
      ];
      for (const w of sites) {
        const tlsDir = await qemuTlsDir(path.join(dir, `agent-${w.name}`), ca, ca.issue(w.name, [w.data]));
        await c.startAgent(
          w.name,
          w.port,
          [
            ...["--memory", "1024", "--stop-grace", "5"],
            ...["--data-address", w.data, "--qemu-tls-dir", tlsDir],
          ],
          { netns: w.ns, host: w.mgmt, serverUrl: `https://${link.management!.host}:${WAN_PORT}` },
        );
      }
      await bootGuest(c, "w", "w1");
    }, 240_000);

    afterAll(async () => {
      await c?.destroy();
      await link?.close();
    });

    it("the relay meets the destination QEMU's TLS listener as a TLS client and its export on loopback", async () => {
      const vm = (await c.vm("w")) as { id: string; host: string };
      expect(vm.host).toBe("w1");
      const res = await c.api<{ id: string }>("POST", "/v1/vms/w/migrations", {
        targetHost: "w2",
        options: { timeoutSeconds: 200 },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      // Once DWCP carries the disk, the export listens on loopback; the migration
      // listener stays on the data address, TLS only.
      const seen = await waitFor(
        async () => {
          const [pid] = await qemuPidsUnder(path.join(c.agentDir("w2"), "vms", vm.id));
          if (pid === undefined) return undefined;
          const addrs = await listenersOf(pid, link.nsB);
          return addrs.some((a) => a.startsWith("127.0.0.1:")) ? addrs : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 50, what: "the destination's export to move to loopback" },
      );
      console.log(`[qemu-tls] destination QEMU (auto, DWCP chosen) listens on ${seen.join(", ")}`);
      expect(seen.every((a) => a.startsWith("127.0.0.1:") || a.startsWith(`${ADDR_B}:`))).toBe(true);
      // On the data address only the migration listener, which takes TLS clients only.
      expect(seen.filter((a) => a.startsWith(`${ADDR_B}:`)).length).toBeLessThanOrEqual(1);
      const m = await c.waitMigrationEnd<{ state: string; stateReason: string; transport: string }>(
        res.body.id,
        240_000,
      );
      if (m.state !== "completed") {
        for (const name of ["w1", "w2"])
          console.log(`--- ${name} ---\n${c.daemons.get(name)?.output.slice(-30).join("\n")}`);
      }
      expect(m.state, m.stateReason).toBe("completed");
      expect(m.transport).toBe("dwcp");
      expect((await c.waitVmState("w", "running", 60_000)).host).toBe("w2");
      const lines = await c.console("w", 400);
      expect(lines.filter((l) => l.includes("NC-VERIFY FAIL") || l.includes("NC-ERROR"))).toEqual([]);
    });
  });
});
