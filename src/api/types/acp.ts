/**
 * Wire types of ACP, the cross-cluster ownership hand-off (docs/federation.md §10): the
 * signed statement each step is, and the request/answer messages of the `acp/1` channel.
 */
import { type Static, Type } from "@sinclair/typebox";
import { HANDOFF_SOURCE, HANDOFF_TARGET } from "../../states/handoff.js";
import { AgentImageOffer } from "./agent.js";
import { Uuid } from "./common.js";
import { stateUnion } from "./state-schema.js";

/**
 * The statement kinds, in protocol order. The source signs prepare, release and abort;
 * the destination the others.
 */
export const STATEMENT_KINDS = [
  "prepare",
  "prepared",
  "release",
  "owned",
  "returned",
  "abort",
  "aborted",
] as const;
export type StatementKind = (typeof STATEMENT_KINDS)[number];

/** The kinds the source cluster signs. */
export const SOURCE_STATEMENTS: readonly StatementKind[] = ["prepare", "release", "abort"];

export const StatementKindSchema = Type.Union(STATEMENT_KINDS.map((k) => Type.Literal(k)));

/** The largest statement accepted or sent: its canonical JSON, signature included. */
export const MAX_STATEMENT_BYTES = 64 * 1024;

/** A signed ACP statement (acp/statements.ts says what the signature covers). */
export const SignedStatementSchema = Type.Object(
  {
    kind: StatementKindSchema,
    handoff: Uuid,
    vm: Uuid,
    source: Uuid,
    target: Uuid,
    /** The epoch the statement is about: e+1 (the hand-off's), e+2 for `returned`. */
    epoch: Type.Integer({ minimum: 2 }),
    /** The signer's clock: for people only. */
    issuedAt: Type.String({ maxLength: 64 }),
    /** What the step carries besides ownership (prepare: the VM; prepared: endpoints). */
    detail: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    sig: Type.String({ maxLength: 128 }),
  },
  { additionalProperties: false },
);
export type SignedStatement = Static<typeof SignedStatementSchema>;

/**
 * What a `prepare` carries in its detail: the VM as the destination must start it, the
 * host the user asked for, if any (the destination's placement picks one otherwise), and
 * the offer of the image's blobs.
 */
export const HandoffVmSpec = Type.Object(
  {
    name: Type.String({ pattern: "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" }),
    vcpus: Type.Integer({ minimum: 1, maximum: 1024 }),
    memoryMiB: Type.Integer({ minimum: 16 }),
    kernelArgs: Type.String({ maxLength: 4096 }),
    machineType: Type.Optional(Type.String({ pattern: "^(q35|pc-q35-[0-9]{1,3}\\.[0-9]{1,3})$" })),
    image: Type.Object(
      {
        name: Type.String({ maxLength: 128 }),
        diskDigest: Type.String({ maxLength: 128 }),
        diskFormat: Type.Union([Type.Literal("qcow2"), Type.Literal("raw")]),
        diskVirtualBytes: Type.Integer({ minimum: 0 }),
        kernelDigest: Type.Union([Type.String({ maxLength: 128 }), Type.Null()]),
        initrdDigest: Type.Union([Type.String({ maxLength: 128 }), Type.Null()]),
        cmdline: Type.String({ maxLength: 4096 }),
        minMemoryMiB: Type.Integer({ minimum: 0 }),
      },
      { additionalProperties: false },
    ),
    targetHost: Type.Optional(Type.String({ maxLength: 253 })),
    /**
     * Where the destination may pull the image's blobs if it lacks them: the source host's
     * DWCP listener, a one-time token and the blobs with their sizes (docs/federation.md §10).
     */
    imageOffer: Type.Optional(AgentImageOffer),
  },
  { additionalProperties: false },
);
export type HandoffVmSpec = Static<typeof HandoffVmSpec>;

/** `acp/1` request: deliver a statement (prepare, release, abort) or ask for the answerer's. */
export const AcpRequest = Type.Union([
  Type.Object(
    {
      type: Type.Literal("deliver"),
      statement: SignedStatementSchema,
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal("status"),
      handoff: Uuid,
    },
    { additionalProperties: false },
  ),
]);
export type AcpRequest = Static<typeof AcpRequest>;

/**
 * `acp/1` answer: the answerer's newest statement for the hand-off, `pending` (the source
 * has not decided yet), `unknown` (no record of it), or a refusal with a stable code.
 */
export const AcpAnswer = Type.Union([
  Type.Object(
    { type: Type.Literal("statement"), statement: SignedStatementSchema },
    { additionalProperties: false },
  ),
  Type.Object({ type: Type.Literal("pending") }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal("unknown") }, { additionalProperties: false }),
  Type.Object(
    {
      type: Type.Literal("error"),
      code: Type.String({ maxLength: 64 }),
      message: Type.String({ maxLength: 4096 }),
    },
    { additionalProperties: false },
  ),
]);
export type AcpAnswer = Static<typeof AcpAnswer>;

/** A hand-off as `GET /v1/federation/handoffs` shows it, from this cluster's side. */
export const Handoff = Type.Object({
  id: Uuid,
  side: Type.Union([Type.Literal("source"), Type.Literal("destination")]),
  vm: Type.String(),
  vmId: Uuid,
  peer: Type.Object({ id: Uuid, name: Type.Union([Type.String(), Type.Null()]) }),
  state: Type.Union([stateUnion(HANDOFF_SOURCE), stateUnion(HANDOFF_TARGET)]),
  reason: Type.String(),
  fromEpoch: Type.Integer(),
  /** Set when only an operator can move it on (docs/federation.md §10): why, and that waiting is safe. */
  needsDecision: Type.Union([Type.String(), Type.Null()]),
  /** Its final state's work is done. */
  settled: Type.Boolean(),
  migrationId: Type.Union([Uuid, Type.Null()]),
  createdAt: Type.String(),
  stateChangedAt: Type.String(),
});
export type Handoff = Static<typeof Handoff>;
export const HandoffList = Type.Object({ handoffs: Type.Array(Handoff) });
export type HandoffList = Static<typeof HandoffList>;
