/**
 * The agent's server link against a stub server: one registration with the join token, a
 * heartbeat at start and every interval with the host credential, changes during a
 * heartbeat coalesced into one more right after it, and a 401 answered by registering
 * again and beating again at once.
 */
import { statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitFor } from "../lib/wait.js";
import { ServerLink } from "./server-link.js";

interface Call {
  route: string;
  auth: string | undefined;
  status: number;
}

let server: Server;
let url: string;
let dataDir: string;
let calls: Call[];
let registrations: number;
/** Status for the next heartbeats, first first; 200 when empty. */
let heartbeatStatuses: number[];
let links: ServerLink[];

beforeEach(async () => {
  calls = [];
  registrations = 0;
  heartbeatStatuses = [];
  links = [];
  dataDir = await mkdtemp(path.join(tmpdir(), "nc-server-link-"));
  server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const route = req.url ?? "";
      let status = 200;
      let body = "{}";
      if (route === "/v1/agent/register") {
        registrations++;
        body = JSON.stringify({
          hostId: "00000000-0000-4000-8000-000000000001",
          hostToken: `nvh_${registrations}`,
        });
      } else if (route === "/v1/agent/heartbeat") {
        status = heartbeatStatuses.shift() ?? 200;
      } else status = 404;
      calls.push({ route, auth: req.headers.authorization, status });
      res.writeHead(status, { "content-type": "application/json" }).end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  for (const l of links) await l.stop();
  await new Promise((r) => server.close(r));
  await rm(dataDir, { recursive: true, force: true });
});

/** A link whose heartbeat content waits for `gate()` when given. */
function link(intervalMs: number, gate?: () => Promise<void>): { link: ServerLink; built: () => number } {
  let built = 0;
  const l = new ServerLink({
    serverUrl: url,
    joinToken: "join",
    dataDir,
    heartbeatIntervalMs: intervalMs,
    agentUrl: "http://127.0.0.1:7800",
    log: pino({ level: "silent" }),
    registration: async () => ({}) as never,
    heartbeat: async () => {
      built++;
      await gate?.();
      return {} as never;
    },
  });
  links.push(l);
  return { link: l, built: () => built };
}

const heartbeats = () => calls.filter((c) => c.route === "/v1/agent/heartbeat");

describe("ServerLink", () => {
  it("registers once with the join token, keeps the credential 0600 and heartbeats with it every interval", async () => {
    const { link: l, built } = link(30);
    await l.start();
    expect(l.credential).toBe("nvh_1");
    expect(statSync(path.join(dataDir, "agent-credentials.json")).mode & 0o777).toBe(0o600);
    await waitFor(() => heartbeats().length >= 3, { what: "three heartbeats" });
    expect(calls[0]).toEqual({ route: "/v1/agent/register", auth: "Bearer join", status: 200 });
    expect(heartbeats().every((c) => c.auth === "Bearer nvh_1")).toBe(true);
    expect(registrations).toBe(1);
    await l.stop();
    const before = built();
    l.beat();
    expect(built()).toBe(before);
  });

  it("coalesces changes reported during a heartbeat into one more, right after it", async () => {
    const releases: (() => void)[] = [];
    const { link: l, built } = link(60_000, () => new Promise<void>((r) => releases.push(r)));
    await l.start();
    expect(built()).toBe(1);
    l.beat();
    l.beat();
    l.beat();
    expect(built()).toBe(1);
    releases.shift()!();
    // Not after the 60 s interval: at once, and once.
    await waitFor(() => built() === 2, { what: "the coalesced heartbeat", timeoutMs: 5000 });
    expect(heartbeats()).toHaveLength(1);
    releases.shift()!();
    await waitFor(() => heartbeats().length === 2, { what: "its request", timeoutMs: 5000 });
    expect(built()).toBe(2);
  });

  it("registers again on a 401 and beats again at once with the new credential", async () => {
    heartbeatStatuses = [401];
    const { link: l } = link(60_000);
    await l.start();
    await waitFor(() => heartbeats().length === 2, { what: "the second heartbeat", timeoutMs: 5000 });
    expect(calls.map((c) => [c.route, c.auth, c.status])).toEqual([
      ["/v1/agent/register", "Bearer join", 200],
      ["/v1/agent/heartbeat", "Bearer nvh_1", 401],
      ["/v1/agent/register", "Bearer join", 200],
      ["/v1/agent/heartbeat", "Bearer nvh_2", 200],
    ]);
    expect(l.credential).toBe("nvh_2");
  });

  it("reuses the saved credential of the same server without registering", async () => {
    writeFileSync(
      path.join(dataDir, "agent-credentials.json"),
      JSON.stringify({ serverUrl: url, hostId: "h", hostToken: "nvh_saved" }),
    );
    const { link: l } = link(60_000);
    await l.start();
    await waitFor(() => heartbeats().length === 1, { what: "a heartbeat", timeoutMs: 5000 });
    expect(registrations).toBe(0);
    expect(heartbeats()[0]!.auth).toBe("Bearer nvh_saved");
  });
});
