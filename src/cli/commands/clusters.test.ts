import { describe, expect, it } from "vitest";
import type { Handoff } from "../../api/types/acp.js";
import type { FederatedCluster, Peer, PeerRemoved } from "../../api/types/federation.js";
import { isNovaError } from "../../lib/errors.js";
import { runAgainstStub } from "../stub-api.test-util.js";
import {
  CLUSTER_HEADERS,
  clusterRows,
  contactAge,
  evidenceRows,
  formatAge,
  HANDOFF_HEADERS,
  handoffRows,
  PEER_HEADERS,
  parseTtl,
  peerRows,
  removedSummary,
} from "./clusters.js";

const NOW = Date.parse("2026-12-06T12:00:00.000Z");
const ago = (seconds: number) => new Date(NOW - seconds * 1000).toISOString();

function peer(over: Partial<Peer> = {}): Peer {
  return {
    id: "5b0c6a2e-2f7a-4c61-9f57-6f8d6f0f2a11",
    name: "west",
    state: "active",
    apiUrl: "https://west.example:7700",
    federation: "west.example:7701",
    caFingerprint: "sha256:aa",
    signingKeyFingerprint: "sha256:bb",
    protocol: 1,
    addedAt: ago(3600),
    lastContactAt: ago(3),
    lastContactAgeSeconds: null,
    lastError: "",
    lagRecords: 0,
    stale: false,
    quarantine: null,
    ...over,
  };
}

function cluster(over: Partial<FederatedCluster> = {}): FederatedCluster {
  return {
    id: "0d3c1f4e-8b9a-4a57-8c1e-2b6f1d9e7c01",
    name: "east",
    self: false,
    state: "active",
    lastContactAt: ago(3),
    lastContactAgeSeconds: null,
    lagRecords: 0,
    stale: false,
    version: 10,
    hosts: 2,
    vms: 5,
    ...over,
  };
}

/** The column of `headers` named `name`, in `row`. */
function col(headers: string[], row: string[] | undefined, name: string): string | undefined {
  return row?.[headers.indexOf(name)];
}

describe("formatAge", () => {
  it("says never when there was no contact", () => {
    expect(formatAge(null, NOW)).toBe("never");
  });

  it("counts seconds, then minutes, hours and days", () => {
    expect(formatAge(ago(3), NOW)).toBe("3s ago");
    expect(formatAge(ago(119), NOW)).toBe("119s ago");
    expect(formatAge(ago(5 * 60), NOW)).toBe("5m ago");
    expect(formatAge(ago(3 * 3600), NOW)).toBe("3h ago");
    expect(formatAge(ago(4 * 86_400), NOW)).toBe("4d ago");
  });

  it("shows a contact ahead of this machine's clock as just now", () => {
    expect(formatAge(new Date(NOW + 5000).toISOString(), NOW)).toBe("0s ago");
  });

  it("prefers the server's own age, so a CLI clock that is off does not matter", () => {
    const skewed = { lastContactAt: ago(7 * 60), lastContactAgeSeconds: 2.4 };
    expect(contactAge(skewed, NOW)).toBe("2s ago");
    expect(contactAge({ lastContactAt: ago(5), lastContactAgeSeconds: null }, NOW)).toBe("5s ago");
    expect(contactAge({ lastContactAt: null, lastContactAgeSeconds: null }, NOW)).toBe("never");
  });
});

describe("--ttl of cluster peer token", () => {
  it("takes whole seconds from one minute to seven days", () => {
    expect(parseTtl("3600")).toBe(3600);
    expect(parseTtl("60")).toBe(60);
    expect(parseTtl("604800")).toBe(604_800);
  });

  it.each(["59", "604801", "0", "-60", "1.5", "abc", "", " "])("refuses %j as a configuration error", (v) => {
    let thrown: unknown;
    try {
      parseTtl(v);
    } catch (err) {
      thrown = err;
    }
    expect(isNovaError(thrown, "NOVA_CONFIG")).toBe(true);
    expect((thrown as Error).message).toMatch(/^--ttl must be a whole number of seconds from 60 to 604800/);
  });
});

