/**
 * The agent protocol. Agents call the server (`/v1/agent/...`: register, heartbeat with
 * the full observed state), the server calls agents (`/agent/v1/...`: put a VM in a power
 * state, delete it, import an image, read a console). See docs/agent-protocol.md.
 */
import { type Static, Type } from "@sinclair/typebox";
import { ResourceName, Uuid } from "./common.js";

/** What a host offers. */
export const HostCapacity = Type.Object({
  accel: Type.Union([Type.Literal("kvm"), Type.Literal("tcg")]),
  accelReason: Type.String(),
  vcpus: Type.Integer({ minimum: 1 }),
  memoryMiB: Type.Integer({ minimum: 1 }),
  diskTotalBytes: Type.Number({ minimum: 0 }),
  diskFreeBytes: Type.Number({ minimum: 0 }),
});
export type HostCapacity = Static<typeof HostCapacity>;

/**
 * The host's QEMU as its agent probed it at start (`--version`, `-machine help`). Kept
 * free of imports (this module is a leaf): the patterns match lib/qemu-support.ts.
 */
export const QemuInfo = Type.Object(
  {
    binary: Type.String({ maxLength: 4096, description: "The qemu-system-x86_64 binary the agent runs" }),
    version: Type.String({ pattern: "^[0-9]+\\.[0-9]+\\.[0-9]+$", description: "e.g. 10.0.2" }),
    major: Type.Integer({ minimum: 0 }),
    minor: Type.Integer({ minimum: 0 }),
    micro: Type.Integer({ minimum: 0 }),
    text: Type.String({
      maxLength: 512,
      description:
        "QEMU's version line, e.g. QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)",
    }),
    machineTypes: Type.Array(Type.String({ pattern: "^pc-q35-[0-9]+(\\.[0-9]+){1,2}$" }), {
      maxItems: 512,
      description: "Versioned q35 machine types this QEMU offers, newest first",
    }),
    q35Alias: Type.String({
      pattern: "^pc-q35-[0-9]+(\\.[0-9]+){1,2}$",
      description: "The concrete type QEMU's q35 alias resolves to (its newest)",
    }),
  },
  { additionalProperties: false },
);
export type QemuInfo = Static<typeof QemuInfo>;

/** What an agent reports about one VM it holds. */
export const ObservedVm = Type.Object({
  id: Uuid,
  generation: Type.Integer(),
  state: Type.Union([
    Type.Literal("starting"),
    Type.Literal("running"),
    Type.Literal("stopping"),
    Type.Literal("stopped"),
    Type.Literal("failed"),
  ]),
  reason: Type.String(),
  pid: Type.Union([Type.Integer(), Type.Null()]),
  resumedAt: Type.Optional(
    Type.Number({
      description: "After an incoming migration: when this agent resumed the VM (epoch ms, its clock)",
    }),
  ),
});
export type ObservedVm = Static<typeof ObservedVm>;

/**
 * `POST /v1/agent/register`: with a join token (first join, or an admin's replace), or
 * with the host's own client certificate (re-registration and certificate renewal).
 */
export const AgentRegisterPost = Type.Object(
  {
    name: ResourceName,
    csr: Type.String({
      maxLength: 8192,
      description:
        "PEM PKCS#10 request for the agent's own key; the server issues the host certificate from it",
    }),
    agentUrl: Type.String({ pattern: "^https?://", maxLength: 2048 }),
    agentVersion: Type.String({ maxLength: 64 }),
    capacity: HostCapacity,
    // Optional in the schema so that an agent too old to send it gets a message saying so
    // (422 NOVA_QEMU_UNSUPPORTED from the host service), not a schema error.
    qemu: Type.Optional(QemuInfo),
  },
  { additionalProperties: false },
);
export type AgentRegisterPost = Static<typeof AgentRegisterPost>;

/**
 * Reply to registration: the host's id and its certificate (its identity), the cluster CA,
 * and the cluster's id (the owner a fencing token names when this cluster owns a VM).
 */
