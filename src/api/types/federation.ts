/**
 * Wire types of the federation (docs/federation.md): the signed ASS record, the ASS
 * messages peers exchange over DWCP, the peering call one server makes to another, and
 * what the REST API shows (peers, clusters, the global VM list).
 */
import { type Static, Type } from "@sinclair/typebox";
import { PEER } from "../../states/peer.js";
import { Uuid } from "./common.js";
import { stateUnion } from "./state-schema.js";

/** The federation protocol version this build speaks (ASS messages and peering). */
export const FEDERATION_PROTOCOL = 1;

/** A cluster name: the same rule as resource names. */
export const ClusterName = Type.String({
  pattern: "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
  description: "1-63 lowercase letters, digits and dashes; starts and ends with a letter or digit",
});

export const RecordKindSchema = Type.Union([
  Type.Literal("cluster"),
  Type.Literal("host"),
  Type.Literal("vm"),
  Type.Literal("image"),
]);

/** A record as signed by its origin (records.ts says what the signature covers). */
export const SignedRecordSchema = Type.Object(
  {
    origin: Uuid,
    kind: RecordKindSchema,
    id: Type.String({ minLength: 1, maxLength: 128 }),
    version: Type.Integer({ minimum: 1 }),
    deleted: Type.Boolean(),
    body: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
    issuedAt: Type.String({ maxLength: 64 }),
    sig: Type.String({ maxLength: 128 }),
  },
  { additionalProperties: false },
);
export type SignedRecordWire = Static<typeof SignedRecordSchema>;

/** Origin → highest version held in full. */
export const VectorSchema = Type.Record(
  Type.String({ pattern: "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$" }),
  Type.Integer({ minimum: 0 }),
  { maxProperties: 1000, additionalProperties: false },
);

/** ASS over DWCP: the first message each way on a session's channel. */
export const AssHello = Type.Object({
  type: Type.Literal("hello"),
  protocol: Type.Integer(),
  cluster: Uuid,
  name: Type.String({ maxLength: 63 }),
  /** The dialer's own federation address (host:port): where the listener can pull from it. */
  federation: Type.Optional(Type.String({ maxLength: 300 })),
});
export type AssHello = Static<typeof AssHello>;

/** ASS: "send me what you hold past this vector, waiting up to waitMs for something". */
export const AssPull = Type.Object({
  type: Type.Literal("pull"),
  vector: VectorSchema,
  waitMs: Type.Integer({ minimum: 0, maximum: 60_000 }),
});
export type AssPull = Static<typeof AssPull>;

/** ASS: the answer to a pull. */
export const AssBatch = Type.Object({
  type: Type.Literal("batch"),
  /** The sender's vector, restricted to the origins asked for. */
  vector: VectorSchema,
  /** The sender's own sequence (its newest write). */
  seq: Type.Integer({ minimum: 0 }),
  records: Type.Array(SignedRecordSchema, { maxItems: 10_000 }),
  /** The answer was cut at its bound: pull again at once. */
  truncated: Type.Boolean(),
  /** The sender's clock, for display only. */
  now: Type.String(),
});
export type AssBatch = Static<typeof AssBatch>;

/** ASS: the sender refuses (quarantined, removed, incompatible). */
export const AssRefusal = Type.Object({
  type: Type.Literal("error"),
  code: Type.String(),
  message: Type.String(),
});
export type AssRefusal = Static<typeof AssRefusal>;

/** What one cluster tells another about itself when they peer. */
export const ClusterCard = Type.Object({
  id: Uuid,
  name: ClusterName,
  protocol: Type.Integer(),
  apiUrl: Type.String({ maxLength: 512 }),
  federation: Type.Object({
    host: Type.String({ maxLength: 255 }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
  }),
  caPem: Type.String({ maxLength: 16_384 }),
  signingPublicKey: Type.String({ maxLength: 64 }),
});
export type ClusterCard = Static<typeof ClusterCard>;

/** POST /v1/federation/redeem: the dialing server presents its card and the token's secret. */
export const RedeemRequest = Type.Object({
  secret: Type.String({ minLength: 1, maxLength: 256 }),
  cluster: ClusterCard,
  /** Names already taken on the dialing side (its own and its peers'), to refuse a clash there too. */
  takenNames: Type.Array(Type.String({ maxLength: 63 }), { maxItems: 1000 }),
});
export type RedeemRequest = Static<typeof RedeemRequest>;

export const RedeemResponse = Type.Object({ cluster: ClusterCard });
export type RedeemResponse = Static<typeof RedeemResponse>;

export const PeeringTokenPost = Type.Object({
  ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 7 * 86_400, default: 3600 })),
});
export const PeeringTokenCreated = Type.Object({
  token: Type.String(),
  expiresAt: Type.String({ format: "date-time" }),
});
export type PeeringTokenCreated = Static<typeof PeeringTokenCreated>;

