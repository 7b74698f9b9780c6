// QEMU versions and machine types on the server side (issue 10), on a real PostgreSQL
// server and on PGlite: registration refused for a missing or too old QEMU (REST, and the
// agent's server link giving up with the server's message), the host resource and
// heartbeats carrying the QEMU, VM create pinning or recording a machine type and placing
// only where it runs, migrations refused before anything changes when the destination's
// QEMU lacks the VM's machine type, and `novacron agent` stopping on a missing QEMU with
// the configuration exit code. No QEMU is started (the agents here are fakes).
import { mkdtemp, rm } from "node:fs/promises";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ServerLink } from "../src/agent/server-link.js";
import type { AgentRegisterPost, QemuInfo } from "../src/api/types/agent.js";
import { runCli } from "../src/cli/main.js";
import { upsertHost } from "../src/cluster/store/hosts.js";
import { addImageLocation, insertImage } from "../src/cluster/store/images.js";
import { listMigrations } from "../src/cluster/store/migrations.js";
import type { Store } from "../src/cluster/store/store.js";
import { getVm, insertVm, recordMachineType } from "../src/cluster/store/vms.js";
import { VmService } from "../src/cluster/vm-service.js";
import { launcher } from "../src/daemons/launch.js";
import { isNovaError } from "../src/lib/errors.js";
import { QEMU_6_2_0, QEMU_7_2_22, QEMU_10_0_2 } from "../src/lib/qemu-info.test-util.js";
import { MigrationService } from "../src/migration/migration-service.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";
import { ENGINES, storePerSuite, type TestDatabase } from "./helpers/databases.js";
import { TEST_IMAGE } from "./helpers/store-fixtures.js";
import { type Caller, type HostCreds, tlsApi } from "./helpers/tls-callers.js";

interface ApiError {
  error: { code: string; message: string; details: Record<string, unknown> };
}

const capacity = (memoryMiB: number) => ({
  accel: "tcg" as const,
  accelReason: "test",
  vcpus: 2,
  memoryMiB,
  diskTotalBytes: 1e10,
  diskFreeBytes: 5e9,
});
const registration = (
  name: string,
  qemu: QemuInfo | undefined,
  memoryMiB = 4096,
): Omit<AgentRegisterPost, "csr"> => ({
  name,
  // Nothing listens there: the reconciler's calls fail as unreachable and are retried.
  agentUrl: "http://127.0.0.1:9",
  agentVersion: "0.1.0",
  capacity: capacity(memoryMiB),
  ...(qemu ? { qemu } : {}),
});
const image = { name: "guest", diskDigest: "sha256:d", ...TEST_IMAGE };