export const AgentRegisterResponse = Type.Object({
  hostId: Uuid,
  certificate: Type.String({ description: "PEM host certificate issued from the CSR" }),
  caCertificate: Type.String({ description: "PEM cluster CA certificate" }),
  clusterId: Type.String({
    format: "uuid",
    description: "The cluster's id (cluster_info.id, its federation identity)",
  }),
});
export type AgentRegisterResponse = Static<typeof AgentRegisterResponse>;

/**
 * The CPU the host's VMs used over the last ~10 s (agent/cpu-sampler.ts): the sum and each
 * VM's, in cores. Absent from agents older than load reporting.
 */
export const HostLoad = Type.Object(
  {
    cpuCores: Type.Number({ minimum: 0, maximum: 65_536 }),
    vms: Type.Record(Type.String({ format: "uuid" }), Type.Number({ minimum: 0, maximum: 4096 }), {
      maxProperties: 10_000,
    }),
  },
  { additionalProperties: false },
);
export type HostLoad = Static<typeof HostLoad>;

/**
 * A fencing token (docs/federation.md §10): the cluster that owns a VM and the epoch of
 * that ownership. An agent starts or resumes a copy only with the newest token it has
 * seen for the VM, naming its own cluster (agent/fence.ts).
 */
export const FenceToken = Type.Object(
  {
    owner: Uuid,
    epoch: Type.Integer({
      minimum: 1,
      description: "Counts the VM's owners: 1 where it was created, +1 per hand-off",
    }),
  },
  { additionalProperties: false },
);
export type FenceToken = Static<typeof FenceToken>;

/** `POST /v1/agent/heartbeat` (host certificate): liveness, capacity and every VM's state. */
export const AgentHeartbeatPost = Type.Object(
  {
    agentUrl: Type.String({ pattern: "^https?://", maxLength: 2048 }),
    capacity: HostCapacity,
    qemu: Type.Optional(QemuInfo),
    vms: Type.Array(ObservedVm),
    imageDigests: Type.Array(Type.String()),
    load: Type.Optional(HostLoad),
    storagePools: Type.Optional(
      Type.Array(Type.String({ format: "uuid" }), {
        maxItems: 256,
        description:
          "Ids of the storage pools whose marker file this host reads back with the pool's id (absent from older agents)",
      }),
    ),
    selfFenced: Type.Optional(
      Type.Array(
        Type.Object({
          id: Uuid,
          at: Type.String({ format: "date-time", description: "When the watchdog killed the VM's QEMU" }),
        }),
        { maxItems: 1024, description: "HA VMs this host's watchdog killed because its lease ran out" },
      ),
    ),
  },
  { additionalProperties: false },
);
export type AgentHeartbeatPost = Static<typeof AgentHeartbeatPost>;

/** The HA lease a heartbeat reply grants (docs/agent-protocol.md, "The HA lease"). */
export const AgentLease = Type.Object({
  durationMs: Type.Integer({
    minimum: 1000,
    description: "How long the lease runs from the heartbeat's send time",
  }),
  selfFenceAfterMs: Type.Integer({
    minimum: 500,
    description:
      "After this long without a renewal (from the last renewed heartbeat's send time) the agent's watchdog kills its HA VMs; shorter than durationMs by a safety margin",
  }),
});
export type AgentLease = Static<typeof AgentLease>;