describe("cluster list rows", () => {
  const rows = clusterRows(
    [
      cluster({ name: "east", self: true, state: "self", lastContactAt: null }),
      cluster({ name: "west", lastContactAt: ago(3), lagRecords: 1 }),
      cluster({ name: "north", lastContactAt: ago(600), stale: true, lagRecords: 7 }),
      cluster({ name: "south", lastContactAt: null, stale: true }),
    ],
    NOW,
  );
  const [self, fresh, stale, never] = rows;

  it("marks this cluster and does not call it never contacted", () => {
    expect(col(CLUSTER_HEADERS, self, "SELF")).toBe("*");
    expect(col(CLUSTER_HEADERS, self, "LAST CONTACT")).toBe("-");
    expect(col(CLUSTER_HEADERS, fresh, "SELF")).toBe("");
  });

  it("shows a current peer as current, with its counts, lag and age", () => {
    expect(fresh).toEqual(["west", "", "active", "5", "2", "1 record", "3s ago", "no"]);
  });

  it("shows a stale peer as stale in its state, never as plain active", () => {
    expect(col(CLUSTER_HEADERS, stale, "STATE")).toBe("active (stale)");
    expect(col(CLUSTER_HEADERS, stale, "STALE")).toBe("yes");
    expect(col(CLUSTER_HEADERS, stale, "LAG")).toBe("7 records");
    expect(col(CLUSTER_HEADERS, stale, "LAST CONTACT")).toBe("10m ago");
  });

  it("says never for a peer that was never reached", () => {
    expect(col(CLUSTER_HEADERS, never, "LAST CONTACT")).toBe("never");
    expect(col(CLUSTER_HEADERS, never, "STATE")).toBe("active (stale)");
  });
});

describe("cluster peer list rows", () => {
  it("shows a quarantined peer's kind and reason, and how much evidence there is", () => {
    const [row] = peerRows(
      [
        peer({
          state: "quarantined",
          stale: true,
          quarantine: {
            kind: "equivocation",
            reason: "two different vm records signed as version 7 of vm-a",
            at: ago(60),
            evidence: 2,
          },
        }),
      ],
      NOW,
    );
    expect(col(PEER_HEADERS, row, "STATE")).toBe("quarantined (stale)");
    expect(col(PEER_HEADERS, row, "REASON")).toBe(
      "equivocation: two different vm records signed as version 7 of vm-a (2 proofs)",
    );
  });

  it("shows a stale peer as stale with its last error, and never for no contact", () => {
    const [row] = peerRows(
      [peer({ stale: true, lastContactAt: null, lastError: "connect ECONNREFUSED", lagRecords: 1 })],
      NOW,
    );
    expect(row).toEqual([
      "west",
      "active (stale)",
      "west.example:7701",
      "1 record",
      "never",
      "yes",
      "last error: connect ECONNREFUSED",
    ]);
  });

  it("shows a healthy peer plainly", () => {
    expect(peerRows([peer()], NOW)[0]).toEqual([
      "west",
      "active",
      "west.example:7701",
      "0 records",
      "3s ago",
      "no",
      "",
    ]);
  });
});

describe("cluster peer remove", () => {
  const removed = (hosts: number, vms: number, images: number): PeerRemoved => ({
    peer: peer({ state: "removed" }),
    held: { hosts, vms, images },
  });

  it("says what the peer held", () => {
    expect(removedSummary(removed(3, 12, 2))).toBe(
      "west held 3 hosts, 12 VMs, 2 images; their records are dropped from this cluster's view",
    );
    expect(removedSummary(removed(1, 1, 0))).toBe(
      "west held 1 host, 1 VM, 0 images; their records are dropped from this cluster's view",
    );
  });
});

