/**
 * The security suite (docs/security.md): each attack from issue 12 that concerns the
 * control plane, performed against a real server (and a real agent API) over real TLS,
 * asserting that it fails and that nothing was written. DWCP's attacks are in
 * test/dwcp-security.test.ts; the migration data paths' in test/qemu-tls.slow.test.ts.
 */
import { chmod, lstat, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { buildAgentApi } from "../src/agent/agent-api.js";
import { runCli } from "../src/cli/main.js";
import { QEMU_10_0_2 } from "../src/lib/qemu-info.test-util.js";
import {
  type CertAndKey,
  certInfo,
  createCa,
  HOST_IDENTITY_PREFIX,
  issueWithNewKey,
  SERVER_IDENTITY,
} from "../src/security/pki.js";
import { clusterFetch } from "../src/security/tls-client.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";
import { type HostCreds, tlsApi } from "./helpers/tls-callers.js";

interface ApiError {
  error: { code: string; message: string };
}

const registration = (name: string) => ({
  name,
  agentUrl: "https://127.0.0.1:9",
  agentVersion: "0.1.0",
  capacity: {
    accel: "tcg" as const,
    accelReason: "",
    vcpus: 2,
    memoryMiB: 2048,
    diskTotalBytes: 1,
    diskFreeBytes: 1,
  },
  qemu: QEMU_10_0_2,
});
const beat = {
  agentUrl: "https://127.0.0.1:9",
  capacity: registration("x").capacity,
  vms: [],
  imageDigests: [],
};

describe("security: the control plane refuses each attack", () => {
  let dir: string;
  let server: RunningServer;
  let admin: string;
  let tls: ReturnType<typeof tlsApi>;
  let h1: HostCreds;

  const hosts = async () =>
    (
      await tls.api<{ hosts: { name: string; certificate: { serial: string } | null }[] }>(
        "GET",
        "/v1/hosts",
        admin,
      )
    ).body.hosts;

  beforeAll(async () => {
    dir = await mkdtemp("/tmp/nc-security-");
    // An existing data dir left open (0755, a world-writable file in it) is tightened at start.
    await mkdir(path.join(dir, "old"), { recursive: true });
    await writeFile(path.join(dir, "old", "leftover"), "x");
    await chmod(path.join(dir, "old", "leftover"), 0o666);
    await chmod(dir, 0o755);
    server = await startServer({
      dataDir: dir,
      port: 0,
      heartbeatTimeoutMs: 600_000,
      execWorkers: false,
      logger: pino({ level: "silent" }),
    });
    admin = server.created.admin!;
    tls = tlsApi(server);
    const joined = await tls.register(await tls.joinToken(admin, "h1"), registration("h1"));
    expect(joined.status).toBe(200);
    h1 = joined.creds!;
  });
  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps the data dir, the CA key and the database files to their owner", async () => {
    const mode = async (p: string) => (await lstat(p)).mode & 0o777;
    expect(await mode(dir)).toBe(0o700);
    expect(await mode(path.join(dir, "old", "leftover"))).toBe(0o600);
    expect(await mode(path.join(dir, "pki", "ca.key"))).toBe(0o600);
    expect(await mode(path.join(dir, "admin.token"))).toBe(0o600);
    expect(await mode(path.join(dir, "db", "PG_VERSION"))).toBe(0o600);
  });

  it("serves no plaintext: an HTTP request to the API port gets no HTTP answer", async () => {
    const port = new URL(server.url).port;
    const outcome = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: "127.0.0.1", port, path: "/v1/hosts", timeout: 5000 }, (res) =>
        resolve(`answered ${res.statusCode}`),
      );
      req.on("error", (err) => resolve(`refused: ${err.message}`));
      req.on("timeout", () => {
        req.destroy();
        resolve("refused: timeout");
      });
      req.end();
    });
    expect(outcome).toMatch(/^refused/);
  });

  it("a join token joins only the host it was made for, once, and cannot take over a joined host", async () => {
    const token = await tls.joinToken(admin, "h2");
    // For another name: refused, and not used up.
    const other = await tls.register<ApiError>(token, registration("h3"));
    expect(other.status).toBe(403);
    expect(other.body.error.message).toContain("is for host h2, not h3");
    // Taking over h1 with h1's name needs a --replace token.
    const takeover = await tls.register<ApiError>(await tls.joinToken(admin, "h9"), registration("h1"));
    expect(takeover.status).toBe(403);
    const forH1 = await tls.api<ApiError>("POST", "/v1/join-tokens", admin, { name: "h1" });
    expect(forH1.status).toBe(409);
    // The rightful use works once; a replay of the same token is refused.
    expect((await tls.register(token, registration("h2"))).status).toBe(200);
    const replay = await tls.register<ApiError>(token, registration("h2"));
    expect(replay.status).toBe(401);
    expect(replay.body.error.message).toContain("already used");
    // h1 still has the certificate it joined with.
    expect((await hosts()).find((h) => h.name === "h1")?.certificate).toBeTruthy();
    expect((await tls.api("POST", "/v1/agent/heartbeat", h1, beat)).status).toBe(200);
  });

  it("refuses an expired join token", async () => {
    const token = await tls.joinToken(admin, "late");
    await server.store.db.query(
      "UPDATE join_tokens SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 second' WHERE host_name = 'late'",
    );
    const res = await tls.register<ApiError>(token, registration("late"));
    expect(res.status).toBe(401);
    expect(res.body.error.message).toContain("expired");
    expect((await hosts()).map((h) => h.name)).not.toContain("late");
  });

  it("an old API join token or an admin token is no way to register", async () => {
    const res = await tls.register<ApiError>(admin, registration("h5"));
    expect(res.status).toBe(401);
    const none = await tls.register<ApiError>(
      { hostId: "x", certPem: "", keyPem: "" } as never,
      registration("h5"),
    );
    expect(none.status).toBe(401);
    expect((await hosts()).map((h) => h.name)).not.toContain("h5");
  });

  it("refuses heartbeats without a certificate, with another CA's, with an expired one, and a host acting as admin", async () => {
    expect((await tls.api<ApiError>("POST", "/v1/agent/heartbeat", null, beat)).status).toBe(401);
    /** A certificate `issuer` made for h1's identity, and a heartbeat with it. */
    const asH1 = (issuer: CertAndKey, validDays?: number) =>
      issueWithNewKey(issuer, {
        commonName: "h1",
        uris: [`${HOST_IDENTITY_PREFIX}${h1.hostId}`],
        ...(validDays === undefined ? {} : { validDays }),
      });
    const beatWith = async (cert: CertAndKey) =>
      (await tls.api("POST", "/v1/agent/heartbeat", { hostId: h1.hostId, ...cert }, beat)).status;
    expect(await beatWith(await asH1(await createCa("attacker")))).toBe(401);
    // One the cluster CA issued for h1's identity but that has expired.
    const ca = {
      certPem: server.caPem,
      keyPem: await readFile(path.join(dir, "pki", "ca.key"), "utf8"),
    };
    const expired = await asH1(ca, -0.01);
    // Even recorded as h1's current certificate, it is refused: only its expiry is wrong.
    const current = certInfo(h1.certPem).serial;
    const setSerial = (serial: string) =>
      server.store.db.query("UPDATE hosts SET cert_serial = $1 WHERE id = $2", [serial, h1.hostId]);
    await setSerial(certInfo(expired.certPem).serial);
    try {
      expect(await beatWith(expired)).toBe(401);
    } finally {
      await setSerial(current);
    }
    // A host certificate cannot act as an admin.
    expect((await tls.api<ApiError>("GET", "/v1/vms", h1)).status).toBe(403);
  });

  it("a replaced host's old certificate is revoked, and removing a host revokes its certificate", async () => {
    const first = await tls.register(await tls.joinToken(admin, "h6"), registration("h6"));
    const replaced = await tls.register(await tls.joinToken(admin, "h6", true), registration("h6"));
    expect(replaced.status).toBe(200);
    expect(replaced.body.hostId).toBe(first.body.hostId);
    expect((await tls.api("POST", "/v1/agent/heartbeat", first.creds!, beat)).status).toBe(401);
    expect((await tls.api("POST", "/v1/agent/heartbeat", replaced.creds!, beat)).status).toBe(200);
    // The old certificate cannot re-register itself either.
    expect((await tls.register(first.creds!, registration("h6"))).status).toBe(401);
    expect((await tls.api("DELETE", "/v1/hosts/h6", admin)).status).toBe(200);
    expect((await tls.api("POST", "/v1/agent/heartbeat", replaced.creds!, beat)).status).toBe(401);
    expect((await hosts()).map((h) => h.name)).not.toContain("h6");
  });

  it("a host renews its certificate with its current one; the old one stops working", async () => {
    const renewed = await tls.register(h1, registration("h1"));
    expect(renewed.status).toBe(200);
    // The reply names the cluster (its federation identity): the owner in the fencing
    // tokens of the VMs this cluster owns.
    expect(renewed.body.clusterId).toBe(server.federation.self.id);
    expect((await tls.api("POST", "/v1/agent/heartbeat", renewed.creds!, beat)).status).toBe(200);
    expect((await tls.api("POST", "/v1/agent/heartbeat", h1, beat)).status).toBe(401);
    // …and it cannot register under another host's name.
    const stolen = await tls.register<ApiError>(renewed.creds!, registration("h2"));
    expect(stolen.status).toBe(403);
    h1 = renewed.creds!;
  });

  it("the CLI refuses to log in to a server whose CA is not the expected one", async () => {
    const stderr: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((c: string | Uint8Array) => {
      stderr.push(String(c));
      return true;
    });
    const config = path.join(dir, "cli.json");
    vi.stubEnv("NOVACRON_CONFIG", config);
    try {
      const login = (fingerprint: string) =>
        runCli([
          "node",
          "novacron",
          "login",
          "--server",
          server.url,
          "--token",
          admin,
          "--fingerprint",
          fingerprint,
        ]);
      const code = await login(`sha256:${"ab".repeat(32)}`);
      expect(code).toBe(1);
      expect(stderr.join("")).toContain("[NOVA_TLS_UNTRUSTED]");
      expect(stderr.join("")).toContain(server.caFingerprint);
      await expect(lstat(config)).rejects.toThrow();
      expect(await login(server.caFingerprint)).toBe(0);
      expect((await lstat(config)).mode & 0o777).toBe(0o600);
    } finally {
      spy.mockRestore();
      vi.unstubAllEnvs();
    }
  });
});