/** The server's reply to a heartbeat. */
export const AgentHeartbeatReply = Type.Object({
  ok: Type.Boolean(),
  revokedScrapers: Type.Optional(
    Type.Array(Type.String({ pattern: "^[0-9a-f]{1,64}$" }), {
      maxItems: 10_000,
      description:
        "Serials of revoked, unexpired metrics scraper certificates: the agent refuses them on /metrics (absent from servers older than revocation)",
    }),
  ),
  lease: Type.Optional(AgentLease),
  storagePools: Type.Optional(
    Type.Array(Type.Object({ id: Type.String({ format: "uuid" }), path: Type.String({ pattern: "^/" }) }), {
      maxItems: 256,
      description: "The cluster's storage pools: the agent reports which of them it sees",
    }),
  ),
  release: Type.Optional(
    Type.Array(Type.Object({ id: Uuid, fence: FenceToken }), {
      maxItems: 1024,
      description:
        "HA VMs restarted on another host: the agent keeps the newer token, kills its leftover copy and removes its local files, never the pool disk",
    }),
  ),
});
export type AgentHeartbeatReply = Static<typeof AgentHeartbeatReply>;

/** The image blobs a VM boots from, by digest in the host's image store. */
export const VmBootImage = Type.Object({
  diskDigest: Type.String(),
  diskFormat: Type.Union([Type.Literal("qcow2"), Type.Literal("raw")]),
  kernelDigest: Type.Union([Type.String(), Type.Null()]),
  initrdDigest: Type.Union([Type.String(), Type.Null()]),
  cmdline: Type.String(),
});
export type VmBootImage = Static<typeof VmBootImage>;

/** What a VM is: its spec and wanted power state, as an agent records it (vm.json). */
export const AgentVmSpec = Type.Object(
  {
    name: Type.String(),
    generation: Type.Integer(),
    vcpus: Type.Integer({ minimum: 1 }),
    memoryMiB: Type.Integer({ minimum: 16 }),
    kernelArgs: Type.String(),
    image: VmBootImage,
    power: Type.Union([Type.Literal("running"), Type.Literal("stopped")]),
    machineType: Type.Optional(
      Type.String({
        pattern: "^(q35|pc-q35-[0-9]{1,3}\\.[0-9]{1,3})$",
        description: "QEMU machine type the VM runs as (its stored, concrete type); q35 when absent",
      }),
    ),
    storagePool: Type.Optional(
      Type.Object(
        {
          id: Type.String({ format: "uuid" }),
          path: Type.String({ pattern: "^/", maxLength: 200 }),
        },
        {
          additionalProperties: false,
          description:
            "The shared pool the VM's disk lives in (<path>/vms/<id>/disk.qcow2, its base image in <path>/images/); absent: the host's local image store",
        },
      ),
    ),
    ha: Type.Optional(
      Type.Boolean({
        description:
          'An HA VM: the agent runs it only under a current lease and a watchdog kills its QEMU when the lease runs out (docs/agent-protocol.md, "The HA lease")',
      }),
    ),
  },
  { additionalProperties: false },
);
export type AgentVmSpec = Static<typeof AgentVmSpec>;

/**
 * `PUT /agent/v1/vms/{id}`: make this VM exist with this spec in this power state; the
 * token is the VM's current one (refused for `running` when fenced, NOVA_ACP_FENCED).
 */
export const AgentVmPut = Type.Object(
  { ...AgentVmSpec.properties, fence: FenceToken },
  { additionalProperties: false },
);
export type AgentVmPut = Static<typeof AgentVmPut>;

/** `PUT /agent/v1/vms/{id}/fence`: a newer token for the VM; its power state is left as it is. */
export const AgentVmFencePut = FenceToken;
export type AgentVmFencePut = Static<typeof AgentVmFencePut>;

/** Reply to the fence call: the token the agent holds for the VM afterwards. */
export const AgentVmFenceReply = Type.Object({ held: FenceToken });
export type AgentVmFenceReply = Static<typeof AgentVmFenceReply>;

/** `POST /agent/v1/images/import`: copy a file on the host into its image store. */
export const AgentImageImportPost = Type.Object(
  {
    path: Type.String({ pattern: "^/" }),
    kind: Type.Union([Type.Literal("disk"), Type.Literal("kernel"), Type.Literal("initrd")]),
  },
  { additionalProperties: false },
);
export type AgentImageImportPost = Static<typeof AgentImageImportPost>;

