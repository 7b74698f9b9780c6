/** Wire types for hosts: what `GET /v1/hosts` returns and `host cordon` sends. */
import { type Static, Type } from "@sinclair/typebox";
import { QemuInfo } from "./agent.js";
import { ResourceName, Uuid } from "./common.js";
import { HostDrainSummary } from "./drains.js";

/** A hypervisor host as the API shows it. */
export const Host = Type.Object({
  id: Uuid,
  name: Type.String(),
  agentUrl: Type.String(),
  liveness: Type.Union([Type.Literal("alive"), Type.Literal("dead")]),
  cordoned: Type.Boolean(),
  drain: Type.Union([HostDrainSummary, Type.Null()], {
    description:
      "The host's newest maintenance drain (draining while state is draining); null: never drained",
  }),
  accel: Type.Union([Type.Literal("kvm"), Type.Literal("tcg")]),
  accelReason: Type.String(),
  vcpus: Type.Integer(),
  memoryMiB: Type.Integer(),
  allocatedMemoryMiB: Type.Integer({ description: "Memory held by VMs placed here that are not stopped" }),
  freeMemoryMiB: Type.Integer(),
  allocatedVcpus: Type.Integer({ description: "vCPUs promised to VMs placed here that are not stopped" }),
  vmCount: Type.Integer(),
  diskTotalBytes: Type.Number(),
  diskFreeBytes: Type.Number(),
  agentVersion: Type.String(),
  qemu: Type.Union([QemuInfo, Type.Null()], {
    description: "The host's QEMU as its agent last reported it (null: the agent predates QEMU reporting)",
  }),
  site: Type.Union([Type.String(), Type.Null()], {
    description: "The site (datacenter) the host is in (novacron host set-site); null: none",
  }),
  labels: Type.Record(Type.String(), Type.String(), {
    description: "Operator labels (novacron host label), matched by VMs' host selectors",
  }),
  placementWeight: Type.Number({
    description: "The operator's preference for this host, -1..1 (novacron host set-weight); 0: none",
  }),
  certificate: Type.Union(
    [
      Type.Object({
        serial: Type.String(),
        fingerprint: Type.String(),
        notAfter: Type.String({ format: "date-time" }),
      }),
      Type.Null(),
    ],
    { description: "The host's current certificate (its identity); null for a host not yet joined with one" },
  ),
  registeredAt: Type.String({ format: "date-time" }),
  lastHeartbeatAt: Type.String({ format: "date-time" }),
});
export type Host = Static<typeof Host>;

/** `GET /v1/hosts`. */
export const HostList = Type.Object({ hosts: Type.Array(Host) });
export type HostList = Static<typeof HostList>;

/** `POST /v1/hosts/{id}/cordon` body. */
export const HostCordonPost = Type.Object(
  { cordoned: Type.Boolean({ default: true }) },
  { additionalProperties: false },
);
export type HostCordonPost = Static<typeof HostCordonPost>;

/** `POST /v1/join-tokens`: a one-time token for one agent to join as host `name`. */
export const JoinTokenPost = Type.Object(
  {
    name: ResourceName,
    ttlSeconds: Type.Integer({
      minimum: 60,
      maximum: 7 * 86_400,
      default: 3600,
      description: "How long the token stays usable",
    }),
    replace: Type.Boolean({
      default: false,
      description:
        "Let the token's agent take over an existing host of this name (e.g. a reinstalled machine)",
    }),
  },
  { additionalProperties: false },
);
export type JoinTokenPost = Static<typeof JoinTokenPost>;

/** A join token as listed (never its secret). */
export const JoinTokenInfo = Type.Object({
  id: Uuid,
  hostName: Type.String(),
  replace: Type.Boolean(),
  createdBy: Type.String(),
  createdAt: Type.String({ format: "date-time" }),
  expiresAt: Type.String({ format: "date-time" }),
  usedAt: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
});

/** Reply to `POST /v1/join-tokens`: the token (shown once) and the CA fingerprint it pins. */
export const JoinTokenCreated = Type.Object({
  token: Type.String(),
  caFingerprint: Type.String(),
  info: JoinTokenInfo,
});

/** `GET /v1/join-tokens`. */
export const JoinTokenList = Type.Object({ tokens: Type.Array(JoinTokenInfo) });

/** Reply to `DELETE /v1/hosts/{id}`. */
export const HostRemoved = Type.Object({
  id: Uuid,
  name: Type.String(),
  deleted: Type.Boolean({
    description: "false: the row stays (migration history names it), without a certificate",
  }),
});