describe("security: the agent API needs the server's certificate", () => {
  let ca: CertAndKey;
  let url: string;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ca = await createCa("cluster");
    const host = await issueWithNewKey(ca, { commonName: "a1", uris: [`${HOST_IDENTITY_PREFIX}a1`] });
    const app = buildAgentApi({
      vms: { list: () => [] } as never,
      fences: {} as never,
      images: {} as never,
      tls: { caPem: ca.certPem, certPem: host.certPem, keyPem: host.keyPem },
      fetchHost: clusterFetch(
        { caPem: ca.certPem, certPem: host.certPem, keyPem: host.keyPem },
        { role: "host" },
      ),
      onImagesChanged: () => {},
      tickets: { issue: () => "t", redeem: () => false } as never,
      tmpDir: "/tmp",
      listenHost: "127.0.0.1",
      hostName: "a1",
      logger: pino({ level: "silent" }),
    });
    await app.listen({ host: "127.0.0.1", port: 0 });
    url = `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    close = () => app.close();
  });
  afterAll(async () => close?.());

  it("refuses a client without a certificate or with another CA's at the handshake, a host's with 403, and serves the server's", async () => {
    const get = (f: ReturnType<typeof clusterFetch>) =>
      f(`${url}/agent/v1/vms`).then(
        (r) => r.status,
        (e: Error) => `failed: ${(e.cause as Error | undefined)?.message ?? e.message}`,
      );
    expect(await get(clusterFetch({ caPem: ca.certPem }, { role: "host" }))).toMatch(/^failed/);
    const foreign = await createCa("other");
    const stranger = await issueWithNewKey(foreign, { commonName: "s", uris: [SERVER_IDENTITY] });
    expect(
      await get(
        clusterFetch(
          { caPem: ca.certPem, certPem: stranger.certPem, keyPem: stranger.keyPem },
          { role: "host" },
        ),
      ),
    ).toMatch(/^failed/);
    const peer = await issueWithNewKey(ca, { commonName: "a2", uris: [`${HOST_IDENTITY_PREFIX}a2`] });
    expect(
      await get(
        clusterFetch({ caPem: ca.certPem, certPem: peer.certPem, keyPem: peer.keyPem }, { role: "host" }),
      ),
    ).toBe(403);
    const srv = await issueWithNewKey(ca, { commonName: "server", uris: [SERVER_IDENTITY] });
    expect(
      await get(
        clusterFetch({ caPem: ca.certPem, certPem: srv.certPem, keyPem: srv.keyPem }, { role: "host" }),
      ),
    ).toBe(200);
    // The server insists on talking to the right host: a1's API is not a9.
    expect(
      await get(
        clusterFetch(
          { caPem: ca.certPem, certPem: srv.certPem, keyPem: srv.keyPem },
          { role: "host", hostId: "a9" },
        ),
      ),
    ).toMatch(/^failed: .*not a9/);
  });
});