describe.each(ENGINES)("QEMU versions over REST on $engine", ({ engine, create }) => {
  let tdb: TestDatabase;
  let dir: string;
  let server: RunningServer;
  let admin: string;
  const tokens = new Map<string, HostCreds>();
  let tls: ReturnType<typeof tlsApi>;
  const api = <T>(method: string, route: string, who: Caller, body?: unknown) =>
    tls.api<T>(method, route, who, body);

  beforeAll(async () => {
    tdb = await create();
    dir = await mkdtemp("/tmp/nc-qemu-versions-");
    server = await startServer({
      dataDir: dir,
      port: 0,
      heartbeatTimeoutMs: 600_000,
      execWorkers: false,
      ...(engine === "postgres" ? { databaseUrl: tdb.url! } : {}),
      logger: pino({ level: "silent" }),
    });
    admin = server.created.admin!;
    tls = tlsApi(server);
  });
  afterAll(async () => {
    await server?.close();
    await tdb?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses a registration without a QEMU version (an older agent), saying to upgrade it", async () => {
    const join = await tls.joinToken(admin, "old-agent");
    const res = await tls.register<ApiError>(join, registration("old-agent", undefined));
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe("NOVA_QEMU_UNSUPPORTED");
    expect(res.body.error.message).toMatch(
      /^Host old-agent's agent \(version 0\.1\.0\) did not report its QEMU version.*Upgrade the agent/,
    );
    expect((await api<{ hosts: unknown[] }>("GET", "/v1/hosts", admin)).body.hosts).toEqual([]);
  });

  it("refuses a registration reporting a QEMU older than 7.2, naming it and how to install one", async () => {
    const res = await tls.register<ApiError>(
      await tls.joinToken(admin, "old-qemu"),
      registration("old-qemu", QEMU_6_2_0),
    );
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe("NOVA_QEMU_UNSUPPORTED");
    expect(res.body.error.message).toContain(
      "Host old-qemu runs QEMU 6.2.0 (/usr/bin/qemu-system-x86_64: QEMU emulator version 6.2.0 (Debian 1:6.2+dfsg-2ubuntu6)), too old; NovaCron needs QEMU 7.2 or newer",
    );
    expect(res.body.error.message).toContain("bookworm-backports");
    expect(res.body.error.details).toMatchObject({ host: "old-qemu", found: "6.2.0", minimum: "7.2" });
    expect((await api<{ hosts: unknown[] }>("GET", "/v1/hosts", admin)).body.hosts).toEqual([]);
  });

  it("an agent's server link gives up at once with the server's refusal instead of retrying", async () => {
    const link = new ServerLink({
      serverUrls: [server.url],
      joinToken: await tls.joinToken(admin, "old-link"),
      dataDir: dir,
      heartbeatIntervalMs: 60_000,
      agentUrl: "http://127.0.0.1:9",
      log: pino({ level: "silent" }),
      registration: async () => registration("old-link", QEMU_6_2_0),
      heartbeat: async () => ({ capacity: capacity(1024), vms: [], imageDigests: [] }),
    });
    const err = await link.start().catch((e: unknown) => e);
    await link.stop();
    if (!isNovaError(err, "NOVA_QEMU_UNSUPPORTED")) throw err;
    expect(err.message).toMatch(/^The server refused this agent: Host old-link runs QEMU 6\.2\.0/);
  });

  it("registers 7.2 and 10.0 hosts and shows their QEMU on the host resource", async () => {
    for (const [name, qemu, memory] of [
      ["h10", QEMU_10_0_2, 2048],
      ["h72", QEMU_7_2_22, 4096],
    ] as const) {
      const res = await tls.register(await tls.joinToken(admin, name), registration(name, qemu, memory));
      expect(res.status).toBe(200);
      tokens.set(name, res.creds!);
    }
    const h10 = await api<{ qemu: QemuInfo }>("GET", "/v1/hosts/h10", admin);
    expect(h10.body.qemu).toEqual(QEMU_10_0_2);
    const list = await api<{ hosts: { name: string; qemu: QemuInfo | null }[] }>("GET", "/v1/hosts", admin);
    expect(list.body.hosts.map((h) => [h.name, h.qemu?.version])).toEqual([
      ["h10", "10.0.2"],
      ["h72", "7.2.22"],
    ]);
  });

  it("heartbeats update the QEMU and refuse one older than 7.2", async () => {
    const beat = (qemu: QemuInfo | undefined) => ({
      agentUrl: "http://127.0.0.1:9",
      capacity: capacity(4096),
      vms: [],
      imageDigests: [],
      ...(qemu ? { qemu } : {}),
    });
    const old = await api<ApiError>("POST", "/v1/agent/heartbeat", tokens.get("h72")!, beat(QEMU_6_2_0));
    expect(old.status).toBe(422);
    expect(old.body.error.code).toBe("NOVA_QEMU_UNSUPPORTED");
    expect(old.body.error.message).toMatch(/^Host h72 runs QEMU 6\.2\.0/);
    const upgraded = { ...QEMU_7_2_22, micro: 23, version: "7.2.23" };
    expect((await api("POST", "/v1/agent/heartbeat", tokens.get("h72")!, beat(upgraded))).status).toBe(200);
    expect((await api<{ qemu: QemuInfo }>("GET", "/v1/hosts/h72", admin)).body.qemu.version).toBe("7.2.23");
    // An agent that does not send it keeps what was recorded.
    expect((await api("POST", "/v1/agent/heartbeat", tokens.get("h72")!, beat(undefined))).status).toBe(200);
    expect((await api<{ qemu: QemuInfo }>("GET", "/v1/hosts/h72", admin)).body.qemu.version).toBe("7.2.23");
    await api("POST", "/v1/agent/heartbeat", tokens.get("h72")!, beat(QEMU_7_2_22));
  });

  it("VM create pins a machine type or records the one q35 means on its host, placing only where it runs", async () => {
    const imageId = await insertImage(server.store.db, image);
    for (const host of ["h10", "h72"]) {
      const { id } = (await api<{ id: string }>("GET", `/v1/hosts/${host}`, admin)).body;
      await addImageLocation(server.store.db, imageId, id);
    }
    type Vm = { name: string; host: string; machineType: string | null };
    const createVm = (name: string, machineType?: string) =>
      api<Vm & ApiError>("POST", "/v1/vms", admin, {
        name,
        image: "guest",
        start: false,
        ...(machineType ? { machineType } : {}),
      });

    // h72 has the most free memory: unpinned VMs go there and get its q35.
    const plain = await createVm("plain");
    expect(plain.status).toBe(201);
    expect(plain.body).toMatchObject({ host: "h72", machineType: "pc-q35-7.2" });
    const alias = await createVm("alias", "q35");
    expect(alias.body).toMatchObject({ host: "h72", machineType: "pc-q35-7.2" });
    // pc-q35-10.0 only runs on h10, whatever the memory says.
    const ten = await createVm("ten", "pc-q35-10.0");
    expect(ten.status).toBe(201);
    expect(ten.body).toMatchObject({ host: "h10", machineType: "pc-q35-10.0" });
    const portable = await createVm("portable", "pc-q35-7.2");
    expect(portable.body).toMatchObject({ host: "h72", machineType: "pc-q35-7.2" });
    expect((await api<Vm>("GET", "/v1/vms/ten", admin)).body.machineType).toBe("pc-q35-10.0");

    const injected = await createVm("bad", "q35,accel=kvm");
    expect(injected.status).toBe(400);
    expect(injected.body.error.code).toBe("NOVA_BAD_REQUEST");
    const future = await createVm("future", "pc-q35-11.0");
    expect(future.status).toBe(422);
    expect(future.body.error.code).toBe("NOVA_MACHINE_TYPE_UNSUPPORTED");
    expect(future.body.error.message).toBe(
      "No host can run VM future as machine type pc-q35-11.0: h10: QEMU 10.0.2 (newest pc-q35-10.0); h72: QEMU 7.2.22 (newest pc-q35-7.2). Pick a machine type every host offers (e.g. --machine-type pc-q35-7.2, machineType in the API), or add a host with a newer QEMU.",
    );
    expect((await api<ApiError>("GET", "/v1/vms/future", admin)).status).toBe(404);
  });

  it("refuses to migrate a pc-q35-10.0 VM to QEMU 7.2 before anything changes", async () => {
    // Running as far as the server knows (no QEMU runs here).
    await server.store.db.query(
      "UPDATE vms SET state = 'running', desired_state = 'running' WHERE name = $1",
      ["ten"],
    );
    const before = (await api<{ generation: number; state: string }>("GET", "/v1/vms/ten", admin)).body;
    for (const body of [{ targetHost: "h72" }, {}]) {
      const res = await api<ApiError>("POST", "/v1/vms/ten/migrations", admin, body);
      expect(res.status).toBe(422);
      expect(res.body.error.code).toBe("NOVA_MACHINE_TYPE_UNSUPPORTED");
      expect(res.body.error.message).toBe(
        "Cannot migrate VM ten from h10 (QEMU 10.0.2) to h72 (QEMU 7.2.22): the VM's machine type is pc-q35-10.0, and on h72 QEMU 7.2.22 has no machine type pc-q35-10.0 (its newest is pc-q35-7.2; pc-q35-10.0 needs QEMU 10.0 or newer). A VM keeps its machine type for life: to make a VM movable to hosts with QEMU 7.2, create it with --machine-type pc-q35-7.2 (machineType in the API) or older.",
      );
      expect(res.body.error.details).toMatchObject({
        vm: "ten",
        machineType: "pc-q35-10.0",
        source: { host: "h10", qemu: "10.0.2" },
        targets: [{ host: "h72", qemu: "7.2.22", newestMachineType: "pc-q35-7.2" }],
      });
    }
    const after = (
      await api<{ generation: number; state: string; host: string }>("GET", "/v1/vms/ten", admin)
    ).body;
    expect(after).toMatchObject({ state: "running", host: "h10", generation: before.generation });
    expect((await api<{ migrations: unknown[] }>("GET", "/v1/migrations", admin)).body.migrations).toEqual(
      [],
    );
  });
});