export const PeerAddPost = Type.Object({ token: Type.String({ minLength: 1, maxLength: 2048 }) });

/** A peer as `GET /v1/federation/peers` shows it. */
export const Peer = Type.Object({
  id: Uuid,
  name: Type.String(),
  state: stateUnion(PEER),
  apiUrl: Type.String(),
  federation: Type.String({ description: "host:port of its ASS listener" }),
  caFingerprint: Type.String(),
  signingKeyFingerprint: Type.String(),
  protocol: Type.Integer(),
  addedAt: Type.String({ format: "date-time" }),
  lastContactAt: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
  lastContactAgeSeconds: Type.Union([Type.Number(), Type.Null()], {
    description:
      "seconds since the last contact by the server's database clock (a client's clock may differ)",
  }),
  lastError: Type.String(),
  /** Writes of the peer this cluster has not yet got (as of the last contact). */
  lagRecords: Type.Integer(),
  stale: Type.Boolean({
    description: "no contact within the staleness bound: its records may be out of date",
  }),
  quarantine: Type.Union([
    Type.Object({
      kind: Type.String(),
      reason: Type.String(),
      at: Type.String({ format: "date-time" }),
      evidence: Type.Integer({ description: "stored proofs" }),
    }),
    Type.Null(),
  ]),
});
export type Peer = Static<typeof Peer>;
export const PeerList = Type.Object({ peers: Type.Array(Peer) });

export const PeerRemoved = Type.Object({
  peer: Peer,
  held: Type.Object({
    hosts: Type.Integer(),
    vms: Type.Integer(),
    images: Type.Integer(),
  }),
});
export type PeerRemoved = Static<typeof PeerRemoved>;

/** A cluster of the federation (this one or a peer) as `GET /v1/federation/clusters` shows it. */
export const FederatedCluster = Type.Object({
  id: Uuid,
  name: Type.String(),
  self: Type.Boolean(),
  state: Type.String({ description: "self, or the peer's state" }),
  lastContactAt: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
  lastContactAgeSeconds: Type.Union([Type.Number(), Type.Null()], {
    description:
      "seconds since the last contact by the server's database clock (a client's clock may differ)",
  }),
  lagRecords: Type.Integer(),
  stale: Type.Boolean(),
  version: Type.Integer({ description: "newest version of its records held here" }),
  hosts: Type.Integer(),
  vms: Type.Integer(),
});
export type FederatedCluster = Static<typeof FederatedCluster>;
export const FederatedClusterList = Type.Object({ clusters: Type.Array(FederatedCluster) });

/** A VM anywhere in the federation. Its global identity is (cluster id, VM id). */
export const FederatedVm = Type.Object({
  id: Uuid,
  name: Type.String(),
  cluster: Type.Object({ id: Uuid, name: Type.String() }),
  state: Type.String(),
  host: Type.Union([Type.String(), Type.Null()]),
  vcpus: Type.Integer(),
  memoryMiB: Type.Integer(),
  image: Type.String(),
  version: Type.Integer(),
  epoch: Type.Integer({
    description:
      "the owner epoch: 1 where the VM was created, +1 per hand-off between clusters (docs/federation.md §10)",
  }),
  stale: Type.Boolean({ description: "its cluster is a peer not heard from within the staleness bound" }),
});
export type FederatedVm = Static<typeof FederatedVm>;
export const FederatedVmList = Type.Object({ vms: Type.Array(FederatedVm) });

/** Evidence against a peer. */
export const Evidence = Type.Object({
  id: Type.Integer(),
  peer: Uuid,
  sender: Uuid,
  kind: Type.String(),
  detail: Type.String(),
  records: Type.Array(Type.Unknown()),
  detectedAt: Type.String({ format: "date-time" }),
});
export const EvidenceList = Type.Object({ evidence: Type.Array(Evidence) });