/** A blob in a host's image store. */
export const AgentBlob = Type.Object({
  digest: Type.String(),
  kind: Type.String(),
  sizeBytes: Type.Number(),
  format: Type.Optional(Type.String()),
  virtualSizeBytes: Type.Optional(Type.Number()),
});
export type AgentBlob = Static<typeof AgentBlob>;

/**
 * Migration tuning as the agent applies it to QEMU: the server derives it from the user's
 * MigrationOptions (agentMigrationTuning in migrations.ts), and compute/qemu/migration.ts
 * takes it as its MigrationTuning. Defaults are applied before it goes on the wire.
 */
export const AgentMigrationTuning = Type.Object({
  downtimeLimitMs: Type.Integer({
    minimum: 1,
    description: "Longest acceptable pause of the guest at switch-over (QEMU downtime-limit)",
  }),
  maxBandwidthBytesPerSec: Type.Optional(
    Type.Number({
      minimum: 1,
      description: "Bandwidth cap in bytes/s (QEMU max-bandwidth); absent: unlimited",
    }),
  ),
  autoConverge: Type.Boolean({
    description: "Throttle the guest's vCPUs when it dirties memory faster than the link sends it",
  }),
  postcopy: Type.Boolean({
    description:
      "Allow switching to post-copy (capability postcopy-ram, on both sides). A failure during post-copy loses the VM",
  }),
  multifd: Type.Optional(
    Type.Object(
      {
        channels: Type.Integer({ minimum: 1, maximum: 255 }),
        compression: Type.Union([Type.Literal("none"), Type.Literal("zstd")]),
      },
      {
        description:
          "RAM pages over parallel connections, optionally zstd-compressed (both sides); QEMU 7.2 cannot combine it with post-copy. Absent: off",
      },
    ),
  ),
});
export type AgentMigrationTuning = Static<typeof AgentMigrationTuning>;

/** Longest PEM certificate accepted on the wire (a CA certificate is 1–2 KiB). */
const PEM_MAX_CHARS = 16_384;

/** Where the destination listens for a migration. */
export const AgentIncomingEndpoints = Type.Object({
  migrateUri: Type.String({
    description:
      "QEMU migration URI, tcp:HOST:PORT (on 127.0.0.1 when only DWCP may carry the migration: not for the source to dial)",
  }),
  nbd: Type.Object({ host: Type.String(), port: Type.Integer(), exportName: Type.String() }),
  tls: Type.Optional(
    Type.Object(
      { hostname: Type.String() },
      {
        description:
          "QEMU's listeners (migrateUri, nbd) require TLS with a certificate from the cluster CA; the source checks the destination's certificate against this host name. Absent: plaintext (the destination's explicit opt-in)",
      },
    ),
  ),
  dwcp: Type.Optional(
    Type.Object(
      {
        host: Type.String(),
        port: Type.Integer(),
        token: Type.String(),
        name: Type.Optional(
          Type.String({
            description: "The destination's host name; the source requires its certificate to name it",
          }),
        ),
        caPem: Type.Optional(
          Type.String({
            maxLength: PEM_MAX_CHARS,
            description:
              "A migration from another cluster: the destination cluster's CA (PEM), the only CA the source trusts for this session. Absent: the source's own cluster CA",
          }),
        ),
      },
      { description: "The destination agent's DWCP listener and this migration's session token" },
    ),
  ),
});
export type AgentIncomingEndpoints = Static<typeof AgentIncomingEndpoints>;

