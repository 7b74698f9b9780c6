/**
 * The agent's server link against a stub HTTPS server with its own cluster CA: a join
 * with the token (after checking the CA's fingerprint), a heartbeat at start and every
 * interval with the host certificate, changes during a heartbeat coalesced into one more
 * right after it, a 401 answered by re-registering with the certificate, the saved
 * identity reused, and an impostor server (another CA) refused before anything is sent.
 */
import { statSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TLSSocket } from "node:tls";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isNovaError } from "../lib/errors.js";
import { waitFor } from "../lib/wait.js";
import { formatJoinToken } from "../security/join-token.js";
import {
  type CertAndKey,
  certInfo,
  createCa,
  HOST_IDENTITY_PREFIX,
  identityOf,
  issueFromCsr,
  issueWithNewKey,
  SERVER_IDENTITY,
  urisOf,
} from "../security/pki.js";
import { parseServerUrls, ServerLink } from "./server-link.js";

interface Call {
  route: string;
  auth: string | undefined;
  /** Who the verified client certificate names. */
  cert: string;
  status: number;
}

const HOST_ID = "00000000-0000-4000-8000-000000000001";
const CLUSTER_ID = "c0000000-0000-4000-8000-000000000001";
let ca: CertAndKey;
let server: Server;
let url: string;
let dataDir: string;
let calls: Call[];
let registrations: number;
/** Status for the next heartbeats, first first; 200 when empty. */
let heartbeatStatuses: number[];
let links: ServerLink[];

