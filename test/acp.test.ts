// ACP between two real servers (PGlite, mutual TLS, DWCP): the destination's answers to
// the source's statements that need no QEMU — a hand-off called off before it was
// prepared, a late prepare, a release of nothing, a forged or malformed statement, an
// image or a name the destination cannot take — each answered with a stable code and
// nothing recorded; a source that contradicts itself is quarantined with the proof. And
// the API's refusals of a migration to another cluster, each with nothing changed.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SignedStatement } from "../src/api/types/acp.js";
import { readClusterIdentity } from "../src/cluster/store/federation.js";
import type { PeerAnswer } from "../src/federation/acp/plan.js";
import { type StatementContent, signStatement, verifyStatement } from "../src/federation/acp/statements.js";
import { newSigningIdentity, privateKeyOf, publicKeyFromRaw } from "../src/federation/records.js";
import { peer, publishVm, startCluster, type TestCluster, until } from "./helpers/federation.js";
import { addHost, addImage, addVm, TEST_IMAGE } from "./helpers/store-fixtures.js";

describe("ACP between two servers", () => {
  let east!: TestCluster;
  let west!: TestCluster;
  let eastId!: string;
  let westId!: string;
  let sign!: (c: Omit<StatementContent, "issuedAt">) => SignedStatement;

  beforeAll(async () => {
    [east, west] = await Promise.all([startCluster("east"), startCluster("west")]);
    await peer(west, east);
    eastId = east.server.federation.self.id;
    westId = west.server.federation.self.id;
    const key = privateKeyOf({
      privateKeyPem: (await readClusterIdentity(east.server.store.read)).signingKeyPem,
    });
    sign = (c) => signStatement({ ...c, issuedAt: new Date().toISOString() }, key);
  }, 60_000);

  /** The last case stops west's server itself. */
  let westClosed = false;

  afterAll(async () => {
    await Promise.all([east?.server.close(), westClosed ? undefined : west?.server.close()]);
  });

  /** east (the source) asks west (the destination). */
  const ask = (
    request: Parameters<ReturnType<TestCluster["server"]["federation"]["acpClient"]>["request"]>[0],
  ) => east.server.federation.acpClient(westId).request(request);
  const ids = (handoff = randomUUID(), vm = randomUUID()) => ({
    handoff,
    vm,
    source: eastId,
    target: westId,
  });
  const refused = (a: PeerAnswer) => (a.kind === "refused" ? a.code : `not refused: ${JSON.stringify(a)}`);
  const incomingRows = async (handoff: string) =>
    (await west.server.store.db.query("SELECT state FROM acp_incoming WHERE id = $1", [handoff])).rows;
  const westVms = async (name: string) =>
    (await west.server.store.db.query("SELECT id FROM vms WHERE name = $1", [name])).rows.length;
  const spec = (name: string, diskDigest = "sha256:d") => ({
    name,
    vcpus: 1,
    memoryMiB: 64,
    kernelArgs: "",
    image: { name: "img", diskDigest, ...TEST_IMAGE },
  });

  it("knows no hand-off it never saw", async () => {
    expect(await ask({ type: "status", handoff: randomUUID() })).toEqual({ kind: "unknown" });
  });

  it("records an abort of a hand-off it never prepared, signs it, and refuses a late prepare", async () => {
    const h = ids();
    const a = await ask({
      type: "deliver",
      statement: sign({ ...h, kind: "abort", epoch: 2, detail: { vmName: "never-here" } }),
    });
    expect(a.kind).toBe("statement");
    const aborted = (a as Extract<PeerAnswer, { kind: "statement" }>).statement;
    expect(aborted).toMatchObject({ kind: "aborted", handoff: h.handoff, epoch: 2 });
    expect(verifyStatement(aborted, publicKeyFromRaw(west.server.federation.self.publicKey))).toBe(true);
    expect(await incomingRows(h.handoff)).toEqual([{ state: "aborted" }]);
    // The abort named the VM, so the list of hand-offs shows which one was called off.
    const listed = await west.api<{ handoffs: { id: string; vm: string }[] }>(
      "GET",
      "/v1/federation/handoffs",
    );
    expect(listed.body.handoffs.find((x) => x.id === h.handoff)?.vm).toBe("never-here");
    // Asked again: the same answer.
    expect(await ask({ type: "status", handoff: h.handoff })).toMatchObject({
      kind: "statement",
      statement: { kind: "aborted" },
    });
    const late = await ask({
      type: "deliver",
      statement: sign({ ...h, kind: "prepare", epoch: 2, detail: spec("late-1") }),
    });
    expect(refused(late)).toBe("NOVA_ACP_ABORTED");
    expect(await westVms("late-1")).toBe(0);
  });

  it("counts every round trip at both ends and every transaction the hand-off committed", async () => {
    /** The novacron_acp_* samples of a server, by name and labels. */
    const acpMetrics = async (c: TestCluster) => {
      const text = await c.metrics();
      return Object.fromEntries(
        text
          .split("\n")
          .filter((l) => l.startsWith("novacron_acp_"))
          .map((l) => [l.slice(0, l.lastIndexOf(" ")), Number(l.slice(l.lastIndexOf(" ") + 1))]),
      );
    };
    const delta = (after: Record<string, number>, before: Record<string, number>) =>
      Object.fromEntries(
        Object.entries(after)
          .map(([k, v]) => [k, v - (before[k] ?? 0)] as const)
          .filter(([, v]) => v !== 0),
      );
    const [east0, west0] = await Promise.all([acpMetrics(east), acpMetrics(west)]);
    const h = ids();
    expect((await ask({ type: "deliver", statement: sign({ ...h, kind: "abort", epoch: 2 }) })).kind).toBe(
      "statement",
    );
    expect((await ask({ type: "status", handoff: h.handoff })).kind).toBe("statement");
    // A refusal is an answer too, and commits nothing.
    expect(
      refused(await ask({ type: "deliver", statement: sign({ ...ids(), kind: "release", epoch: 2 }) })),
    ).toBe("NOVA_ACP_PROTOCOL");
    expect(delta(await acpMetrics(east), east0)).toEqual({
      'novacron_acp_requests_total{role="sent",request="abort"}': 1,
      'novacron_acp_requests_total{role="sent",request="status"}': 1,
      'novacron_acp_requests_total{role="sent",request="release"}': 1,
    });
    // West committed once: the abort of a hand-off it never prepared, recorded `aborted`.
    expect(delta(await acpMetrics(west), west0)).toEqual({
      'novacron_acp_requests_total{role="answered",request="abort"}': 1,
      'novacron_acp_requests_total{role="answered",request="status"}': 1,
      'novacron_acp_requests_total{role="answered",request="release"}': 1,
      'novacron_acp_commits_total{side="destination"}': 1,
    });
  });

  it("refuses a release of a hand-off it never prepared", async () => {
    const h = ids();
    expect(
      refused(await ask({ type: "deliver", statement: sign({ ...h, kind: "release", epoch: 2 }) })),
    ).toBe("NOVA_ACP_PROTOCOL");
    expect(await incomingRows(h.handoff)).toEqual([]);
  });

  it("refuses a statement not signed by the source, one naming other clusters, and a kind it does not take", async () => {
    const h = ids();
    const forged = signStatement(
      { ...h, kind: "prepare", epoch: 2, issuedAt: "t", detail: spec("forged-1") },
      privateKeyOf(newSigningIdentity()),
    );
    expect(refused(await ask({ type: "deliver", statement: forged }))).toBe("NOVA_ACP_PROTOCOL");
    const other = sign({ ...h, target: randomUUID(), kind: "prepare", epoch: 2, detail: spec("other-1") });
    expect(refused(await ask({ type: "deliver", statement: other }))).toBe("NOVA_ACP_PROTOCOL");
    expect(refused(await ask({ type: "deliver", statement: sign({ ...h, kind: "owned", epoch: 2 }) }))).toBe(
      "NOVA_ACP_PROTOCOL",
    );
    expect(await incomingRows(h.handoff)).toEqual([]);
    expect(await westVms("forged-1")).toBe(0);
  });

  it("refuses a prepare that carries no VM it can start, an image it lacks, or a name it has", async () => {
    const malformed = ids();
    const bad = await ask({
      type: "deliver",
      statement: sign({ ...malformed, kind: "prepare", epoch: 2, detail: { name: "x", vcpus: "many" } }),
    });
    expect(refused(bad)).toBe("NOVA_ACP_PROTOCOL");
    const noImage = ids();
    const lacks = await ask({
      type: "deliver",
      statement: sign({ ...noImage, kind: "prepare", epoch: 2, detail: spec("web-9", "sha256:nowhere") }),
    });
    expect(refused(lacks)).toBe("NOVA_NOT_FOUND");
    expect(lacks.kind === "refused" && lacks.message).toMatch(/no image with the content of img/);
    const db = west.server.store.db;
    await addVm(db, "taken-1", await addImage(db, "img"), await addHost(db, "w-h1"));
    const clash = ids();
    const named = await ask({
      type: "deliver",
      statement: sign({ ...clash, kind: "prepare", epoch: 2, detail: spec("taken-1") }),
    });
    expect(refused(named)).toBe("NOVA_FED_NAME_CLASH");
    for (const h of [malformed, noImage, clash]) expect(await incomingRows(h.handoff)).toEqual([]);
    expect(await westVms("web-9")).toBe(0);
    expect(await westVms("taken-1")).toBe(1);
  });

  it("refuses a migration to another cluster through the API with a stable code, changing nothing", async () => {
    await publishVm(east, "mover-1", "e-h1");
    await east.server.store.db.query("UPDATE vms SET state = 'running' WHERE name = 'mover-1'");
    await publishVm(west, "mover-2", "w-h2");
    await east.server.store.db.query(
      "INSERT INTO vms (id, name, image_id, vcpus, memory_mib, desired_state, state, host_id) SELECT $1, 'mover-2', image_id, 1, 64, 'running', 'running', host_id FROM vms WHERE name = 'mover-1'",
      [randomUUID()],
    );
    await until("west's VMs at east", async () =>
      (await east.api<{ vms: { name: string }[] }>("GET", "/v1/federation/vms")).body.vms.some(
        (v) => v.name === "mover-2",
      ),
    );
    const migrate = (vm: string, body: Record<string, unknown>) =>
      east.api<{ error: { code: string; message: string } }>("POST", `/v1/vms/${vm}/migrations`, body);
    const cases: [string, Record<string, unknown>, number, string][] = [
      ["mover-1", { targetCluster: "nowhere" }, 404, "NOVA_FED_PEER_UNKNOWN"],
      ["mover-1", { targetCluster: "west", options: { postcopy: true } }, 422, "NOVA_UNPROCESSABLE"],
      ["mover-1", { targetCluster: "west", options: { transport: "qemu" } }, 422, "NOVA_UNPROCESSABLE"],
      ["mover-1", { targetCluster: "west", targetHost: "w-nope" }, 404, "NOVA_NOT_FOUND"],
      // west publishes a VM of that name.
      ["mover-2", { targetCluster: "west" }, 409, "NOVA_FED_NAME_CLASH"],
    ];
    for (const [vm, body, status, code] of cases) {
      const r = await migrate(vm, body);
      expect([r.status, r.body.error?.code], `${vm} ${JSON.stringify(body)}`).toEqual([status, code]);
    }
    await east.server.store.db.query(
      "UPDATE vms SET state = 'stopped', desired_state = 'stopped' WHERE name = 'mover-1'",
    );
    const stopped = await migrate("mover-1", { targetCluster: "west" });
    expect([stopped.status, stopped.body.error.code]).toEqual([409, "NOVA_ILLEGAL_STATE"]);
    const rows = await east.server.store.db.query("SELECT 1 FROM migrations");
    expect(rows.rows).toEqual([]);
    expect((await east.server.store.db.query("SELECT 1 FROM acp_outgoing")).rows).toEqual([]);
  });

  it("refuses a VM owned elsewhere, one in a hand-off or migrating, and a quarantined peer, changing nothing", async () => {
    const db = east.server.store.db;
    await publishVm(east, "mover-3", "e-h1");
    await db.query("UPDATE vms SET state = 'running' WHERE name = 'mover-3'");
    const vmId = (await db.query<{ id: string }>("SELECT id FROM vms WHERE name = 'mover-3'")).rows[0]!.id;
    const migrate = () =>
      east.api<{ error: { code: string; message: string } }>("POST", "/v1/vms/mover-3/migrations", {
        targetCluster: "west",
      });
    const expectRefused = async (status: number, code: string, message: RegExp) => {
      const r = await migrate();
      expect([r.status, r.body.error?.code, r.body.error?.message]).toEqual([
        status,
        code,
        expect.stringMatching(message),
      ]);
    };
    // Handed to west at epoch 2: east may no longer move it.
    await db.query("UPDATE vms SET owner_cluster_id = $1, owner_epoch = 2 WHERE id = $2", [westId, vmId]);
    await expectRefused(409, "NOVA_ACP_NOT_OWNER", /west/);
    await db.query("UPDATE vms SET owner_cluster_id = NULL, owner_epoch = 1 WHERE id = $1", [vmId]);
    // Already migrating (inside the cluster).
    await db.query("UPDATE vms SET state = 'migrating' WHERE id = $1", [vmId]);
    await expectRefused(409, "NOVA_ILLEGAL_STATE", /migrating/);
    await db.query("UPDATE vms SET state = 'running' WHERE id = $1", [vmId]);
    // A hand-off of it that has not settled: who owns it is not certain yet.
    const open = randomUUID();
    await db.query(
      "INSERT INTO acp_outgoing (id, vm_id, vm_name, migration_id, target_cluster_id, from_epoch, state, reason, statements) VALUES ($1, $2, 'mover-3', NULL, $3, 1, 'aborting', 'test', '{}'::jsonb)",
      [open, vmId, westId],
    );
    await expectRefused(409, "NOVA_ACP_OWNER_UNCERTAIN", /hand-off/);
    await db.query("DELETE FROM acp_outgoing WHERE id = $1", [open]);
    // West quarantined (by east's own judgement): nothing is handed to it.
    await db.query(
      "UPDATE fed_peers SET state = 'quarantined', quarantine_kind = 'replay', quarantine_reason = 'test', quarantined_at = now() WHERE id = $1",
      [westId],
    );
    await expectRefused(409, "NOVA_FED_QUARANTINED", /quarantined/);
    const lifted = await east.api("POST", "/v1/federation/peers/west/unquarantine", {});
    expect(lifted.status, JSON.stringify(lifted.body)).toBe(200);
    expect((await db.query("SELECT 1 FROM migrations WHERE vm_id = $1", [vmId])).rows).toEqual([]);
    expect((await db.query("SELECT 1 FROM acp_outgoing WHERE vm_id = $1", [vmId])).rows).toEqual([]);
    expect(
      (await db.query<{ state: string }>("SELECT state FROM vms WHERE id = $1", [vmId])).rows[0]!.state,
    ).toBe("running");
  });

  it("quarantines a source that contradicts itself, keeping both statements as evidence", async () => {
    const h = ids();
    const abort = sign({ ...h, kind: "abort", epoch: 2 });
    expect((await ask({ type: "deliver", statement: abort })).kind).toBe("statement");
    const release = sign({ ...h, kind: "release", epoch: 2 });
    expect(refused(await ask({ type: "deliver", statement: release }))).toBe("NOVA_ACP_PROTOCOL");
    const peers = await west.api<{ peers: { name: string; state: string; quarantine?: { kind: string } }[] }>(
      "GET",
      "/v1/federation/peers",
    );
    expect(peers.body.peers.find((p) => p.name === "east")).toMatchObject({
      state: "quarantined",
      quarantine: { kind: "equivocation" },
    });
    const evidence = await west.api<{ evidence: { kind: string; records: SignedStatement[] }[] }>(
      "GET",
      "/v1/federation/peers/east/evidence",
    );
    expect(evidence.body.evidence.at(-1)?.records.map((r) => r.kind)).toEqual(["abort", "release"]);
    // Nothing more is taken from it, on any channel.
    expect(refused(await ask({ type: "status", handoff: h.handoff }))).toBe("NOVA_FED_QUARANTINED");
  });

  it("refuses a migration to a peer not heard from within the staleness bound, changing nothing", async () => {
    const db = east.server.store.db;
    await publishVm(east, "mover-4", "e-h1");
    await db.query("UPDATE vms SET state = 'running' WHERE name = 'mover-4'");
    westClosed = true;
    await west.server.close();
    await until(
      "east to show west stale",
      async () =>
        (
          await east.api<{ peers: { name: string; stale: boolean }[] }>("GET", "/v1/federation/peers")
        ).body.peers.find((p) => p.name === "west")?.stale === true,
      30_000,
    );
    const r = await east.api<{ error: { code: string; message: string } }>(
      "POST",
      "/v1/vms/mover-4/migrations",
      {
        targetCluster: "west",
      },
    );
    expect([r.status, r.body.error?.code]).toEqual([502, "NOVA_FED_PEER_UNREACHABLE"]);
    expect(r.body.error.message).toMatch(/west/);
    expect(
      (await db.query("SELECT 1 FROM migrations m JOIN vms v ON v.id = m.vm_id WHERE v.name = 'mover-4'"))
        .rows,
    ).toEqual([]);
    expect(
      (await db.query<{ state: string }>("SELECT state FROM vms WHERE name = 'mover-4'")).rows[0]!.state,
    ).toBe("running");
  });
});