/** `POST /agent/v1/vms/{id}/incoming`: start a destination QEMU waiting for the VM. */
export const AgentIncomingPost = Type.Object(
  {
    migrationId: Type.String(),
    // No token: the copy it starts stays paused until incoming/finish, which carries one.
    spec: AgentVmSpec,
    tuning: AgentMigrationTuning,
    transport: Type.Optional(
      Type.Union([Type.Literal("auto"), Type.Literal("qemu"), Type.Literal("dwcp")], {
        description:
          "The transport the migration asked for: with dwcp the destination QEMU listens on loopback only, behind the DWCP relay. @defaultValue auto",
      }),
    ),
    peerCaPem: Type.Optional(
      Type.String({
        maxLength: PEM_MAX_CHARS,
        description:
          "A migration from another cluster: that cluster's CA (PEM). This migration's DWCP session may then present a host certificate it issued; other sessions still need this cluster's CA. Only over DWCP: refused with transport qemu",
      }),
    ),
  },
  { additionalProperties: false },
);
export type AgentIncomingPost = Static<typeof AgentIncomingPost>;

/**
 * `POST /agent/v1/vms/{id}/incoming/finish`: take over the VM after the transfer
 * completed; resumes it, so only with the VM's current token.
 */
export const AgentIncomingFinishPost = Type.Object(
  { migrationId: Type.String(), generation: Type.Integer(), fence: FenceToken },
  { additionalProperties: false },
);
export type AgentIncomingFinishPost = Static<typeof AgentIncomingFinishPost>;

/**
 * `POST /agent/v1/vms/{id}/outgoing/cancel`: abandon the migration and resume the source,
 * so only with the VM's current token. `targetGone` allows resuming after a completed
 * transfer (the target's QEMU is known to be gone).
 */
export const AgentOutgoingCancelPost = Type.Object(
  {
    migrationId: Type.String({ minLength: 1 }),
    targetGone: Type.Optional(Type.Boolean()),
    fence: FenceToken,
  },
  { additionalProperties: false },
);
export type AgentOutgoingCancelPost = Static<typeof AgentOutgoingCancelPost>;

/**
 * `POST /agent/v1/vms/{id}/outgoing`: start one step of sending the VM. `mirror` starts
 * copying the disk's top layer to the target's NBD export; `memory` starts pre-copy,
 * which stops at QEMU's pre-switchover point with the vCPUs paused; `switchover` then
 * finishes the mirror (the target disk becomes a consistent copy) and lets QEMU send the
 * final device state; `postcopy` switches a running pre-copy to post-copy. Every step is
 * idempotent: repeating one that already happened is a no-op.
 */
export const AgentOutgoingPost = Type.Object(
  {
    migrationId: Type.String(),
    step: Type.Union([
      Type.Literal("mirror"),
      Type.Literal("memory"),
      Type.Literal("switchover"),
      Type.Literal("postcopy"),
    ]),
    endpoints: Type.Optional(AgentIncomingEndpoints),
    tuning: Type.Optional(AgentMigrationTuning),
    transport: Type.Optional(
      Type.Union([Type.Literal("auto"), Type.Literal("qemu"), Type.Literal("dwcp")], {
        description: "mirror step: how memory and disk travel (decided by the source agent for auto)",
      }),
    ),
    autoSwitchover: Type.Optional(
      Type.Boolean({
        description:
          "memory step: switch over as soon as QEMU pauses before switch-over (finish the disk mirror, let QEMU complete) instead of waiting for the switchover step",
      }),
    ),
  },
  { additionalProperties: false },
);
export type AgentOutgoingPost = Static<typeof AgentOutgoingPost>;

/** Where QEMU's downtime went (src/compute/qemu/downtime-breakdown.ts). */
export const DowntimeBreakdown = Type.Object(
  {
    stopMs: Type.Number({
      description: "stopping the vCPUs: QEMU drains and flushes every disk, a mirror's target included",
    }),
    mirrorFinishMs: Type.Number({ description: "at pre-switchover: finishing the disk mirror" }),
    finalMs: Type.Number({ description: "the last dirty pages and the device state, until QEMU completed" }),
  },
  { description: "Where the downtime went; the parts add up to downtimeMs" },
);

/** What HDE made of the pages a relay carried. */
const RelayPages = Type.Object({
  total: Type.Number(),
  zero: Type.Number(),
  ref: Type.Number(),
  delta: Type.Number(),
  full: Type.Number(),
});