describe.each(ENGINES)("machine types in the VM and migration services on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });
  let imageId = "";
  const hostIds = new Map<string, string>();

  /** A VM recorded as running on `host`, with `machineType` (null: created before they were recorded). */
  const runningVm = async (name: string, host: string, machineType: string | null) => {
    const { id } = await insertVm(store.db, {
      name,
      imageId,
      vcpus: 1,
      memoryMiB: 256,
      kernelArgs: "",
      desiredState: "running",
      hostId: hostIds.get(host)!,
      state: "scheduled",
      ...(machineType ? { machineType } : {}),
    });
    await store.db.query("UPDATE vms SET state = 'running' WHERE id = $1", [id]);
    return id;
  };

  beforeAll(async () => {
    for (const [name, qemu] of [
      ["h10", QEMU_10_0_2],
      ["h72", QEMU_7_2_22],
    ] as const) {
      const { id } = await upsertHost(store.db, {
        name,
        agentUrl: "http://127.0.0.1:9",
        certificate: null,
        agentVersion: "0.1.0",
        capacity: capacity(4096),
        qemu,
      });
      hostIds.set(name, id);
    }
    imageId = await insertImage(store.db, image);
    for (const id of hostIds.values()) await addImageLocation(store.db, imageId, id);
  });

  it("a VM from before machine types were recorded runs as its host's q35: refused to older QEMU, unchanged", async () => {
    const id = await runningVm("legacy10", "h10", null);
    const service = new MigrationService(store, () => {});
    const err = await service.create("legacy10", { targetHost: "h72" }).catch((e: unknown) => e);
    if (!isNovaError(err, "NOVA_MACHINE_TYPE_UNSUPPORTED")) throw err;
    expect(err.message).toMatch(/the VM's machine type is pc-q35-10\.0/);
    expect(await getVm(store.db, id)).toMatchObject({ state: "running", machineType: null });
    expect(await listMigrations(store.db)).toEqual([]);
  });

  it("an accepted migration records the machine type the destination must start", async () => {
    const id = await runningVm("legacy72", "h72", null);
    const service = new MigrationService(store, () => {});
    const m = await service.create("legacy72", { targetHost: "h10" });
    expect(m.state).toBe("queued");
    expect(await getVm(store.db, id)).toMatchObject({ state: "migrating", machineType: "pc-q35-7.2" });
  });

  it("a pinned pc-q35-7.2 VM moves from QEMU 10 to 7.2", async () => {
    await runningVm("portable", "h10", "pc-q35-7.2");
    const m = await new MigrationService(store, () => {}).create("portable", {});
    expect(m.targetHostId).toBe(hostIds.get("h72"));
  });

  it("records a machine type once and never changes it", async () => {
    const id = await runningVm("once", "h72", null);
    expect(await recordMachineType(store.db, id, "pc-q35-7.2")).toBe("pc-q35-7.2");
    expect(await recordMachineType(store.db, id, "pc-q35-10.0")).toBe("pc-q35-7.2");
    expect((await getVm(store.db, id)).machineType).toBe("pc-q35-7.2");
  });

  it("refuses to start a VM whose host's QEMU no longer offers its machine type", async () => {
    const id = await runningVm("downgraded", "h72", "pc-q35-7.2");
    await store.db.query("UPDATE vms SET state = 'stopped', desired_state = 'stopped' WHERE id = $1", [id]);
    await store.db.query("UPDATE vms SET machine_type = 'pc-q35-10.0' WHERE id = $1", [id]);
    const err = await new VmService(store, () => {}).start("downgraded").catch((e: unknown) => e);
    if (!isNovaError(err, "NOVA_MACHINE_TYPE_UNSUPPORTED")) throw err;
    expect(err.message).toMatch(
      /^Cannot start VM downgraded on h72: its machine type is pc-q35-10\.0 and QEMU 7\.2\.22 has no/,
    );
    expect((await getVm(store.db, id)).state).toBe("stopped");
  });

  it("the database refuses a machine type that is not pc-q35-X.Y", async () => {
    const id = await runningVm("checked", "h72", "pc-q35-7.2");
    await expect(
      store.db.query("UPDATE vms SET machine_type = 'q35,accel=kvm' WHERE id = $1", [id]),
    ).rejects.toThrow();
  });
});

describe("novacron agent with an unusable QEMU", () => {
  it("stops before joining, naming the path tried, with the configuration exit code", async () => {
    const dir = await mkdtemp("/tmp/nc-qemu-agent-");
    const stderr: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      stderr.push(String(chunk));
      return true;
    });
    try {
      const code = await runCli(
        [
          "node",
          "novacron",
          "agent",
          "--server",
          "https://127.0.0.1:9",
          "--join-token",
          "nvj1.x.0000000000000000000000000000000000000000000000000000000000000000",
          "--data-dir",
          dir,
          "--listen",
          "127.0.0.1:0",
          "--qemu-binary",
          "/nonexistent/qemu-system-x86_64",
        ],
        { loadDaemons: async () => launcher },
      );
      expect(code).toBe(2);
    } finally {
      spy.mockRestore();
      await rm(dir, { recursive: true, force: true });
    }
    const line = stderr.join("");
    expect(line).toMatch(
      /^novacron: QEMU not found: \/nonexistent\/qemu-system-x86_64 does not exist or is not executable; NovaCron needs QEMU 7\.2 or newer/,
    );
    expect(line).toContain("[NOVA_QEMU_UNSUPPORTED]");
  });
});
