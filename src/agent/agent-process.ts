/**
 * The `novacron agent` process: secures its data dir, probes its QEMU (refusing one
 * missing or older than 7.2) and the accelerator once, opens the image store, re-adopts
 * running VMs, serves the agent API over mutual TLS, joins the server (or loads the
 * identity it got when it joined), reports its QEMU and heartbeats.
 * On SIGINT/SIGTERM it stops serving and heartbeating but leaves VMs running: an agent
 * restart must never take VMs down.
 */
import { statfs } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Server as TlsServer } from "node:tls";
import pino, { type Logger } from "pino";
import type { HostCapacity, QemuInfo } from "../api/types/agent.js";
import { ImageStore } from "../compute/images/image-store.js";
import { probeAccelerator } from "../compute/qemu/accel.js";
import { probeQemu, type QemuProbe, resolveQemuBinary } from "../compute/qemu/qemu-version.js";
import { writeQemuTlsDir } from "../compute/qemu/tls-dir.js";
import { secureDataDir } from "../lib/data-dir.js";
import { NovaError } from "../lib/errors.js";
import { traceLogFields } from "../lib/tracing.js";
import { createCa, issueWithNewKey } from "../security/pki.js";
import { clusterFetch, peerIdentityError } from "../security/tls-client.js";
import { VERSION } from "../version.js";
import { type AgentApiTls, agentTlsOptions, buildAgentApi } from "./agent-api.js";
import { AgentIdentityFiles } from "./agent-identity.js";
import { createAgentMetrics } from "./agent-metrics.js";
import { BlobTickets } from "./blob-tickets.js";
import { CpuSampler } from "./cpu-sampler.js";
import { AgentDwcp, type AgentDwcpTls } from "./dwcp-transport.js";
import { FenceStore } from "./fence-store.js";
import { HaLease } from "./ha-lease.js";
import { RevokedScrapers } from "./revoked-scrapers.js";
import { parseServerUrls, ServerLink } from "./server-link.js";
import { visiblePools } from "./storage-pools.js";
import { VmManager } from "./vm-manager.js";

/** Agent options (flags, environment). */
export interface AgentOptions {
  /** The server's URL, or its control plane's replicas' URLs separated by commas (tried in order). */
  serverUrl: string;
  /** A join token from `novacron host join-token NAME`; needed only until the agent has joined. */
  joinToken?: string;
  dataDir: string;
  /** Host name in the cluster. @defaultValue os.hostname() */
  name?: string;
  /** Listen address. @defaultValue "127.0.0.1" */
  host?: string;
  /** Listen port (0 = any free port). @defaultValue 7800 */
  port?: number;
  /**
   * Address for migration traffic: the destination QEMU's migration and NBD listeners.
   * Separate from the API address where hosts have a management and a data network.
   * @defaultValue the listen address
   */
  dataHost?: string;
  /**
   * QEMU's TLS directory for migrations (ca-cert.pem, server-cert.pem, server-key.pem,
   * client-cert.pem, client-key.pem: the host's certificate under both names).
   */
  qemuTlsDir?: string;
  /** The explicit, insecure opt-in: QEMU's migration listeners without TLS. */
  qemuPlaintext?: boolean;
  /** DWCP listener port on the data address (0 = kernel-chosen); null turns DWCP off. @defaultValue 0 */
  dwcpPort?: number | null;
  /**
   * Explicit opt-in to plaintext DWCP (logged loudly; for benchmarks and debugging). By
   * default DWCP runs mutual TLS with the host's certificate.
   */
  dwcpPlaintext?: boolean;
  /** Memory offered to VMs; defaults to the machine's total. */
  memoryMiB?: number;
  /** vCPUs offered; defaults to the machine's. */
  vcpus?: number;
  /** @defaultValue 2000 */
  heartbeatIntervalMs?: number;
  /** ACPI grace before a hard stop. @defaultValue 30000 */
  stopGraceMs?: number;
  /**
   * The QEMU to run VMs (and the accelerator probe) with. @defaultValue NOVACRON_QEMU_BINARY
   * from the environment, else qemu-system-x86_64 on PATH
   */
  qemuBinary?: string;
  logger?: Logger;
}

/** A running agent. */
export interface RunningAgent {
  url: string;
  name: string;
  accel: "kvm" | "tcg";
  /** The QEMU this agent runs (probed at start). */
  qemu: QemuProbe;
  link: ServerLink;
  vms: VmManager;
  /** The fencing tokens it holds. */
  fences: FenceStore;
  close(): Promise<void>;
}