/** The source side of a migration, read from QEMU (so it survives an agent restart). */
export const AgentOutgoingStatus = Type.Object({
  vmStatus: Type.String({ description: "QEMU run state (running, paused, postmigrate, …) or 'absent'" }),
  mirror: Type.Union([
    Type.Object({
      jobId: Type.String(),
      status: Type.String(),
      ready: Type.Boolean(),
      offset: Type.Number(),
      len: Type.Number(),
      error: Type.Optional(Type.String()),
    }),
    Type.Null(),
  ]),
  memory: Type.Union([
    Type.Object({
      status: Type.String(),
      totalBytes: Type.Number(),
      transferredBytes: Type.Number(),
      remainingBytes: Type.Number(),
      pass: Type.Number(),
      pagesPerSecond: Type.Number(),
      dirtyBytesPerSecond: Type.Number(),
      mbps: Type.Number(),
      expectedDowntimeMs: Type.Optional(Type.Number()),
      downtimeMs: Type.Optional(Type.Number()),
      downtimeBreakdown: Type.Optional(DowntimeBreakdown),
      stoppedAt: Type.Optional(
        Type.Number({
          description: "When the source's vCPUs stopped for the switch-over (epoch ms, the source's clock)",
        }),
      ),
      totalTimeMs: Type.Optional(Type.Number()),
      cpuThrottlePercentage: Type.Optional(Type.Number()),
      errorDesc: Type.Optional(Type.String()),
    }),
    Type.Null(),
  ]),
  transport: Type.Optional(
    Type.Object({
      chosen: Type.Union([Type.Literal("qemu"), Type.Literal("dwcp")]),
      mode: Type.Union([Type.String(), Type.Null()]),
      reason: Type.String(),
      relay: Type.Optional(
        Type.Object({
          logicalBytes: Type.Number(),
          wireBytes: Type.Number(),
          ratio: Type.Number(),
          streams: Type.Integer(),
          mode: Type.Union([Type.String(), Type.Null()]),
          pages: RelayPages,
          disk: Type.Optional(
            Type.Object({
              logicalBytes: Type.Number(),
              wireBytes: Type.Number(),
              pages: RelayPages,
            }),
          ),
          startedFrom: Type.Optional(
            Type.Object(
              {
                streams: Type.Integer(),
                capacityBps: Type.Number(),
                mode: Type.String(),
                level: Type.Integer(),
                at: Type.Number(),
              },
              { description: "What this path last sustained, which the session started from" },
            ),
          ),
        }),
      ),
    }),
  ),
});
export type AgentOutgoingStatus = Static<typeof AgentOutgoingStatus>;