describe("cluster peer evidence rows", () => {
  it("counts the signed records of each piece of evidence", () => {
    expect(
      evidenceRows([
        {
          id: 4,
          peer: "5b0c6a2e-2f7a-4c61-9f57-6f8d6f0f2a11",
          sender: "5b0c6a2e-2f7a-4c61-9f57-6f8d6f0f2a11",
          kind: "equivocation",
          detail: "version 7 of vm vm-a signed twice",
          records: [{ version: 7 }, { version: 7 }],
          detectedAt: ago(60),
        },
      ]),
    ).toEqual([["4", "equivocation", ago(60), "2", "version 7 of vm vm-a signed twice"]]);
  });
});

describe("novacron cluster against a stub API", () => {
  it("peer token: asks for an hour by default and prints the token, its expiry and the command for the other side", async () => {
    const run = await runAgainstStub(["cluster", "peer", "token"], {
      "POST /v1/federation/tokens": {
        status: 201,
        body: { token: "nvf1.abc", expiresAt: "2026-12-06T13:00:00.000Z" },
      },
    });
    expect(run.code).toBe(0);
    expect(run.requests).toEqual([
      {
        method: "POST",
        url: "/v1/federation/tokens",
        authorization: "Bearer test-token",
        body: { ttlSeconds: 3600 },
      },
    ]);
    expect(run.stdout).toContain("expires 2026-12-06T13:00:00.000Z");
    expect(run.stdout).toContain("\n  nvf1.abc\n");
    expect(run.stdout).toContain("On the other cluster run: novacron cluster peer add nvf1.abc\n");
  });

  it("peer token --ttl: passes a valid value and refuses a bad one before calling the server", async () => {
    const ok = await runAgainstStub(["cluster", "peer", "token", "--ttl", "120", "--json"], {
      "POST /v1/federation/tokens": { status: 201, body: { token: "t", expiresAt: "x" } },
    });
    expect(ok.requests[0]?.body).toEqual({ ttlSeconds: 120 });
    expect(JSON.parse(ok.stdout)).toEqual({ token: "t", expiresAt: "x" });

    const bad = await runAgainstStub(["cluster", "peer", "token", "--ttl", "30"], {});
    expect(bad.code).toBe(2);
    expect(bad.requests).toEqual([]);
    expect(bad.stderr).toMatch(/^novacron: --ttl must be .* got 30 \[NOVA_CONFIG\]\n$/);
  });

  it("peer list --json prints the full peer objects as one document", async () => {
    const peers = [peer(), peer({ name: "north", state: "quarantined", stale: true })];
    const run = await runAgainstStub(["cluster", "peer", "list", "--json"], {
      "GET /v1/federation/peers": { body: { peers } },
    });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual(peers);
  });

  it("cluster list prints the table with the stale marker", async () => {
    const run = await runAgainstStub(["cluster", "list"], {
      "GET /v1/federation/clusters": {
        body: {
          clusters: [
            cluster({ name: "east", self: true, state: "self", lastContactAt: null }),
            cluster({ name: "west", stale: true, lastContactAt: null }),
          ],
        },
      },
    });
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME +SELF +STATE +VMS +HOSTS +LAG +LAST CONTACT +STALE$/);
    expect(lines[2]).toMatch(/^west +active \(stale\) +5 +2 +0 records +never +yes$/);
  });

  it("peer remove, unquarantine and evidence call their routes with the peer's name", async () => {
    const removed = await runAgainstStub(["cluster", "peer", "remove", "west"], {
      "DELETE /v1/federation/peers/west": {
        body: { peer: peer({ state: "removed" }), held: { hosts: 3, vms: 12, images: 2 } },
      },
    });
    expect(removed.code).toBe(0);
    expect(removed.stdout).toBe(
      "Peer west removed. west held 3 hosts, 12 VMs, 2 images; their records are dropped from this cluster's view\n",
    );

    const lifted = await runAgainstStub(["cluster", "peer", "unquarantine", "west"], {
      "POST /v1/federation/peers/west/unquarantine": { body: peer() },
    });
    expect(lifted.code).toBe(0);
    expect(lifted.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      "POST /v1/federation/peers/west/unquarantine",
    ]);
    expect(lifted.stdout).toMatch(/^State: +active$/m);

    const evidence = [
      {
        id: 1,
        peer: peer().id,
        sender: peer().id,
        kind: "bad-signature",
        detail: "signature does not verify",
        records: [{}],
        detectedAt: ago(5),
      },
    ];
    const shown = await runAgainstStub(["cluster", "peer", "evidence", "west", "--json"], {
      "GET /v1/federation/peers/west/evidence": { body: { evidence } },
    });
    expect(JSON.parse(shown.stdout)).toEqual(evidence);
  });

  it("peer add prints the new peer's identity; a refused token exits 1 with its code", async () => {
    const added = await runAgainstStub(["cluster", "peer", "add", "nvf1.abc"], {
      "POST /v1/federation/peers": { status: 201, body: peer({ lastContactAt: null, stale: true }) },
    });
    expect(added.code).toBe(0);
    expect(added.requests[0]?.body).toEqual({ token: "nvf1.abc" });
    expect(added.stdout).toMatch(/^Name: +west$/m);
    expect(added.stdout).toMatch(/^ID: +5b0c6a2e-2f7a-4c61-9f57-6f8d6f0f2a11$/m);
    expect(added.stdout).toMatch(/^CA fingerprint: +sha256:aa$/m);
    expect(added.stdout).toMatch(/^Signing key fingerprint: +sha256:bb$/m);
    expect(added.stdout).toMatch(/^Federation address: +west\.example:7701$/m);
    expect(added.stdout).toMatch(/^Last contact: +never$/m);

    const refused = await runAgainstStub(["cluster", "peer", "add", "nvf1.used"], {
      "POST /v1/federation/peers": {
        status: 409,
        body: { error: { code: "NOVA_FED_TOKEN_USED", message: "The peering token was already used." } },
      },
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe("novacron: The peering token was already used. [NOVA_FED_TOKEN_USED]\n");
  });
});

