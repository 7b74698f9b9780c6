/**
 * Federation faults (issue 14): two clusters in two network namespaces joined by the
 * emulated `wan` link, each server with its own database on a PostgreSQL server of the
 * suite's own. The test process reaches the APIs over the unemulated management network;
 * every federation byte crosses the emulated link. After each fault — the link cut and
 * healed, `kill -9` of either server, the databases stopped and started, one server's
 * clock seven minutes ahead — both clusters' global views are equal and hold everything
 * either cluster published, and a partitioned cluster keeps serving its own API.
 * Skips when not root.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../src/cluster/store/db.js";
import { openDb } from "../src/cluster/store/db.js";
import { waitFor } from "../src/lib/wait.js";
import { ADDR_A, ADDR_B, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";
import { TestCluster } from "./helpers/cluster.js";
import { PrivatePostgres } from "./helpers/private-postgres.js";
import { addHost, addImage, addVm } from "./helpers/store-fixtures.js";

const run = promisify(execFile);
const unavailable = emulatorUnavailableReason();
if (unavailable) console.warn(`Skipping the federation fault suite: ${unavailable}`);

const FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

interface Site {
  name: "east" | "west";
  port: number;
  ns: () => string;
  mgmt: () => string;
  addr: string;
  c: TestCluster;
  db: Db;
  host: string;
  image: string;
}

interface FedVm {
  id: string;
  name: string;
  state: string;
  version: number;
  cluster: { name: string };
}

describe.skipIf(unavailable !== null)("federation under faults", { timeout: 600_000 }, () => {
  let link: WanLink;
  let pg: PrivatePostgres;
  const sites: Site[] = [];
  const expected = new Set<string>();
  let counter = 0;

  const start = async (s: Site, env: Record<string, string> = {}): Promise<void> => {
    await s.c.startServer(
      [
        "--database-url",
        pg.url(`fed_${s.name}`),
        "--cluster-name",
        s.name,
        "--advertise-host",
        s.addr,
        "--federation-port",
        String(s.port + 1),
        "--no-exec-workers",
      ],
      { listenHost: "0.0.0.0", netns: s.ns(), reachAt: s.mgmt(), env },
    );
  };
  const addVms = async (s: Site, n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const name = `${s.name}-vm-${++counter}`;
      await addVm(s.db, name, s.image, s.host);
      expected.add(`${s.name}/${name}`);
    }
  };
  const deleteVm = async (s: Site): Promise<void> => {
    const { rows } = await s.db.query<{ name: string }>("SELECT name FROM vms ORDER BY created_at LIMIT 1");
    const name = rows[0]!.name;
    await s.db.query("DELETE FROM vms WHERE name = $1", [name]);
    expected.delete(`${s.name}/${name}`);
  };
  const view = async (s: Site): Promise<string[]> => {
    const r = await s.c.api<{ vms: FedVm[] }>("GET", "/v1/federation/vms");
    return r.body.vms.map((v) => `${v.cluster.name}/${v.name}`).sort();
  };
  const fullView = async (s: Site): Promise<string[]> => {
    const r = await s.c.api<{ vms: FedVm[] }>("GET", "/v1/federation/vms");
    return r.body.vms.map((v) => `${v.cluster.name}/${v.id}/${v.name}/${v.state}/${v.version}`).sort();
  };
  /** Both views hold exactly what was published, and are equal record for record. */
  const converged = async (what: string): Promise<void> => {
    const want = [...expected].sort().join("\n");
    await waitFor(
      async () => {
        try {
          const [e, w] = await Promise.all(sites.map(view));
          return e!.join("\n") === want && w!.join("\n") === want;
        } catch {
          return false;
        }
      },
      { timeoutMs: 120_000, intervalMs: 250, what: `both views after ${what}` },
    );
    const [e, w] = await Promise.all(sites.map(fullView));
    expect(e).toEqual(w);
  };
  const peerStale = async (s: Site): Promise<boolean> => {
    const r = await s.c.api<{ peers: { stale: boolean }[] }>("GET", "/v1/federation/peers");
    return r.body.peers[0]?.stale ?? false;
  };

  beforeAll(async () => {
    link = await WanLink.create({ spec: "wan", management: true });
    pg = await PrivatePostgres.start();
    for (const [name, port, ns, mgmt, addr] of [
      ["east", 18160, () => link.nsA, () => link.management!.a, ADDR_A],
      ["west", 18170, () => link.nsB, () => link.management!.b, ADDR_B],
    ] as const) {
      await pg.createDatabase(`fed_${name}`);
      const s: Site = {
        name,
        port,
        ns,
        mgmt,
        addr,
        c: await TestCluster.create(port),
        db: undefined as never,
        host: "",
        image: "",
      };
      await start(s);
      s.db = await openDb({ url: pg.url(`fed_${name}`) });
      s.host = await addHost(s.db, `${name}-h1`);
      s.image = await addImage(s.db, "img");
      sites.push(s);
    }
    const token = await sites[0]!.c.api<{ token: string }>("POST", "/v1/federation/tokens", {});
    const added = await sites[1]!.c.api("POST", "/v1/federation/peers", { token: token.body.token });
    expect(added.status, JSON.stringify(added.body)).toBe(201);
  }, 300_000);

  afterAll(async () => {
    for (const s of sites) {
      await s.db?.close().catch(() => {});
      await s.c.destroy().catch(() => {});
    }
    await pg?.destroy();
    await link?.close();
  });

  it("converges at the start", async () => {
    for (const s of sites) await addVms(s, 3);
    await converged("peering");
  });

  it("a cut link: each side keeps serving, shows the other stale, and both converge after the heal", async () => {
    const [east, west] = sites as [Site, Site];
    await run("ip", ["-n", link.nsA, "link", "set", "dwcp0", "down"]);
    try {
      for (const s of sites) {
        await addVms(s, 3);
        await deleteVm(s);
      }
      await waitFor(async () => (await peerStale(east)) && (await peerStale(west)), {
        timeoutMs: 60_000,
        intervalMs: 500,
        what: "each side to show the other stale",
      });
      // A partitioned cluster serves its own API and its own VMs.
      expect((await east.c.api("GET", "/v1/vms")).status).toBe(200);
      expect((await view(east)).filter((v) => v.startsWith("east/"))).toEqual(
        [...expected].filter((v) => v.startsWith("east/")).sort(),
      );
    } finally {
      await run("ip", ["-n", link.nsA, "link", "set", "dwcp0", "up"]);
    }
    await converged("the heal");
    expect(await peerStale(east)).toBe(false);
  });

  for (const victim of ["east", "west"] as const) {
    it(`kill -9 of ${victim}'s server loses nothing`, async () => {
      const s = sites.find((x) => x.name === victim)!;
      const other = sites.find((x) => x.name !== victim)!;
      await addVms(other, 2);
      await s.c.stop("server", "SIGKILL");
      await addVms(other, 2);
      await addVms(s, 2); // written while its server is down: published after the restart
      await start(s);
      await converged(`kill -9 of ${victim}`);
    });
  }

  it("both databases stopped and started again", async () => {
    await pg.stopServer();
    await waitFor(async () => (await sites[0]!.c.api("GET", "/healthz", undefined, null)).status === 503, {
      timeoutMs: 30_000,
      intervalMs: 250,
      what: "the server to notice its database is gone",
    });
    await pg.startServer();
    for (const s of sites) await addVms(s, 2);
    await converged("the database restart");
  });

  it("a server whose clock runs seven minutes ahead", async () => {
    const west = sites[1]!;
    await west.c.stop("server");
    await start(west, { LD_PRELOAD: FAKETIME, FAKETIME: "+7m" });
    for (const s of sites) await addVms(s, 2);
    await converged("the clock skew");
    // The skew is real: west's newest records, as east holds them, were issued 7 minutes ahead.
    const { rows } = await sites[0]!.db.query<{ issued_at: string }>(
      "SELECT r.issued_at FROM fed_records r JOIN fed_peers p ON p.id = r.origin WHERE p.name = 'west' ORDER BY r.version DESC LIMIT 1",
    );
    expect(Date.parse(rows[0]!.issued_at) - Date.now()).toBeGreaterThan(5 * 60_000);
    expect(await peerStale(sites[0]!)).toBe(false);
    expect(await peerStale(west)).toBe(false);
  });
});
