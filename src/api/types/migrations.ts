/** Wire types for live migrations: start, list, show, cancel, progress. */
import { type Static, Type } from "@sinclair/typebox";
import { MIGRATION } from "../../states/migration.js";
import { type AgentMigrationTuning, DowntimeBreakdown } from "./agent.js";
import { Uuid } from "./common.js";
import { stateUnion } from "./state-schema.js";

/**
 * What an unset migration option means (docs/migration.md lists them). The schema's
 * `default`s, the server and the agent's compute defaults all read these.
 */
export const MIGRATION_OPTION_DEFAULTS = {
  transport: "auto",
  downtimeLimitMs: 300,
  autoConverge: true,
  postcopy: false,
  timeoutSeconds: 600,
} as const;

/** Tuning a user may set for one migration. */
export const MigrationOptions = Type.Object(
  {
    downtimeLimitMs: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 60_000,
        default: MIGRATION_OPTION_DEFAULTS.downtimeLimitMs,
        description: "Longest pause QEMU may take at switch-over",
      }),
    ),
    maxBandwidthMiBps: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 100_000,
        description: "Cap on migration bandwidth (default: unlimited)",
      }),
    ),
    autoConverge: Type.Optional(
      Type.Boolean({
        default: MIGRATION_OPTION_DEFAULTS.autoConverge,
        description: "Throttle the guest's vCPUs when it dirties memory faster than the link",
      }),
    ),
    postcopy: Type.Optional(
      Type.Boolean({
        default: MIGRATION_OPTION_DEFAULTS.postcopy,
        description:
          "Switch to post-copy when pre-copy does not converge. A failure during post-copy LOSES the VM (its state is split between hosts).",
      }),
    ),
    transport: Type.Optional(
      Type.Union([Type.Literal("auto"), Type.Literal("qemu"), Type.Literal("dwcp")], {
        default: MIGRATION_OPTION_DEFAULTS.transport,
        description:
          "How memory and disk travel: QEMU's own TCP transport, NovaCron's DWCP, or auto (chosen from the measured network mode between the hosts)",
      }),
    ),
    multifdChannels: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 16,
        description: "QEMU transport only: send RAM over this many parallel connections (multifd)",
      }),
    ),
    multifdCompression: Type.Optional(
      Type.Union([Type.Literal("none"), Type.Literal("zstd")], {
        description: "QEMU transport only: compress multifd pages (needs multifdChannels)",
      }),
    ),
    timeoutSeconds: Type.Optional(
      Type.Integer({
        minimum: 5,
        maximum: 86_400,
        default: MIGRATION_OPTION_DEFAULTS.timeoutSeconds,
        description: "Give up (and roll back) after this long",
      }),
    ),
  },
  { additionalProperties: false },
);
export type MigrationOptions = Static<typeof MigrationOptions>;

/** MigrationOptions with every option that has a default filled in. */
export type ResolvedMigrationOptions = MigrationOptions & {
  -readonly [K in keyof typeof MIGRATION_OPTION_DEFAULTS]-?: NonNullable<MigrationOptions[K]>;
};

/** `o` with MIGRATION_OPTION_DEFAULTS for what it leaves unset. */
export function resolveMigrationOptions(o: MigrationOptions): ResolvedMigrationOptions {
  const d = MIGRATION_OPTION_DEFAULTS;
  return {
    ...o,
    transport: o.transport ?? d.transport,
    downtimeLimitMs: o.downtimeLimitMs ?? d.downtimeLimitMs,
    autoConverge: o.autoConverge ?? d.autoConverge,
    postcopy: o.postcopy ?? d.postcopy,
    timeoutSeconds: o.timeoutSeconds ?? d.timeoutSeconds,
  };
}

/**
 * The tuning the server sends the agents for a migration with options `o`: the one
 * conversion from the user's options to QEMU's knobs (the agent's compute layer takes
 * AgentMigrationTuning as its MigrationTuning). The wire names differ from the options'
 * on purpose: they are QEMU's units (bytes/s), and old agents expect them.
 */
export function agentMigrationTuning(o: MigrationOptions): AgentMigrationTuning {
  const r = resolveMigrationOptions(o);
  return {
    downtimeLimitMs: r.downtimeLimitMs,
    autoConverge: r.autoConverge,
    postcopy: r.postcopy,
    ...(o.maxBandwidthMiBps ? { maxBandwidthBytesPerSec: o.maxBandwidthMiBps * 1048576 } : {}),
    ...(o.multifdChannels
      ? { multifd: { channels: o.multifdChannels, compression: o.multifdCompression ?? "none" } }
      : {}),
  };
}

/** `POST /v1/vms/{id}/migrations`. */
export const MigrationsPost = Type.Object(
  {
    targetHost: Type.Optional(
      Type.String({
        minLength: 1,
        description: "Host name or id (a host of targetCluster when given); default: placement picks one",
      }),
    ),
    targetCluster: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 63,
        description: "A peer cluster to move the VM to (live, with its ownership: docs/federation.md §10)",
      }),
    ),
    options: Type.Optional(MigrationOptions),
  },
  { additionalProperties: false },
);
export type MigrationsPost = Static<typeof MigrationsPost>;