describe("cluster handoffs rows", () => {
  const h = (over: Partial<Handoff>): Handoff => ({
    id: "7d1c3c0e-8a5e-4c2f-9d41-5b7e2a6c9f10",
    side: "source",
    vm: "web-1",
    vmId: "9e1b7c2a-3d4f-4a5b-8c6d-7e8f9a0b1c2d",
    peer: { id: "0d3c1f4e-8b9a-4a57-8c1e-2b6f1d9e7c01", name: "west" },
    state: "released",
    reason: "the transfer completed; released",
    fromEpoch: 1,
    needsDecision: null,
    settled: false,
    migrationId: null,
    createdAt: "2026-12-06T10:00:00.000Z",
    stateChangedAt: "2026-12-06T10:00:01.000Z",
    ...over,
  });

  it("says what a hand-off at work waits for, and nothing once it settled", () => {
    const [working, settled] = handoffRows([h({}), h({ state: "completed", settled: true })]);
    expect(HANDOFF_HEADERS).toEqual(["VM", "SIDE", "PEER", "EPOCH", "STATE", "WAITS FOR"]);
    expect(working).toEqual([
      "web-1",
      "source",
      "west",
      "1→2",
      "released",
      "the transfer completed; released",
    ]);
    expect(settled?.[5]).toBe("");
  });

  it("names a decision only an operator can take, and a given-back VM's epoch", () => {
    const [stuck, back] = handoffRows([
      h({ needsDecision: "the destination cluster was removed after the VM was released to it" }),
      h({
        side: "destination",
        state: "returned",
        peer: { id: "0d3c1f4e-8b9a-4a57-8c1e-2b6f1d9e7c01", name: null },
      }),
    ]);
    expect(stuck?.[5]).toBe("decision: the destination cluster was removed after the VM was released to it");
    expect(back?.slice(0, 5)).toEqual([
      "web-1",
      "destination",
      "0d3c1f4e-8b9a-4a57-8c1e-2b6f1d9e7c01",
      "1→3",
      "returned",
    ]);
  });
});