/** Starts an agent. */
export async function startAgent(o: AgentOptions): Promise<RunningAgent> {
  const log =
    o.logger ??
    pino({ level: process.env.NOVACRON_LOG_LEVEL ?? "info", mixin: traceLogFields }, pino.destination(2));
  const name = o.name ?? os.hostname().toLowerCase();
  await secureDataDir(o.dataDir, log);
  // Missing or older than 7.2: NOVA_QEMU_UNSUPPORTED stops the agent here, before it joins.
  const qemu = await probeQemu(resolveQemuBinary(o.qemuBinary));
  log.info(
    { qemu: qemu.version, binary: qemu.binary, q35: qemu.q35Alias, oldestQ35: qemu.machineTypes.at(-1) },
    "QEMU probed",
  );
  const accel = await probeAccelerator({ qemuBinary: qemu.binary });
  log.info({ accel: accel.accel, reason: accel.reason }, "accelerator chosen");
  const images = new ImageStore(path.join(o.dataDir, "images"));

  // One server, or the replicas of its control plane separated by commas.
  const serverUrls = parseServerUrls(o.serverUrl);
  const saved = await new AgentIdentityFiles(o.dataDir).load(serverUrls);
  // Before any VM is touched: the tokens held and, when already joined, whose cluster this is.
  // Before the parts that feed it; it reads the VMs and certificates only when scraped.
  let heldTls: AgentApiTls | undefined = saved ?? undefined;
  const metrics = createAgentMetrics({
    vms: () => vms.list(),
    certificates: () =>
      heldTls
        ? [
            { certificate: "host", pem: heldTls.certPem },
            { certificate: "ca", pem: heldTls.caPem },
          ]
        : [],
  });
  const fences = new FenceStore({ dataDir: o.dataDir, onRefusal: (r) => metrics.fenceRefused(r) });
  await fences.init();
  if (saved?.clusterId) fences.setOwnCluster(saved.clusterId);

  const lease = new HaLease(o.dataDir);
  await lease.init();
  /** The storage pools this host sees (their markers read back), as of the last heartbeat reply. */
  let seenPools: string[] = [];

  let link: ServerLink | undefined;
  const vms = new VmManager({
    fences,
    lease,
    dataDir: o.dataDir,
    images,
    accel: accel.accel,
    qemuBinary: qemu.binary,
    qemu,
    log: log.child({ component: "vms" }),
    onChange: () => link?.beat(),
    ...(o.stopGraceMs === undefined ? {} : { stopGraceMs: o.stopGraceMs }),
  });
  await vms.init();

  // Until the agent has joined, the API and DWCP serve with a throwaway certificate and
  // trust no client, so nothing reaches them; joining swaps in the host's identity.
  const apiTls: AgentApiTls = saved ?? (await provisionalTls());

  const dwcpTlsOf = (t: AgentApiTls): AgentDwcpTls => ({
    ca: t.caPem,
    cert: t.certPem,
    key: t.keyPem,
    // The destination must be the host the server named (its certificate's DNS name, from
    // the cluster CA); without a name, at least a host of this cluster.
    serverName: (to) => to.name,
    checkPeer: (cert) => peerIdentityError(cert, { role: "host" }),
  });
  const dwcp =
    o.dwcpPort === null
      ? null
      : await AgentDwcp.start({
          dataDir: o.dataDir,
          host: o.dataHost ?? o.host ?? "127.0.0.1",
          port: o.dwcpPort ?? 0,
          hostName: name,
          log: log.child({ component: "dwcp" }),
          images,
          tmpDir: path.join(o.dataDir, "tmp"),
          onImagesChanged: () => link?.beat(),
          metrics: metrics.dwcp,
          onImageBlobPulled: (b) => metrics.imageBlobPulled(b),
          ...(o.dwcpPlaintext ? { plaintext: true } : { tls: dwcpTlsOf(apiTls) }),
        });
  if (dwcp) log.info({ dwcp: dwcp.endpoint, tls: dwcp.secure }, "DWCP listening");
  let fetchHost = saved ? clusterFetch(saved, { role: "host" }) : undefined;
  // QEMU's own migration and NBD listeners use TLS with the host's certificate, from a
  // directory the agent writes from its identity (or the operator's --qemu-tls-dir).
  const qemuTlsDir = o.qemuTlsDir ?? path.join(o.dataDir, "pki", "qemu");
  const qemuPlaintext = o.qemuPlaintext === true;
  if (qemuPlaintext)
    log.warn(
      { dataHost: o.dataHost ?? o.host ?? "127.0.0.1" },
      "INSECURE: QEMU's migration and NBD listeners take unauthenticated connections on the data address (--qemu-plaintext)",
    );
  else if (!o.qemuTlsDir && saved) await writeQemuTlsDir(qemuTlsDir, saved);
  const revokedScrapers = new RevokedScrapers(o.dataDir);
  await revokedScrapers.load();
  const api = buildAgentApi({
    revokedScrapers,
    dwcp,
    vms,
    fences,
    images,
    tls: apiTls,
    fetchHost: (url, init) => {
      if (!fetchHost) throw new NovaError("NOVA_CONFLICT", "This agent has not joined its server yet.");
      return fetchHost(url, init);
    },
    onImagesChanged: () => link?.beat(),
    tickets: new BlobTickets(),
    tmpDir: path.join(o.dataDir, "tmp"),
    // Migration listeners bind the data address (the API's listenHost option).
    listenHost: o.dataHost ?? o.host ?? "127.0.0.1",
    hostName: name,
    ...(qemuPlaintext ? {} : { qemuTls: { dir: qemuTlsDir } }),
    qemuPlaintext,
    logger: log.child({ component: "agent-api" }),
    metrics: metrics.registry,
  });
  await api.listen({ host: o.host ?? "127.0.0.1", port: o.port ?? 7800 });
  const address = api.server.address();
  const port = typeof address === "object" && address ? address.port : o.port;
  const listenHost = o.host ?? "127.0.0.1";
  const url = `https://${listenHost.includes(":") ? `[${listenHost}]` : listenHost}:${port}`;

  const cpu = new CpuSampler();
  const capacity = async (): Promise<HostCapacity> => {
    const fs = await statfs(o.dataDir);
    return {
      accel: accel.accel,
      accelReason: accel.reason,
      vcpus: o.vcpus ?? os.availableParallelism(),
      memoryMiB: o.memoryMiB ?? Math.floor(os.totalmem() / 1048576),
      diskTotalBytes: fs.blocks * fs.bsize,
      diskFreeBytes: fs.bavail * fs.bsize,
    };
  };
  const qemuInfo: QemuInfo = {
    binary: qemu.binary,
    version: qemu.version,
    major: qemu.major,
    minor: qemu.minor,
    micro: qemu.micro,
    text: qemu.text,
    machineTypes: qemu.machineTypes,
    q35Alias: qemu.q35Alias,
  };
  link = new ServerLink({
    serverUrls,
    ...(o.joinToken ? { joinToken: o.joinToken } : {}),
    onIdentity: (identity) => {
      heldTls = identity;
      if (identity.clusterId) fences.setOwnCluster(identity.clusterId);
      (api.server as unknown as TlsServer).setSecureContext(agentTlsOptions(identity));
      dwcp?.updateTls(dwcpTlsOf(identity));
      if (!qemuPlaintext && !o.qemuTlsDir) {
        void writeQemuTlsDir(qemuTlsDir, identity).catch((err: unknown) =>
          log.error({ err }, "cannot write QEMU's TLS directory; migrations over QEMU's transport will fail"),
        );
      }
      fetchHost = clusterFetch(identity, { role: "host" });
    },
    dataDir: o.dataDir,
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? 2000,
    agentUrl: url,
    log: log.child({ component: "server-link" }),
    registration: async () => ({
      name,
      agentUrl: url,
      agentVersion: VERSION,
      capacity: await capacity(),
      qemu: qemuInfo,
    }),
    onRevokedScrapers: (serials) =>
      revokedScrapers
        .replace(serials)
        .catch((err: unknown) =>
          log.warn(
            { err },
            "cannot save the revoked scraper certificates; refusing them until a restart anyway",
          ),
        ),
    heartbeat: async () => {
      const observed = vms.list();
      return {
        capacity: await capacity(),
        qemu: qemuInfo,
        vms: observed,
        imageDigests: (await images.list()).map((b) => b.digest),
        load: await cpu.sample(observed),
        storagePools: seenPools,
        selfFenced: vms.selfFenced(),
      };
    },
    onHa: async (reply, sentAtMonoMs) => {
      // The lease first: it is what keeps this host's HA VMs alive.
      if (reply.lease) await lease.renew(sentAtMonoMs, reply.lease);
      if (reply.storagePools) seenPools = await visiblePools(reply.storagePools);
      for (const r of reply.release ?? []) {
        await vms
          .releaseLeftover(r.id, r.fence)
          .catch((err: unknown) => log.warn({ vm: r.id, err }, "releasing an HA VM's leftover copy failed"));
      }
    },
  });
  try {
    await link.start();
  } catch (err) {
    await api.close();
    await dwcp?.close();
    await vms.detach();
    throw err;
  }
  log.info({ url, name }, "agent started");
  // The agent's own lease timer, beside each HA VM's watchdog process.
  const leaseTimer = setInterval(() => {
    vms
      .selfFenceExpired()
      .then((n) => {
        if (n > 0) log.warn({ vms: n }, "HA lease ran out unrenewed: killed this host's HA VMs");
      })
      .catch((err: unknown) => log.error({ err }, "self-fencing failed"));
  }, 500);
  leaseTimer.unref();

  let closing: Promise<void> | undefined;
  return {
    url,
    name,
    accel: accel.accel,
    qemu,
    link,
    vms,
    fences,
    close: () => {
      closing ??= (async () => {
        clearInterval(leaseTimer);
        await link?.stop();
        await api.close();
        await dwcp?.close();
        await vms.detach();
      })();
      return closing;
    },
  };
}

/** A self-signed certificate for the API before joining; with it as the only CA, no client can connect. */
async function provisionalTls(): Promise<AgentApiTls> {
  const ca = await createCa("novacron-agent-not-joined", 1);
  const leaf = await issueWithNewKey(ca, { commonName: "novacron-agent-not-joined", uris: [], validDays: 1 });
  return { caPem: ca.certPem, certPem: leaf.certPem, keyPem: leaf.keyPem };
}