async function serve(serverCa: CertAndKey): Promise<void> {
  const cert = await issueWithNewKey(serverCa, { commonName: "server", uris: [SERVER_IDENTITY] });
  server = createServer(
    {
      cert: `${cert.certPem}${serverCa.certPem}`,
      key: cert.keyPem,
      ca: serverCa.certPem,
      requestCert: true,
      rejectUnauthorized: false,
    },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        void (async () => {
          const socket = req.socket as TLSSocket;
          const peer = socket.authorized
            ? identityOf(urisOf(socket.getPeerCertificate().subjectaltname))
            : null;
          const route = req.url ?? "";
          let status = 200;
          let body = "{}";
          if (route === "/v1/agent/register") {
            registrations++;
            const { csr, name } = JSON.parse(Buffer.concat(chunks).toString()) as {
              csr: string;
              name: string;
            };
            const certificate = await issueFromCsr(serverCa, csr, {
              commonName: name,
              uris: [`${HOST_IDENTITY_PREFIX}${HOST_ID}`],
              validDays: 30,
            });
            body = JSON.stringify({
              hostId: HOST_ID,
              certificate,
              caCertificate: serverCa.certPem,
              clusterId: CLUSTER_ID,
            });
          } else if (route === "/v1/agent/heartbeat") {
            status = peer?.role === "host" ? (heartbeatStatuses.shift() ?? 200) : 401;
          } else status = 404;
          calls.push({ route, auth: req.headers.authorization, cert: peer?.role ?? "none", status });
          res.writeHead(status, { "content-type": "application/json" }).end(body);
        })();
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeEach(async () => {
  calls = [];
  registrations = 0;
  heartbeatStatuses = [];
  links = [];
  dataDir = await mkdtemp(path.join(tmpdir(), "nc-server-link-"));
  ca = await createCa("stub cluster");
  await serve(ca);
});

afterEach(async () => {
  for (const l of links) await l.stop();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dataDir, { recursive: true, force: true });
});

const token = () => formatJoinToken("secret", certInfo(ca.certPem).fingerprint);

/** A link whose heartbeat content waits for `gate()` when given. */
function link(
  intervalMs: number,
  gate?: () => Promise<void>,
  joinToken: string | undefined = token(),
  serverUrls = [url],
) {
  let built = 0;
  const l = new ServerLink({
    serverUrls,
    ...(joinToken ? { joinToken } : {}),
    dataDir,
    heartbeatIntervalMs: intervalMs,
    agentUrl: "https://127.0.0.1:7800",
    log: pino({ level: "silent" }),
    registration: async () => ({ name: "h1" }) as never,
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
  it("joins once with the token, keeps its key 0600 and heartbeats with its certificate every interval", async () => {
    const { link: l, built } = link(30);
    await l.start();
    expect(l.hostId).toBe(HOST_ID);
    const keys = (await readdir(path.join(dataDir, "pki"))).filter((f) => f.endsWith(".key"));
    expect(keys).toHaveLength(1);
    expect(statSync(path.join(dataDir, "pki", keys[0]!)).mode & 0o777).toBe(0o600);
    await waitFor(() => heartbeats().length >= 3, { what: "three heartbeats" });
    expect(calls[0]).toEqual({
      route: "/v1/agent/register",
      auth: `Bearer ${token()}`,
      cert: "none",
      status: 200,
    });
    expect(heartbeats().every((c) => c.auth === undefined && c.cert === "host" && c.status === 200)).toBe(
      true,
    );
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

  it("re-registers with its own certificate on a 401 and beats again at once", async () => {
    heartbeatStatuses = [401];
    const { link: l } = link(60_000);
    await mkdir(path.join(dataDir, "pki", "qemu"), { recursive: true });
    await l.start();
    const first = l.identity!.certPem;
    await waitFor(() => heartbeats().length === 2, { what: "the second heartbeat", timeoutMs: 5000 });
    expect(calls.map((c) => [c.route, c.auth === undefined ? "-" : "bearer", c.cert, c.status])).toEqual([
      ["/v1/agent/register", "bearer", "none", 200],
      ["/v1/agent/heartbeat", "-", "host", 401],
      ["/v1/agent/register", "-", "host", 200],
      ["/v1/agent/heartbeat", "-", "host", 200],
    ]);
    expect(l.identity!.certPem).not.toBe(first);
    // One generation of key and certificate is kept; other files in the dir stay.
    const files = (await readdir(path.join(dataDir, "pki"))).sort();
    expect(files.filter((f) => f.endsWith(".key"))).toHaveLength(1);
    expect(files).toContain("qemu");
  });

  it("reuses the saved identity for the same server without registering or a token", async () => {
    const { link: first } = link(60_000);
    await first.start();
    await first.stop();
    calls = [];
    const { link: again } = link(60_000, undefined, undefined);
    await again.start();
    await waitFor(() => heartbeats().length === 1, { what: "a heartbeat", timeoutMs: 5000 });
    expect(registrations).toBe(1);
    expect(heartbeats()[0]!.cert).toBe("host");
    expect(again.identity?.clusterId).toBe(CLUSTER_ID);
  });

  it("registers again, once, to learn the cluster's id when its saved identity predates it", async () => {
    const { link: first } = link(60_000);
    await first.start();
    await first.stop();
    // An identity saved by an agent from before registration replies named the cluster.
    const meta = path.join(dataDir, "pki", "identity.json");
    const { clusterId: _gone, ...old } = JSON.parse(await readFile(meta, "utf8")) as Record<string, unknown>;
    await writeFile(meta, JSON.stringify(old));
    calls = [];
    const { link: again } = link(60_000, undefined, undefined);
    await again.start();
    expect(again.identity?.clusterId).toBeUndefined();
    await waitFor(() => heartbeats().length === 1, { what: "a heartbeat", timeoutMs: 5000 });
    expect(calls.map((c) => [c.route, c.cert])).toEqual([
      ["/v1/agent/register", "host"],
      ["/v1/agent/heartbeat", "host"],
    ]);
    expect(again.identity?.clusterId).toBe(CLUSTER_ID);
    expect(JSON.parse(await readFile(meta, "utf8")).clusterId).toBe(CLUSTER_ID);
  });

  it("refuses a server whose CA is not the one the join token names, sending it nothing", async () => {
    const impostor = await createCa("impostor");
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await serve(impostor);
    const { link: l } = link(60_000);
    const err = await l.start().catch((e: unknown) => e);
    if (!isNovaError(err, "NOVA_TLS_UNTRUSTED")) throw err;
    expect(err.message).toContain(certInfo(ca.certPem).fingerprint);
    expect(calls).toEqual([]);
  });

  it("moves to the next server replica when the one it calls is unreachable, and stays there", async () => {
    // A port nothing listens on: the replica that was killed.
    const dead = await new Promise<string>((resolve) => {
      const probe = createServer();
      probe.listen(0, "127.0.0.1", () => {
        const port = (probe.address() as AddressInfo).port;
        probe.close(() => resolve(`https://127.0.0.1:${port}`));
      });
    });
    const { link: l } = link(30, undefined, token(), [dead, url]);
    await l.start();
    expect(l.hostId).toBe(HOST_ID);
    expect(l.serverUrl).toBe(url);
    await waitFor(() => heartbeats().length >= 3, { what: "three heartbeats through the live replica" });
    // Saved under the replica that answered; a restart with the same list finds it.
    expect(l.identity?.serverUrl).toBe(url);
  });
});

describe("parseServerUrls", () => {
  it("is the shared list parser, https only (src/lib/server-url-list.test.ts)", () => {
    expect(parseServerUrls("https://a:7700/,https://b:7700")).toEqual(["https://a:7700", "https://b:7700"]);
    expect(() => parseServerUrls("http://a:7700")).toThrow(/"http:\/\/a:7700" is not an https URL/);
  });
});