/** `POST /agent/v1/images/pull`: fetch a blob from another agent by ticket URL, verified by digest. */
export const AgentImagePullPost = Type.Object(
  {
    digest: Type.String({ pattern: "^sha256:[0-9a-f]{64}$" }),
    kind: Type.Union([Type.Literal("disk"), Type.Literal("kernel"), Type.Literal("initrd")]),
    url: Type.String({ pattern: "^https?://" }),
    /** The blob's size as its holder reported it (the ticket reply): the download may not be larger. */
    sizeBytes: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type AgentImagePullPost = Static<typeof AgentImagePullPost>;

/**
 * `GET /agent/v1/vms/{id}/copy`: what this host holds of a VM, read from QEMU (so it is
 * right after an agent restart). ACP decides on `state` (docs/federation.md §10); the rest
 * is for operators.
 */
export const AgentCopyState = Type.Object({
  state: Type.Union(
    [Type.Literal("running"), Type.Literal("paused"), Type.Literal("incomplete"), Type.Literal("gone")],
    {
      description:
        "running: QEMU runs the guest; paused: QEMU holds the whole VM, paused (a source after its transfer, a destination whose incoming migration completed); incomplete: a destination still waiting for, or receiving, the stream; gone: no QEMU for the VM on this host",
    },
  ),
  reason: Type.String({ description: "Why this state, in words" }),
  qemu: Type.Union([
    Type.Object({
      runState: Type.String({
        description: "QEMU's run state (query-status): running, paused, inmigrate, postmigrate, …",
      }),
      migrationStatus: Type.String({
        description: "QEMU's migration status (query-migrate), incoming or outgoing; none when none ran",
      }),
    }),
    Type.Null(),
  ]),
  incomingMigrationId: Type.Optional(
    Type.String({ description: "The migration this QEMU was started to receive, until it was resumed" }),
  ),
  outgoingMigrationId: Type.Optional(
    Type.String({ description: "The outgoing migration whose memory transfer this agent started" }),
  ),
});
export type AgentCopyState = Static<typeof AgentCopyState>;

/** One blob of an image offered to another cluster: what the puller may receive, at most. */
export const OfferedBlob = Type.Object(
  {
    digest: Type.String({ pattern: "^sha256:[0-9a-f]{64}$" }),
    kind: Type.Union([Type.Literal("disk"), Type.Literal("kernel"), Type.Literal("initrd")]),
    sizeBytes: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type OfferedBlob = Static<typeof OfferedBlob>;

/** An agent's DWCP listener, as another cluster's agent dials it. */
export const DwcpListenerAddress = Type.Object(
  {
    host: Type.String({ maxLength: 253 }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    name: Type.Optional(Type.String({ maxLength: 253 })),
  },
  { additionalProperties: false },
);
export type DwcpListenerAddress = Static<typeof DwcpListenerAddress>;

/**
 * `POST /agent/v1/image-offers`: offer these blobs of the host's store, for one hand-off
 * (`id`), to the hosts of the cluster whose CA is `peerCaPem`, for `ttlSeconds` at most.
 */
export const AgentImageOfferPost = Type.Object(
  {
    id: Type.String({ pattern: "^[0-9a-f-]{36}$" }),
    digests: Type.Array(Type.String({ pattern: "^sha256:[0-9a-f]{64}$" }), { minItems: 1, maxItems: 3 }),
    peerCaPem: Type.String({ maxLength: 16384 }),
    ttlSeconds: Type.Integer({ minimum: 1, maximum: 21600 }),
  },
  { additionalProperties: false },
);
export type AgentImageOfferPost = Static<typeof AgentImageOfferPost>;

/** The offer: where the puller dials, the one-time token, the blobs with their sizes. */
export const AgentImageOffer = Type.Object(
  {
    endpoint: DwcpListenerAddress,
    token: Type.String({ maxLength: 512 }),
    blobs: Type.Array(OfferedBlob, { minItems: 1, maxItems: 3 }),
  },
  { additionalProperties: false },
);
export type AgentImageOffer = Static<typeof AgentImageOffer>;

/**
 * `POST /agent/v1/image-pulls`: pull an offer of another cluster's agent into this host's
 * store (started in the background; the same call reports how it goes).
 */
export const AgentImagePullStart = Type.Object(
  {
    id: Type.String({ pattern: "^[0-9a-f-]{36}$" }),
    offer: AgentImageOffer,
    /** The offering cluster's CA: the only one trusted for the pull's session. */
    peerCaPem: Type.String({ maxLength: 16384 }),
  },
  { additionalProperties: false },
);
export type AgentImagePullStart = Static<typeof AgentImagePullStart>;

/** How a pull goes (a failed pull is reported once, then started afresh by the next call). */
export const AgentImagePullStatus = Type.Object({
  state: Type.Union([Type.Literal("running"), Type.Literal("done"), Type.Literal("failed")]),
  code: Type.Optional(Type.String()),
  message: Type.Optional(Type.String()),
  logicalBytes: Type.Number(),
  wireBytes: Type.Number(),
  pages: Type.Number(),
  pagesDeduplicated: Type.Number(),
});
export type AgentImagePullStatus = Static<typeof AgentImagePullStatus>;