/** Live progress of the transfer. */
export const MigrationProgress = Type.Object({
  phase: Type.String({ description: "disk-mirror, memory, switch-over" }),
  diskBytesDone: Type.Number(),
  diskBytesTotal: Type.Number(),
  memoryBytesSent: Type.Number(),
  memoryBytesRemaining: Type.Number(),
  memoryBytesTotal: Type.Number(),
  pass: Type.Integer(),
  pagesPerSecond: Type.Number(),
  dirtyBytesPerSecond: Type.Number(),
  throughputMbps: Type.Number(),
  expectedDowntimeMs: Type.Union([Type.Number(), Type.Null()]),
  etaSeconds: Type.Union([Type.Number(), Type.Null()]),
  autoConvergeThrottlePct: Type.Union([Type.Number(), Type.Null()]),
  transport: Type.Optional(
    Type.Object({
      chosen: Type.String({ description: "qemu or dwcp" }),
      mode: Type.Union([Type.String(), Type.Null()], {
        description: "network mode measured between the hosts",
      }),
      reason: Type.String(),
      wireBytes: Type.Optional(
        Type.Number({ description: "DWCP: bytes on the wire for the memory stream (disk: diskWireBytes)" }),
      ),
      logicalBytes: Type.Optional(
        Type.Number({ description: "DWCP: bytes of QEMU's memory stream relayed" }),
      ),
      ratio: Type.Optional(Type.Number({ description: "DWCP: logical / wire" })),
      streams: Type.Optional(Type.Integer({ description: "DWCP: TCP connections in use" })),
      startedFromPath: Type.Optional(
        Type.Object(
          { streams: Type.Integer(), capacityBps: Type.Number(), measuredAt: Type.String() },
          {
            description:
              "DWCP: the session started from what this path last sustained (streams, bytes/s) instead of probing",
          },
        ),
      ),
      diskWireBytes: Type.Optional(
        Type.Number({ description: "DWCP: bytes on the wire for the disk mirror's NBD traffic" }),
      ),
      diskLogicalBytes: Type.Optional(
        Type.Number({ description: "DWCP: bytes of NBD client traffic relayed (mostly disk writes)" }),
      ),
    }),
  ),
});
export type MigrationProgress = Static<typeof MigrationProgress>;

/** What a finished migration measured. */
export const MigrationResult = Type.Object({
  totalTimeMs: Type.Optional(Type.Number()),
  downtimeMs: Type.Optional(Type.Number({ description: "Downtime as QEMU reports it" })),
  downtimeBreakdown: Type.Optional(DowntimeBreakdown),
  guestPauseMs: Type.Optional(
    Type.Number({
      description:
        "From the source's vCPUs stopping to the target's resuming them, as the guest is paused (the two hosts' clocks)",
    }),
  ),
  memoryBytes: Type.Optional(Type.Number()),
  diskBytes: Type.Optional(Type.Number()),
  baseImageCopied: Type.Optional(Type.Boolean()),
});
export type MigrationResult = Static<typeof MigrationResult>;

const MigrationStateSchema = stateUnion(MIGRATION);

/** A migration. */
export const Migration = Type.Object({
  id: Uuid,
  vm: Type.String(),
  vmId: Type.Union([Uuid, Type.Null()]),
  sourceHost: Type.String(),
  targetHost: Type.String({
    description:
      "The target host's name; for a migration to another cluster the host there, empty until that cluster chose it",
  }),
  targetCluster: Type.Union([Type.String(), Type.Null()], {
    description:
      "The destination cluster's name when the VM leaves this cluster (docs/federation.md §10); null inside it",
  }),
  state: MigrationStateSchema,
  stateReason: Type.String(),
  rollback: Type.String({ description: "What was undone after a failure or cancel" }),
  transport: Type.String(),
  options: Type.Record(Type.String(), Type.Unknown()),
  progress: Type.Union([MigrationProgress, Type.Object({})]),
  result: MigrationResult,
  cancelRequested: Type.Boolean(),
  createdAt: Type.String({ format: "date-time" }),
  startedAt: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
  finishedAt: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
  traceId: Type.Optional(
    Type.String({ description: "The OpenTelemetry trace its request and run belong to, when traced" }),
  ),
});
export type Migration = Static<typeof Migration>;

/** `GET /v1/migrations`. */
export const MigrationList = Type.Object({ migrations: Type.Array(Migration) });
export type MigrationList = Static<typeof MigrationList>;

/** One stored reading of a migration's progress (docs/migration.md, "Progress history"). */
export const MigrationSample = Type.Object({
  at: Type.String({ format: "date-time" }),
  phase: Type.String(),
  pass: Type.Integer(),
  memoryBytesSent: Type.Number(),
  memoryBytesRemaining: Type.Number(),
  diskBytesDone: Type.Number(),
  dirtyBytesPerSecond: Type.Number(),
  throughputMbps: Type.Number(),
  memoryWireBytes: Type.Union([Type.Number(), Type.Null()], {
    description: "DWCP: bytes on the wire for the memory stream; null with QEMU's transport",
  }),
  memoryLogicalBytes: Type.Union([Type.Number(), Type.Null()], {
    description: "DWCP: bytes of QEMU's memory stream relayed",
  }),
  diskWireBytes: Type.Union([Type.Number(), Type.Null()], {
    description: "DWCP: bytes on the wire for the disk mirror",
  }),
  diskLogicalBytes: Type.Union([Type.Number(), Type.Null()], {
    description: "DWCP: bytes of NBD client traffic relayed",
  }),
});
export type MigrationSample = Static<typeof MigrationSample>;

/** `GET /v1/migrations/{id}/samples`. */
export const MigrationSampleList = Type.Object({
  sampleEveryMs: Type.Integer({
    description: "The spacing the server now keeps between samples (1 s, doubled at each thinning)",
  }),
  samples: Type.Array(MigrationSample, { description: "Oldest first" }),
});
export type MigrationSampleList = Static<typeof MigrationSampleList>;
